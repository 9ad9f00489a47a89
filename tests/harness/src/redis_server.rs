//! A real `redis-server` for one test (on a unix socket in a temporary directory), or for the
//! benchmark (on a loopback TCP port, as clients on other machines would reach it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`, killed when dropped.
pub struct RedisServer {
    child: Child,
    dir: tempfile::TempDir,
    aof: bool,
    /// The loopback TCP port it listens on, or `None` for its unix socket.
    port: Option<u16>,
}

impl RedisServer {
    /// Starts a server without persistence and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts a server that persists every write to its append-only file (`appendfsync
    /// everysec`), so it can be restarted without losing what it acknowledged.
    pub fn start_with_aof() -> Self {
        Self::start_with(true)
    }

    /// Starts a server on a loopback TCP port (with AOF `everysec` when `aof`).
    ///
    /// A port free when it is chosen may be taken by another process before the server binds
    /// it: the server then exits, and another port is tried. The server is known by its pid
    /// (INFO `process_id`), so a stranger's server on the port is never taken for it.
    pub fn start_tcp(aof: bool) -> Self {
        const TRIES: usize = 5;
        for _ in 0..TRIES {
            let port = crate::tcp_node::free_port();
            if let Some(server) = Self::launch(aof, Some(port)) {
                return server;
            }
        }
        panic!("redis-server could not bind a free loopback port {TRIES} times in a row");
    }

    fn start_with(aof: bool) -> Self {
        Self::launch(aof, None).expect("redis-server on a unix socket in its own directory")
    }

    /// Starts the server; `None` when it exited before serving (its port was taken).
    fn launch(aof: bool, port: Option<u16>) -> Option<Self> {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let child = spawn(dir.path().to_path_buf(), aof, port);
        let mut server = Self {
            child,
            dir,
            aof,
            port,
        };
        server.wait_ready().then_some(server)
    }

    /// Stops the server (SIGTERM: it writes its AOF out) and starts it again on the same
    /// socket and data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Stops the server (SIGTERM: it writes its AOF out); [`RedisServer::start_again`] brings
    /// it back.
    pub fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }

    /// Starts a stopped server again on the same socket and data directory.
    pub fn start_again(&mut self) {
        self.child = spawn(self.dir.path().to_path_buf(), self.aof, self.port);
        assert!(
            self.wait_ready(),
            "redis-server exited on restart: its port {:?} was taken meanwhile",
            self.port
        );
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The URL to give stevedore.
    pub fn url(&self) -> String {
        match self.port {
            Some(port) => format!("redis://127.0.0.1:{port}"),
            None => format!("unix://{}", self.socket().display()),
        }
    }

    /// A plain redis-rs client, for the test's own checks.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("the test server URL parses")
    }

    /// A connection for the test's own commands.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        self.client()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis-server")
    }

    /// A stevedore client on namespace `stevedore`.
    pub async fn stevedore(&self) -> stevedore::Client {
        stevedore::Client::connect(&self.url(), "stevedore")
            .await
            .expect("stevedore connects to the test server")
    }

    /// Waits until it serves data; `false` when it exited first. PING answers while a
    /// restarted server still loads its AOF (other commands get LOADING then), so a key lookup
    /// is the test, and the answering server must be this one (its pid).
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = format!("process_id:{}", self.child.id());
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            // Bounded: a stranger holding the port may accept and never answer.
            let step = Duration::from_millis(500);
            let conn = (self.client().get_connection_with_timeout(step))
                .and_then(|conn| conn.set_read_timeout(Some(step)).map(|()| conn));
            if let Ok(mut conn) = conn {
                let serves = (redis::cmd("EXISTS").arg("harness:ready"))
                    .query::<i64>(&mut conn)
                    .is_ok();
                let info: String = (redis::cmd("INFO").arg("server"))
                    .query(&mut conn)
                    .unwrap_or_default();
                if serves && info.lines().any(|line| line.trim() == pid) {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server did not answer within 10 s");
    }
}

fn spawn(dir: PathBuf, aof: bool, port: Option<u16>) -> Child {
    let mut command = Command::new(crate::server_binary());
    match port {
        Some(port) => command.args(["--bind", "127.0.0.1", "--port", &port.to_string()]),
        None => command
            .args(["--port", "0", "--unixsocket"])
            .arg(dir.join("redis.sock"))
            .args(["--unixsocketperm", "700"]),
    };
    command
        .args(["--save", "", "--appendonly", if aof { "yes" } else { "no" }])
        .args(["--appendfsync", "everysec"])
        .args(["--maxmemory-policy", "noeviction", "--dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            let server = crate::server_binary();
            panic!("cannot start {server} ({e}); is it installed? scripts/test installs redis-server, and STEVEDORE_TEST_SERVER names another")
        })
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_whose_port_was_taken_is_known_to_have_failed_not_taken_for_the_stranger() {
        let taken = crate::tcp_node::free_port();
        let _stranger = std::net::TcpListener::bind(("127.0.0.1", taken)).unwrap();
        assert!(
            RedisServer::launch(false, Some(taken)).is_none(),
            "a server that could not bind its port was reported started"
        );
        let server = RedisServer::start_tcp(false);
        assert_ne!(server.port, Some(taken));
    }
}
