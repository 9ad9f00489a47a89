//! Throughput across shards: the same work (no-op tasks spread over three queues, two worker
//! processes) on one plain server, on a one-master Redis Cluster (the cost of the cluster
//! client alone) and on a three-master cluster (each queue on its own shard).
//!
//! On one machine every shard competes for the same cores as the workers and the publisher,
//! so this measures the cost of cluster mode and whether the shards' work overlaps; it cannot
//! show the gain of shards on their own machines.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use stevedore::broker::{Broker, BrokerConfig, Connection};
use stevedore::{Client, PublishOptions};

use crate::measure;
use crate::server::{Server, Worker};

/// The queues the work is spread over; on three masters each hashes to another one.
const QUEUES: [&str; 3] = ["default", "high", "low"];
const WORKERS: usize = 2;

/// A Redis Cluster of `masters` masters without replicas, on loopback ports, killed when
/// dropped.
struct Cluster {
    nodes: Vec<Child>,
    ports: Vec<u16>,
    /// The first node's cluster bus port, where the others meet it.
    first_bus: u16,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(masters: usize) -> anyhow::Result<Self> {
        // Built first, so the nodes already started are killed if a later one fails.
        let mut cluster = Self {
            nodes: Vec::new(),
            ports: Vec::new(),
            first_bus: 0,
            _dir: tempfile::tempdir()?,
        };
        for i in 0..masters {
            let node_dir = cluster._dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir)?;
            let (port, bus) = (free_port()?, free_port()?);
            if i == 0 {
                cluster.first_bus = bus;
            }
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                ])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--maxmemory-policy", "noeviction", "--dir"])
                .arg(&node_dir)
                .stdout(Stdio::null())
                .spawn()
                .context("start redis-server (scripts/ensure-redis installs it)")?;
            cluster.nodes.push(child);
            cluster.ports.push(port);
        }
        for port in &cluster.ports {
            wait_answers(*port)?;
        }
        cluster.assign_slots()?;
        cluster.wait_healthy()?;
        Ok(cluster)
    }

    /// Gives every master an equal share of the slots and joins them.
    fn assign_slots(&self) -> anyhow::Result<()> {
        let share = 16384 / self.ports.len();
        for (i, port) in self.ports.iter().enumerate() {
            let first = i * share;
            let last = if i + 1 == self.ports.len() {
                16383
            } else {
                first + share - 1
            };
            let mut conn = plain(*port)?;
            redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .query::<()>(&mut conn)?;
            if i > 0 {
                redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(self.ports[0])
                    .arg(self.first_bus)
                    .query::<()>(&mut conn)?;
            }
        }
        Ok(())
    }

    fn wait_healthy(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let healthy = self.ports.iter().all(|port| {
                plain(*port)
                    .and_then(|mut c| {
                        Ok(redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c)?)
                    })
                    .is_ok_and(|info| {
                        info.contains("cluster_state:ok")
                            && info.contains(&format!("cluster_known_nodes:{}", self.ports.len()))
                    })
            });
            if healthy {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("the benchmark's cluster did not become healthy within 30 s")
    }

    fn url(&self) -> String {
        let seeds: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn plain(port: u16) -> anyhow::Result<redis::Connection> {
    Ok(redis::Client::open(format!("redis://127.0.0.1:{port}"))?
        .get_connection_with_timeout(Duration::from_secs(2))?)
}

fn wait_answers(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if plain(port)
            .and_then(|mut c| Ok(redis::cmd("PING").query::<String>(&mut c)?))
            .is_ok()
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    anyhow::bail!("redis-server on port {port} did not answer within 10 s")
}

/// End-to-end tasks/s for `n` tasks on one server, one master and three masters.
pub async fn throughput(n: usize) -> anyhow::Result<serde_json::Value> {
    let server = Server::start(false)?;
    let single = spread_end_to_end(&server.url(), n).await?;
    drop(server);
    let one = Cluster::start(1)?;
    let one_master = spread_end_to_end(&one.url(), n).await?;
    drop(one);
    let three = Cluster::start(3)?;
    let three_masters = spread_end_to_end(&three.url(), n).await?;
    drop(three);
    eprintln!(
        "three queues, two workers: {single:.0}/s on one server, {one_master:.0}/s on a \
         one-master cluster, {three_masters:.0}/s on three masters"
    );
    Ok(serde_json::json!({
        "tasks": n,
        "single_server_per_s": single,
        "cluster_1_master_per_s": one_master,
        "cluster_3_masters_per_s": three_masters,
    }))
}

/// Tasks run to completion per second at `url`: `n` no-op tasks spread over three queues,
/// published in batches of 1,000 (each spanning every queue) while two worker processes drain
/// them.
async fn spread_end_to_end(url: &str, n: usize) -> anyhow::Result<f64> {
    let client = Client::connect(url, "stevedore").await?;
    let fleet: Vec<Worker> = (0..WORKERS)
        .map(|i| {
            Worker::start(
                url,
                &format!("shards-{i}"),
                &["--queues", "high,default,low"],
            )
        })
        .collect::<anyhow::Result<_>>()?;
    measure::wait_for_workers(&client, WORKERS).await?;
    let mut conn = Broker::connect(BrokerConfig::new(url, "stevedore"))
        .await?
        .dedicated_connection(Duration::from_secs(30), "bench")
        .await?;
    let started = Instant::now();
    for first in (0..n).step_by(1000) {
        let messages = (first..n.min(first + 1000))
            .map(|i| noop(QUEUES[i % QUEUES.len()]))
            .collect::<anyhow::Result<Vec<_>>>()?;
        client.publish_many(messages).await?;
    }
    wait_all_drained(&mut conn).await?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    drop(fleet);
    Ok(rate)
}

fn noop(queue: &str) -> anyhow::Result<stevedore::Message> {
    let options = PublishOptions::new().queue(queue);
    Ok(Client::message(
        "stevedore.noop",
        Vec::new(),
        Default::default(),
        &options,
    )?)
}

/// Waits until no queue of the run has an entry waiting or pending (one pipelined round trip
/// per look), for up to [`measure::DRAIN_LIMIT`].
async fn wait_all_drained(conn: &mut Connection) -> anyhow::Result<()> {
    let mut lengths = redis::pipe();
    for queue in QUEUES {
        // Entries are deleted once acknowledged, so the length counts waiting + pending.
        lengths
            .cmd("XLEN")
            .arg(format!("stevedore:{{q:{queue}}}:stream"));
    }
    let deadline = Instant::now() + measure::DRAIN_LIMIT;
    loop {
        let left: Vec<u64> = lengths.query_async(conn).await?;
        if left.iter().all(|n| *n == 0) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{left:?} tasks still queued after {:?}",
            measure::DRAIN_LIMIT
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
