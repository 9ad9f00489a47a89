//! The benchmark's servers and processes: a redis-server from the tests' harness on a loopback
//! TCP port, beat and worker processes (this binary in their modes), killed when dropped.

use std::process::{Child, Command, Stdio};

use anyhow::Context as _;
use stevedore_harness::RedisServer;

/// A running redis-server on a loopback TCP port (the tests' harness).
pub struct Server {
    inner: RedisServer,
}

impl Server {
    /// Starts one without persistence, or with AOF `everysec` when `aof`.
    pub fn start(aof: bool) -> anyhow::Result<Self> {
        Ok(Self {
            inner: RedisServer::start_tcp(aof),
        })
    }

    /// Its URL.
    pub fn url(&self) -> String {
        self.inner.url()
    }

    /// A plain connection for the benchmark's own commands (no reply limit: drains block).
    pub async fn connection(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        Ok(redis::Client::open(self.url())?
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    /// CPU time the server used so far (`used_cpu_sys` + `used_cpu_user` from INFO), seconds.
    pub async fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(&mut self.connection().await?)
            .await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .with_context(|| format!("INFO cpu has no {name}"))
        };
        Ok(field("used_cpu_sys:")? + field("used_cpu_user:")?)
    }

    /// Commands run so far: the sum of `calls` over INFO commandstats.
    pub async fn commands_total(&self) -> anyhow::Result<u64> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.connection().await?)
            .await?;
        Ok(info
            .lines()
            .filter_map(|l| {
                l.split_once("calls=")?
                    .1
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum())
    }

    /// Keys expired so far (`expired_keys` from INFO stats).
    pub async fn expired_keys(&self) -> anyhow::Result<u64> {
        self.info_number("stats", "expired_keys").await
    }

    /// `used_memory` from INFO, in bytes.
    pub async fn used_memory(&self) -> anyhow::Result<u64> {
        self.info_number("memory", "used_memory").await
    }

    /// The whole-number `field` of INFO `section`.
    async fn info_number(&self, section: &str, field: &str) -> anyhow::Result<u64> {
        let info: String = redis::cmd("INFO")
            .arg(section)
            .query_async(&mut self.connection().await?)
            .await?;
        let prefix = format!("{field}:");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("INFO {section} has no {field}"))
    }
}

/// A beat process (this binary in beat mode), killed when dropped.
pub struct Beat {
    child: Child,
}

impl Beat {
    /// Starts a beat against `url`.
    pub fn start(url: &str) -> anyhow::Result<Self> {
        let child = Command::new(std::env::current_exe()?)
            .env(stevedore_bench::BEAT_ENV, "1")
            .args(["--redis-url", url])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?;
        Ok(Self { child })
    }

    /// CPU time it used so far (user + system), from `/proc/PID/stat`.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(self.child.id())
    }
}

impl Drop for Beat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A worker process (this binary in worker mode), stopped when dropped.
pub struct Worker {
    child: Child,
}

impl Worker {
    /// Starts a worker against `url` as `node` with the default flags and `extra` ones (the
    /// benchmark measures the defaults users run).
    pub fn start(url: &str, node: &str, extra: &[&str]) -> anyhow::Result<Self> {
        Self::spawn(url, node, extra)
    }

    /// Starts a worker as users run it: default flags.
    pub fn start_stock(url: &str, node: &str) -> anyhow::Result<Self> {
        Self::spawn(url, node, &[])
    }

    /// Starts the stock `worker` binary built beside this one (`cargo build --release -p
    /// stevedore-worker`), if there is one: what users run, for its idle RSS (this binary's
    /// worker mode maps the benchmark's code too).
    pub fn start_stock_binary(url: &str, node: &str) -> anyhow::Result<Option<Self>> {
        let exe = std::env::current_exe()?.with_file_name("worker");
        if !exe.is_file() {
            return Ok(None);
        }
        let child = Command::new(&exe)
            .args(["--redis-url", url, "--node", node])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {}", exe.display()))?;
        Ok(Some(Self { child }))
    }

    fn spawn(url: &str, node: &str, extra: &[&str]) -> anyhow::Result<Self> {
        // The benchmark binary itself, run as the stock worker with `bench.stamp` linked in.
        let exe = std::env::current_exe()?;
        let child = Command::new(&exe)
            .env(stevedore_bench::WORKER_ENV, "1")
            .args(["--redis-url", url, "--node", node])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {}", exe.display()))?;
        Ok(Self { child })
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time it used so far (user + system), from `/proc/PID/stat`.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(self.child.id())
    }

    /// A field of `/proc/PID/status` in MiB (`VmRSS`, `VmHWM`).
    pub fn memory_mb(&self, field: &str) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }
}

impl Drop for Worker {
    /// Stops it gracefully (SIGTERM), so it leaves no heartbeat for peers to reap.
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_err() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// CPU time (user + system, s) process `pid` used so far, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
