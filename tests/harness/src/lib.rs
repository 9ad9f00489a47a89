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
