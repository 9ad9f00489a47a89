//! Throughput across shards: the same work (no-op tasks spread over three queues, two worker
//! processes) on one plain server, on a one-master Redis Cluster (the cost of the cluster
//! client alone) and on a three-master cluster (each queue on its own shard).
//!
//! On one machine every shard competes for the same cores as the workers and the publisher,
//! so this measures the cost of cluster mode and whether the shards' work overlaps; it cannot
//! show the gain of shards on their own machines.

use std::time::{Duration, Instant};

use stevedore::broker::{Broker, BrokerConfig, Connection};
use stevedore::{Client, PublishOptions};
use stevedore_harness::cluster::RedisCluster;

use crate::measure;
use crate::server::{Server, Worker};

/// The queues the work is spread over; on three masters each hashes to another one.
const QUEUES: [&str; 3] = ["default", "high", "low"];
const WORKERS: usize = 2;

/// End-to-end tasks/s for `n` tasks on one server, one master and three masters.
pub async fn throughput(n: usize) -> anyhow::Result<serde_json::Value> {
    let server = Server::start(false)?;
    let single = spread_end_to_end(&server.url(), n).await?;
    drop(server);
    let one = RedisCluster::start_bare(1);
    let one_master = spread_end_to_end(&one.url(), n).await?;
    drop(one);
    let three = RedisCluster::start_bare(3);
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
        lengths.cmd("XLEN").arg(stevedore_bench::stream_of(queue));
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
