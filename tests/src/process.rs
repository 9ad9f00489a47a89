//! Worker processes started by a test: waited for until they fetch, signalled, killed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::RedisServer;

/// A worker process, killed when dropped; its log is printed if the test fails.
pub struct WorkerProcess {
    child: Child,
    node: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl WorkerProcess {
    /// Starts `bin` as node `node` with `extra` arguments, and waits until both its fetchers
    /// (queues and broadcasts) are reading.
    pub fn start(bin: &str, redis: &RedisServer, node: &str, extra: &[&str]) -> Self {
        Self::start_with_env(bin, redis, node, extra, &[])
    }

    /// As [`WorkerProcess::start`], with extra environment variables.
    pub fn start_with_env(
        bin: &str,
        redis: &RedisServer,
        node: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_at(bin, &redis.url(), node, extra, env)
    }

    /// As [`WorkerProcess::start_with_env`], for any deployment's URL (Cluster, Sentinel, TLS).
    pub fn start_at(
        bin: &str,
        redis_url: &str,
        node: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let worker = Self::spawn(bin, redis_url, node, extra, env);
        worker.wait_for_log("fetching", 2, Duration::from_secs(30));
        worker
    }

    /// Starts `bin` against `redis_url` without waiting for it to be ready.
    pub fn spawn(
        bin: &str,
        redis_url: &str,
        node: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        // Tests read success records long after their runs (fault runs last minutes): keep
        // them as long as the others, unless the test sets a retention itself.
        let sets_retention = (extra.iter())
            .any(|a| a.starts_with("--record-ttl") || a.starts_with("--succeeded-ttl"));
        let retention: &[&str] = if sets_retention {
            &[]
        } else {
            &["--succeeded-ttl", "1d"]
        };
        let mut child = Command::new(bin)
            .args(["--redis-url", redis_url, "--node", node, "--block", "1s"])
            .args(retention)
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .env("STEVEDORE_TEST_REDIS_URL", redis_url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the worker binary");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(line);
            }
        });
        Self {
            child,
            node: node.to_owned(),
            log,
        }
    }

    /// The node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Waits until `count` log lines contain `needle`.
    pub fn wait_for_log(&self, needle: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self
                .log_lines()
                .iter()
                .filter(|l| l.contains(needle))
                .count();
            if seen >= count {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "worker {} did not log `{needle}` {count} time(s) within {timeout:?}:\n{}",
                    self.node,
                    self.log_lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The log so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal the worker");
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the worker") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "worker {} did not exit within {timeout:?}",
                self.node
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill_hard();
        if std::thread::panicking() {
            eprintln!(
                "--- log of worker {} ---\n{}",
                self.node,
                self.log_lines().join("\n")
            );
        }
    }
}

/// A child process (a beat, a CLI) killed when dropped, so a failing test leaves nothing running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `timeout` for `child` to exit; kills it and returns `None` when it did not.
pub fn exit_within(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts a bare `redis-server` on unix socket `socket`, its files in `dir`, killed when
/// dropped: for tests that start a process before its Redis exists.
pub fn redis_server_on(socket: &std::path::Path, dir: &std::path::Path) -> KillOnDrop {
    let child = Command::new(stevedore_harness::server_binary())
        .args([
            "--port",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
            "--unixsocket",
        ])
        .arg(socket)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-server");
    KillOnDrop(child)
}
