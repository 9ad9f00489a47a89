//! `stevedore.command`: runs a program, as AWX's jobs run `ansible-playbook`.
//!
//! 1. Off unless the node was started with `--allow-command PROGRAM` for that exact program:
//!    anyone who can write to Redis must not get a shell by default. Each allowed program is
//!    resolved to an absolute path when the worker starts, so a call cannot redirect it.
//! 2. Runs it in its own process group with the given arguments, no shell, and a clean
//!    environment: only the variables the node names with `--command-env NAME`, which a call's
//!    `env` may set and nothing else; never a `STEVEDORE_*` variable (credentials, keys).
//! 3. Records the exit status and a bounded tail of its output (stdout and stderr together).
//! 4. Cancellation and the soft timeout stop the whole process group (SIGTERM, then SIGKILL after
//!    a grace); an aborted run (hard timeout, shutdown) kills it too.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use stevedore::{Invocation, TaskError};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// The environment variable that carries the node's [`CommandPolicy`] to process-pool
/// children.
pub const ALLOW_ENV: &str = "STEVEDORE_ALLOW_COMMANDS";
/// Bytes of output kept.
const TAIL_BYTES: usize = 64 * 1024;
/// How long a told process group gets before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

static POLICY: OnceLock<CommandPolicy> = OnceLock::new();

/// Sets what this process may run (once, at start).
pub fn install(policy: CommandPolicy) {
    let _ = POLICY.set(policy);
}

/// What this process may run: as installed, or as a process-pool child's parent passed it.
pub fn policy() -> &'static CommandPolicy {
    POLICY.get_or_init(|| {
        std::env::var(ALLOW_ENV)
            .ok()
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default()
    })
}

/// What `stevedore.command` may do on this node, fixed when the worker starts.
///
/// ```text
///  --allow-command NAME ──► NAME resolved on the worker's PATH (or an absolute path) at start;
///                           a call names NAME, the child is that file, whatever PATH says
///  --command-env VAR    ──► the child's whole environment: VAR from the worker's own, and a
///                           call's `env` may set VAR; nothing else, never STEVEDORE_*
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CommandPolicy {
    /// Each allowed program as the node named it, and the file it resolved to.
    programs: BTreeMap<String, PathBuf>,
    /// The variables a child gets from the worker's environment; the only ones a call may set.
    env: Vec<String>,
}

impl CommandPolicy {
    /// The policy of `--allow-command` `programs` and `--command-env` `env`; a program that
    /// is not on the worker's PATH, or a variable that may not be passed, is an error naming
    /// the flag.
    pub fn new(programs: &[String], env: &[String]) -> Result<Self, String> {
        let programs = programs
            .iter()
            .map(|name| Ok((name.clone(), resolve(name)?)))
            .collect::<Result<_, String>>()?;
        for name in env {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(format!("--command-env {name:?}: not a variable name"));
            }
            if name.starts_with("STEVEDORE_") {
                return Err(format!(
                    "--command-env {name}: stevedore's own variables (credentials, signing keys) never reach a command"
                ));
            }
        }
        Ok(Self {
            programs,
            env: env.to_vec(),
        })
    }

    /// The file to run for `program`, if the node allows it.
    fn program(&self, program: &str) -> Option<&Path> {
        self.programs.get(program).map(PathBuf::as_path)
    }

    /// The child's whole environment: the node's variables from this process's environment,
    /// then the call's, which may set only those.
    fn environment(
        &self,
        call: &BTreeMap<String, String>,
        node: &str,
    ) -> Result<BTreeMap<String, String>, TaskError> {
        if let Some(name) = call.keys().find(|name| !self.env.contains(name)) {
            return Err(TaskError::fatal(format!(
                "task `stevedore.command`: the call sets `{name}`, which node {node} does not pass to commands; start the worker with --command-env {name}"
            )));
        }
        let inherited =
            (self.env.iter()).filter_map(|name| Some((name.clone(), std::env::var(name).ok()?)));
        Ok(inherited.chain(call.clone()).collect())
    }
}

/// `program` as an absolute path: itself when absolute, else the first executable file of
/// that name on this process's PATH.
fn resolve(program: &str) -> Result<PathBuf, String> {
    let path = Path::new(program);
    if path.is_absolute() {
        return match is_executable(path) {
            true => Ok(path.to_path_buf()),
            false => Err(format!(
                "--allow-command {program}: no executable file there"
            )),
        };
    }
    if program.is_empty() || program.contains('/') {
        return Err(format!(
            "--allow-command {program:?}: give a program name (found on PATH) or an absolute path"
        ));
    }
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&dirs)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| format!("--allow-command {program}: not found on this worker's PATH; give its absolute path"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The call: `[program, [args...], {env}]` (args and env optional, also as kwargs).
struct Call {
    program: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

fn parse(invocation: &mut Invocation) -> Result<Call, TaskError> {
    let mut positional = std::mem::take(&mut invocation.args).into_iter();
    let mut named = std::mem::take(&mut invocation.kwargs);
    let mut take = |name: &str| positional.next().or_else(|| named.remove(name));
    let decode_error = |name: &str, e: String| {
        TaskError::fatal(format!(
            "task `stevedore.command`: argument `{name}` has the wrong type: {}",
            stevedore::__private::without_values(&e)
        ))
    };
    let program: String = match take("program") {
        Some(value) => {
            rmpv::ext::from_value(value).map_err(|e| decode_error("program", e.to_string()))?
        }
        None => {
            return Err(TaskError::fatal(
                "task `stevedore.command`: missing argument `program`",
            ))
        }
    };
    let args = take("args")
        .map(|v| rmpv::ext::from_value(v).map_err(|e| decode_error("args", e.to_string())))
        .transpose()?
        .unwrap_or_default();
    let env = take("env")
        .map(|v| rmpv::ext::from_value(v).map_err(|e| decode_error("env", e.to_string())))
        .transpose()?
        .unwrap_or_default();
    Ok(Call { program, args, env })
}

/// Runs the command of `invocation`.
pub async fn run(mut invocation: Invocation) -> Result<rmpv::Value, TaskError> {
    let call = parse(&mut invocation)?;
    let node = invocation.context.node();
    let Some(file) = policy().program(&call.program) else {
        return Err(TaskError::fatal(format!(
            "program `{}` is not allowed on node {node}; start the worker with --allow-command {}",
            call.program, call.program
        )));
    };
    let env = policy().environment(&call.env, node)?;
    let mut child = Command::new(file)
        .args(&call.args)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| TaskError::fatal(format!("cannot start `{}`: {e}", call.program)))?;
    let group = ProcessGroup(child.id().map(|pid| Pid::from_raw(pid as i32)));
    let tail = Tail::default();
    let pumps = tokio::spawn({
        let (stdout, stderr, tail) = (child.stdout.take(), child.stderr.take(), tail.clone());
        async move { tokio::join!(pump(stdout, tail.clone()), pump(stderr, tail)) }
    });
    let cancel = invocation.context.cancellation().clone();
    let status = tokio::select! {
        status = child.wait() => status,
        () = cancel.cancelled() => {
            group.signal(Signal::SIGTERM);
            match tokio::time::timeout(TERM_GRACE, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    group.signal(Signal::SIGKILL);
                    child.wait().await
                }
            }
        }
    }
    .map_err(|e| TaskError::new(format!("cannot wait for `{}`: {e}", call.program)))?;
    // Background grandchildren may hold the pipes open: wait a little, then take what came.
    let _ = tokio::time::timeout(Duration::from_secs(1), pumps).await;
    let tail = tail.text();
    if cancel.is_cancelled() {
        return Err(TaskError::cancelled());
    }
    match status.code() {
        Some(0) => Ok(rmpv::Value::Map(vec![
            ("exit_code".into(), 0.into()),
            ("output".into(), tail.into()),
        ])),
        _ => Err(TaskError::new(format!(
            "`{}` ended with {status}; output tail:\n{tail}",
            call.program
        ))),
    }
}

/// Kills the whole group when the run is dropped (hard timeout, shutdown).
struct ProcessGroup(Option<Pid>);

impl ProcessGroup {
    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.0 {
            let _ = killpg(pgid, signal);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

/// The last [`TAIL_BYTES`] of a command's output, stdout and stderr in arrival order.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<VecDeque<u8>>>);

impl Tail {
    fn push(&self, bytes: &[u8]) {
        let mut tail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        tail.extend(bytes);
        let excess = tail.len().saturating_sub(TAIL_BYTES);
        tail.drain(..excess);
    }

    fn text(&self) -> String {
        let mut tail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(tail.make_contiguous()).into_owned()
    }
}

/// Copies `pipe` into `tail` until it closes.
async fn pump(pipe: Option<impl AsyncRead + Unpin>, tail: Tail) {
    let Some(mut pipe) = pipe else { return };
    let mut buffer = vec![0; 8192];
    while let Ok(n) = pipe.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        tail.push(&buffer[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_programs_resolve_to_absolute_files_at_start() {
        let policy = CommandPolicy::new(&["sh".into()], &[]).unwrap();
        let sh = policy.program("sh").unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        assert!(policy.program("bash").is_none());
        for bad in ["no-such-program-here", "bin/sh", "/no/such/file"] {
            assert!(CommandPolicy::new(&[bad.into()], &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_call_sets_only_the_variables_its_node_passes() {
        assert!(CommandPolicy::new(&[], &["STEVEDORE_SIGNING_KEYS".into()]).is_err());
        assert!(CommandPolicy::new(&[], &["A=B".into()]).is_err());
        let policy = CommandPolicy::new(&[], &["LANG".into()]).unwrap();
        let call = |name: &str| BTreeMap::from([(name.to_owned(), "x".to_owned())]);
        assert_eq!(policy.environment(&call("LANG"), "n").unwrap()["LANG"], "x");
        let refused = policy.environment(&call("PATH"), "n").unwrap_err();
        assert!(
            refused.message().contains("--command-env PATH"),
            "{refused}"
        );
    }
}
