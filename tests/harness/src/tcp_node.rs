//! `redis-server` processes on loopback TCP ports, for deployments of several servers
//! (Cluster, Sentinel) and TLS.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it holds, or panics naming `what` once `timeout` has
/// passed: the blocking twin of the tests' `eventually`, for harness code outside async.
pub fn poll_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ports handed out by [`free_port`]: below Linux's ephemeral range (32768 and up), so no
/// outgoing connection takes one between the handing out and the server binding it (or while a
/// killed node is down before its restart on the same port).
const PORTS: std::ops::Range<u32> = 20_000..32_000;

/// A free loopback port for a server of this test process, never handed out twice on this
/// machine while the process lives: tests run in processes of their own, many at once
/// (cargo-nextest), and a port that is free now may be another test's killed node waiting for
/// its restart. So each port handed out is claimed by an exclusive lock on a file of its own,
/// held until the process exits (the kernel drops it then, even after a SIGKILL).
pub fn free_port() -> u16 {
    static NEXT: std::sync::OnceLock<std::sync::atomic::AtomicU32> = std::sync::OnceLock::new();
    static CLAIMS: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let next = NEXT.get_or_init(|| {
        // Processes that start together begin their search apart.
        std::sync::atomic::AtomicU32::new(std::process::id() * 7919 % PORTS.len() as u32)
    });
    let claims = std::env::temp_dir().join("stevedore-test-ports");
    std::fs::create_dir_all(&claims).expect("create the directory of port claims");
    for _ in 0..PORTS.len() {
        let offset = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % PORTS.len() as u32;
        let port = u16::try_from(PORTS.start + offset).expect("ports fit in u16");
        let claim = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(claims.join(port.to_string()))
            .expect("open a port claim");
        if claim.try_lock().is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            CLAIMS.lock().unwrap_or_else(|e| e.into_inner()).push(claim);
            return port;
        }
    }
    panic!("no free loopback port in {PORTS:?}");
}

/// One `redis-server` (or sentinel) on a loopback port, killed when dropped.
pub struct TcpNode {
    /// Its port.
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    args: Vec<String>,
    /// The password the test's own connections give (`requirepass`), if any.
    password: Option<String>,
}

impl TcpNode {
    /// Starts `redis-server` with `args` (its port, directory and no snapshots are added)
    /// in `dir`, without waiting for it.
    pub fn spawn(dir: &Path, port: u16, args: &[String]) -> Self {
        std::fs::create_dir_all(dir).expect("create the node's directory");
        let mut node = Self {
            port,
            child: None,
            dir: dir.to_path_buf(),
            args: args.to_vec(),
            password: None,
        };
        node.launch();
        node
    }

    fn launch(&mut self) {
        let port = self.port.to_string();
        let ports = match self.is_tls() {
            true => ["--port", "0", "--tls-port", &port],
            false => ["--port", &port, "--bind", "127.0.0.1"],
        };
        let child = Command::new(crate::server_binary())
            .args(&self.args)
            .args(ports)
            .args(["--save", "", "--dir"])
            .arg(&self.dir)
            .args(["--logfile", "redis.log"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (is it installed? scripts/test installs it)");
        self.child = Some(child);
    }

    fn is_tls(&self) -> bool {
        self.args.iter().any(|a| a == "--tls-cert-file")
    }

    /// A connection URL to this node for the test's own checks (`redis://127.0.0.1:PORT`, or
    /// `rediss://...#insecure` for a TLS node).
    pub fn url(&self) -> String {
        let auth = self
            .password
            .as_ref()
            .map_or(String::new(), |p| format!(":{p}@"));
        match self.is_tls() {
            true => format!("rediss://{auth}127.0.0.1:{}/#insecure", self.port),
            false => format!("redis://{auth}127.0.0.1:{}", self.port),
        }
    }

    /// Makes the test's own connections to it give `password` (its `requirepass`).
    pub fn with_password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// Waits until it serves data over plain TCP (PING answers while a restarted node still
    /// loads its AOF; a key lookup gets LOADING then).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut conn) = redis::Client::open(self.url()).and_then(|c| c.get_connection()) {
                match redis::cmd("EXISTS")
                    .arg("harness:ready")
                    .query::<i64>(&mut conn)
                {
                    Ok(_) => return,
                    Err(e) if e.code() == Some("LOADING") => {}
                    // Another error with a code (NOAUTH: ACLs are on) is the server answering.
                    Err(e) if e.code().is_some() => return,
                    Err(_) => {}
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "redis-server on port {} did not answer within 10 s",
            self.port
        );
    }

    /// Runs one command on this node over a short-lived plain connection.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        let mut conn =
            redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))?;
        cmd.query(&mut conn)
    }

    /// Kills it with SIGKILL (what a crash or a lost machine does).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again after [`TcpNode::kill`], on the same port, directory and arguments.
    pub fn restart(&mut self) {
        if self.child.is_none() {
            self.launch();
            self.wait_ready();
        }
    }

    /// Whether it is running (not killed by the test).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TcpNode {
    fn drop(&mut self) {
        self.kill();
    }
}
