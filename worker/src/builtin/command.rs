//! `stevedore.command`: runs a program, as AWX's jobs run `ansible-playbook`.
//!
//! 1. Off unless the node was started with `--allow-command PROGRAM` for that exact program:
//!    anyone who can write to Redis must not get a shell by default.
//! 2. Runs it in its own process group with the given arguments and environment, no shell.
//! 3. Records the exit status and a bounded tail of its output (stdout and stderr together).
//! 4. Cancellation and the soft timeout stop the whole process group (SIGTERM, then SIGKILL after
//!    a grace); an aborted run (hard timeout, shutdown) kills it too.

use std::collections::{BTreeMap, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use stevedore::{Invocation, TaskError};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// The environment variable that carries the allow-list to process-pool children.
pub const ALLOW_ENV: &str = "STEVEDORE_ALLOW_COMMANDS";
/// Bytes of output kept.
const TAIL_BYTES: usize = 64 * 1024;
/// How long a told process group gets before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

static ALLOWED: OnceLock<Vec<String>> = OnceLock::new();

/// Sets the programs this process may run (once, at start).
pub fn allow(programs: Vec<String>) {
    let _ = ALLOWED.set(programs);
}

/// The programs this process may run.
pub fn allowed() -> &'static [String] {
    ALLOWED.get_or_init(|| {
        std::env::var(ALLOW_ENV)
            .ok()
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default()
    })
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
            "task `stevedore.command`: argument `{name}` has the wrong type: {e}"
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
    if !allowed().contains(&call.program) {
        return Err(TaskError::fatal(format!(
            "program `{}` is not allowed on node {}; start the worker with --allow-command {}",
            call.program,
            invocation.context.node(),
            call.program
        )));
    }
    let mut child = Command::new(&call.program)
        .args(&call.args)
        .envs(&call.env)
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
