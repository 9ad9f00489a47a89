//! The parent's side of one process-pool child: spawn it (the same binary, re-run with
//! `STEVEDORE_CHILD_SOCKET` set; never a fork under tokio), hand it runs over a private Unix
//! socket, tell it to stop with SIGUSR1, and kill it when it will not.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use stevedore::TaskError;
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};
use tokio::time::{sleep_until, Instant};

use super::frame::{self, ErrorKind, ToChild, ToParent};
use super::guard::TimeLimits;
use crate::stop::{StopReason, StopSignal};

/// The environment variable that makes a worker binary run as a pool child.
pub const CHILD_SOCKET_ENV: &str = "STEVEDORE_CHILD_SOCKET";

/// How long a new child has to connect and say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How to start children.
#[derive(Debug)]
pub struct ChildLauncher {
    exe: PathBuf,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    spawned: AtomicU64,
}

/// One running child, connected.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
    stream: UnixStream,
    pid: u32,
}

impl ChildLauncher {
    /// Children re-run this binary with `env` (Redis URL, namespace, node).
    pub fn new(env: Vec<(String, String)>) -> std::io::Result<Self> {
        Ok(Self {
            exe: std::env::current_exe()?,
            dir: tempfile::Builder::new()
                .prefix("stevedore-pool-")
                .tempdir()?,
            env,
            spawned: AtomicU64::new(0),
        })
    }

    /// Starts a child and waits until it is ready.
    pub async fn spawn(&self) -> std::io::Result<ChildProcess> {
        let n = self.spawned.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("child-{n}.sock"));
        let listener = UnixListener::bind(&path)?;
        let mut child = Command::new(&self.exe)
            .env(CHILD_SOCKET_ENV, &path)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let accepted = tokio::select! {
            accepted = tokio::time::timeout(START_TIMEOUT, listener.accept()) => accepted,
            status = child.wait() => {
                return Err(std::io::Error::other(format!("pool child exited at start: {:?}", status?)));
            }
        };
        let _ = std::fs::remove_file(&path);
        let (mut stream, _) =
            accepted.map_err(|_| std::io::Error::other("pool child did not connect in time"))??;
        match frame::read::<ToParent>(&mut stream).await? {
            Some(ToParent::Ready { pid }) => Ok(ChildProcess { child, stream, pid }),
            other => Err(std::io::Error::other(format!(
                "pool child said {other:?} instead of ready"
            ))),
        }
    }
}

/// What one run on a child ended with.
pub struct ChildOutcome {
    /// The run's outcome.
    pub outcome: Result<rmpv::Value, TaskError>,
    /// The child, when it is still fit to take another run.
    pub child: Option<ChildProcess>,
}

impl ChildProcess {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The child's resident memory in bytes, read from `/proc`.
    pub fn rss_bytes(&self) -> Option<u64> {
        crate::pool::rss_bytes(self.pid)
    }

    /// Runs one task on the child under `stop` and `limits`: SIGUSR1 at the soft limit or on a
    /// cancel, SIGKILL at the hard limit or `grace` after a cancel.
    pub async fn run(
        mut self,
        run: ToChild,
        stop: &StopSignal,
        limits: TimeLimits,
        grace: Duration,
    ) -> ChildOutcome {
        if let Err(error) = frame::write(&mut self.stream, &run).await {
            let what = format!(
                "cannot hand the task to worker process {}: {error}",
                self.pid
            );
            return self.lost(what).await;
        }
        let started = Instant::now();
        let far = started + Duration::from_secs(86_400 * 365);
        let soft_at = limits.soft.map_or(far, |d| started + d);
        let hard_at = limits.hard.map_or(far, |d| started + d);
        let mut kill_at = far;
        let mut told = false;
        let pid = self.pid;
        let ended = {
            let reply = frame::read::<ToParent>(&mut self.stream);
            let mut reply = std::pin::pin!(reply);
            loop {
                tokio::select! {
                    biased;
                    reply = &mut reply => break Some(reply),
                    () = sleep_until(hard_at) => {
                        stop.stop(StopReason::TimedOut);
                        break None;
                    }
                    () = sleep_until(kill_at) => break None,
                    () = sleep_until(soft_at), if !told => {
                        stop.stop(StopReason::TimedOut);
                        tell(pid);
                        told = true;
                    }
                    () = stop.cancel_requested().cancelled(), if kill_at == far => {
                        tell(pid);
                        told = true;
                        kill_at = Instant::now() + grace;
                    }
                }
            }
        };
        match ended {
            Some(Ok(Some(ToParent::Done { outcome }))) => ChildOutcome {
                outcome: outcome.map_err(|(kind, message)| task_error(kind, message)),
                child: Some(self),
            },
            Some(other) => {
                let why = match other {
                    Ok(_) => "closed its socket".to_owned(),
                    Err(error) => format!("failed: {error}"),
                };
                self.lost(format!("worker process {pid} {why} while running the task"))
                    .await
            }
            None => {
                let reason = stop.reason().unwrap_or(StopReason::Cancelled);
                self.kill().await;
                tracing::warn!(pid, ?reason, "killed a worker process that did not stop");
                ChildOutcome {
                    outcome: Err(reason.error()),
                    child: None,
                }
            }
        }
    }

    /// The child died or broke its protocol: the run is lost; say how the child ended.
    async fn lost(mut self, what: String) -> ChildOutcome {
        let status = match tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await {
            Ok(Ok(status)) => format!(" ({status})"),
            _ => {
                self.kill().await;
                String::new()
            }
        };
        ChildOutcome {
            outcome: Err(TaskError::new(format!("lost: {what}{status}"))),
            child: None,
        }
    }

    /// Kills the child and reaps it.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Asks the child to exit (closing its socket) and reaps it; kills it if it lingers.
    pub async fn retire(self) {
        let Self {
            mut child, stream, ..
        } = self;
        drop(stream);
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// Tells a child to stop its task (it fires the task's cancellation token).
fn tell(pid: u32) {
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGUSR1);
}

fn task_error(kind: ErrorKind, message: String) -> TaskError {
    match kind {
        ErrorKind::Failed => TaskError::new(message),
        ErrorKind::Fatal => TaskError::fatal(message),
        ErrorKind::Cancelled => TaskError::cancelled(),
    }
}
