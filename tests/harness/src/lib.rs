//! Real Redis deployments for stevedore's tests and benchmark, each killed when dropped:
//!
//! 1. [`RedisServer`]: one `redis-server` on a unix socket in a temporary directory (tests:
//!    no port races, no shared state) or on a loopback TCP port (the benchmark).
//! 2. [`cluster::RedisCluster`]: three masters with replicas (tests), TLS-only masters, or bare
//!    masters without replicas (the benchmark).
//! 3. [`sentinel`]: a master, a replica and three sentinels; [`tls`]: certificates made for a
//!    test.
//! 4. [`tcp_node`]: one server on a port handed out without races ([`tcp_node::free_port`]),
//!    and [`tcp_node::poll_until`], a blocking wait with a deadline.
//!
//! It holds no tasks, so a benchmark binary that links it runs a worker unchanged.

pub mod cluster;
pub mod redis_server;
pub mod sentinel;
pub mod tcp_node;
pub mod tls;

pub use redis_server::RedisServer;

/// The server the tests and the benchmark start: `STEVEDORE_TEST_SERVER` (a name on the PATH
/// or a path), `redis-server` when unset, so the whole suite runs unchanged on another
/// wire-compatible server (`valkey-server`).
pub fn server_binary() -> String {
    std::env::var("STEVEDORE_TEST_SERVER")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "redis-server".to_owned())
}

/// The command-line client beside [`server_binary`]: `NAME-server` gives `NAME-cli` (in the
/// same directory when it is a path); any other server name, `redis-cli`.
pub fn cli_binary() -> String {
    cli_beside(&server_binary())
}

fn cli_beside(server: &str) -> String {
    match server.strip_suffix("-server") {
        Some(prefix) => format!("{prefix}-cli"),
        None => "redis-cli".to_owned(),
    }
}

use std::time::Duration;

/// A connection for the caller's own commands to any deployment stevedore accepts (a cluster
/// connection splits pipelines by slot).
pub async fn connection_to(url: &str) -> stevedore::broker::Connection {
    connection_with(stevedore::broker::BrokerConfig::new(url, "tests")).await
}

/// A connection for the caller's own commands, made with `config`.
pub async fn connection_with(
    config: stevedore::broker::BrokerConfig,
) -> stevedore::broker::Connection {
    let broker = stevedore::broker::Broker::connect(config)
        .await
        .expect("connect to the test deployment");
    broker
        .dedicated_connection(Duration::from_secs(60), "test")
        .await
        .expect("open a test connection")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_found_beside_the_server() {
        assert_eq!(cli_beside("redis-server"), "redis-cli");
        assert_eq!(
            cli_beside("/opt/venv/bin/valkey-server"),
            "/opt/venv/bin/valkey-cli"
        );
        assert_eq!(cli_beside("my-build"), "redis-cli");
    }
}
