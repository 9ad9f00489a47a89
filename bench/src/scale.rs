//! How the control plane's costs grow with the cluster, by simulation (issue 22, point 3).
//!
//! 1. Nodes: 10, 100 and 1,000 simulated nodes in this process, each speaking the real
//!    protocol through the client's broker: a heartbeat every 2 s (the worker's default) and a
//!    blocking read of the control stream on its own connection, answering requests as a
//!    worker does; one real stock worker runs beside them (its heartbeat and reaper). Measured:
//!    Redis CPU per second at rest (heartbeats, control reads, the reaper), `status --all`
//!    (every node answers), a durable cancel (stored, then every node answers), and a
//!    broadcast: each simulated node reads the broadcast stream through its own group on its
//!    own connection, as a worker's broadcast fetcher does; measured until every node has it.
//! 2. Queues: [`crate::scale_queues`].

use std::time::{Duration, Instant};

use stevedore::broker::Broker;
use stevedore::control::{Answer, CancelSelector, Command, NodeStatus, Reply, Target};
use stevedore::nodes::NodeBeat;
use stevedore::CancellationToken;
use stevedore::{Client, PublishOptions};

use crate::args::Sizes;
use crate::measure;
use crate::server::{Server, Worker};
use stevedore::broker::{GroupStart, Keys};
use stevedore::Destination;
use tokio::sync::mpsc;

/// Broadcasts published one after another, each awaited at every node.
const BROADCASTS: usize = 10;

/// The figures for each cluster size and each queue count.
pub async fn costs(sizes: &Sizes) -> anyhow::Result<serde_json::Value> {
    let mut by_nodes = serde_json::Map::new();
    for &n in &sizes.scale_nodes {
        let server = Server::start(false)?;
        let figures = cluster_of(&server, n).await?;
        eprintln!("scale: {n} nodes: {figures}");
        by_nodes.insert(n.to_string(), figures);
    }
    let by_queues = crate::scale_queues::costs(sizes).await?;
    Ok(serde_json::json!({"nodes": by_nodes, "queues": by_queues}))
}

/// Starts `n` simulated nodes and one stock worker, then measures.
async fn cluster_of(server: &Server, n: usize) -> anyhow::Result<serde_json::Value> {
    let client = Client::connect(&server.url(), "stevedore").await?;
    let stop = CancellationToken::new();
    let (delivered, mut deliveries) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for i in 0..n {
        let node = format!("sim-{i:04}");
        let offset = Duration::from_millis((2_000 * i / n.max(1)) as u64);
        let broker = client.broker().clone();
        tasks.push(tokio::spawn(beat(
            broker.clone(),
            node.clone(),
            offset,
            stop.clone(),
        )));
        tasks.push(tokio::spawn(answer(
            broker.clone(),
            node.clone(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(deliver(
            broker,
            node,
            delivered.clone(),
            stop.clone(),
        )));
    }
    let _worker = Worker::start(&server.url(), "real", &[])?;
    measure::wait_for_workers(&client, n + 1).await?;
    receive(&mut deliveries, n, "have their broadcast groups").await?;
    let window = Duration::from_secs(10);
    let cpu = server.cpu_seconds().await?;
    tokio::time::sleep(window).await;
    let rest = (server.cpu_seconds().await? - cpu) / window.as_secs_f64();
    let timeout = Duration::from_secs(30);
    let started = Instant::now();
    let answers = client
        .control(Target::All, Command::Status, timeout)
        .await?;
    let status_ms = started.elapsed().as_secs_f64() * 1e3;
    let selector = CancelSelector::ids(["00000000-0000-4000-8000-000000000000"]);
    let started = Instant::now();
    let cancelled = client.cancel(selector, timeout).await?;
    let cancel_ms = started.elapsed().as_secs_f64() * 1e3;
    let (broadcast_ms, broadcast_us) = broadcasts(server, &client, n, &mut deliveries).await?;
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let answered = |all: &[stevedore::control::NodeAnswer]| {
        all.iter()
            .filter(|a| matches!(a, stevedore::control::NodeAnswer::Answered(_)))
            .count()
    };
    Ok(serde_json::json!({
        "redis_cpu_share_at_rest": rest,
        "status_all_ms": status_ms,
        "status_all_answered": answered(&answers),
        "cancel_ms": cancel_ms,
        "cancel_answered": answered(&cancelled),
        "broadcast_to_all_ms": broadcast_ms,
        "broadcast_redis_cpu_us_per_node": broadcast_us,
    }))
}

/// One simulated node's heartbeat, every 2 s from `offset`.
async fn beat(broker: Broker, node: String, offset: Duration, stop: CancellationToken) {
    let beat = NodeBeat {
        node: node.clone(),
        consumer: format!("{node}-1"),
        version: env!("CARGO_PKG_VERSION").into(),
        protocol: stevedore::MESSAGE_VERSION,
        pid: 1,
        started_at: stevedore::now_ms(),
        queues: vec!["default".into()],
        pool: "async".into(),
        max_workers: 256,
        busy: 0,
        consuming: true,
        last_work_at: None,
    };
    tokio::time::sleep(offset).await;
    while !stop.is_cancelled() {
        if let Err(error) = broker.beat(&beat).await {
            eprintln!("scale: {node} cannot beat: {error}");
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// One simulated node's control reader: answers every request for it, as a worker does.
async fn answer(broker: Broker, node: String, stop: CancellationToken) {
    let block = Duration::from_secs(2);
    let Ok(mut conn) = broker.dedicated_connection(block, "control").await else {
        eprintln!("scale: {node} cannot open its control connection");
        return;
    };
    let mut after = broker
        .control_position()
        .await
        .unwrap_or_else(|_| "0-0".into());
    while !stop.is_cancelled() {
        let read = tokio::select! {
            () = stop.cancelled() => break,
            read = broker.read_control(&mut conn, &after, block) => read,
        };
        let Ok(requests) = read else { continue };
        for (entry, request) in requests {
            after = entry;
            if !request.target.includes(&node) {
                continue;
            }
            let answer = match request.command {
                Command::Status => Answer::Status(status_of(&node)),
                Command::Cancel(_) => Answer::Cancelled { ids: Vec::new() },
                _ => Answer::Refreshed,
            };
            let reply = Reply {
                node: node.clone(),
                answer,
            };
            let _ = broker.reply_control(&request.reply_to, &reply).await;
        }
    }
}

/// Publishes [`BROADCASTS`] no-op broadcasts one after another, each awaited until all `n`
/// simulated nodes read it: the median time to the last node (ms) and Redis CPU per node
/// delivery (us; the real worker's run of each is in it too).
async fn broadcasts(
    server: &Server,
    client: &Client,
    n: usize,
    deliveries: &mut mpsc::UnboundedReceiver<String>,
) -> anyhow::Result<(f64, f64)> {
    let options = PublishOptions::new().broadcast();
    let cpu = server.cpu_seconds().await?;
    let mut times = Vec::new();
    for _ in 0..BROADCASTS {
        let started = Instant::now();
        measure::publish_noops(client, 1, &options).await?;
        receive(deliveries, n, "read a broadcast").await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let cpu_us = (server.cpu_seconds().await? - cpu) * 1e6;
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], cpu_us / (BROADCASTS * n) as f64))
}

/// Waits for `n` messages from the simulated nodes' broadcast readers, 30 s at most.
async fn receive(
    deliveries: &mut mpsc::UnboundedReceiver<String>,
    n: usize,
    what: &str,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for _ in 0..n {
        tokio::time::timeout_at(deadline, deliveries.recv())
            .await
            .map_err(|_| anyhow::anyhow!("not all {n} simulated nodes {what} within 30 s"))?
            .ok_or_else(|| anyhow::anyhow!("the simulated nodes stopped"))?;
    }
    Ok(())
}

/// One simulated node's broadcast reader: its own group on the broadcast stream (created from
/// now on, as a worker's), a blocking read on its own connection; says so for each entry read.
async fn deliver(
    broker: Broker,
    node: String,
    delivered: mpsc::UnboundedSender<String>,
    stop: CancellationToken,
) {
    let block = Duration::from_secs(2);
    let group = Keys::group(&Destination::Broadcast, &node);
    let streams = [Destination::Broadcast];
    let ready = broker
        .ensure_group(&Destination::Broadcast, &group, GroupStart::Now)
        .await;
    let Ok(mut conn) = broker.dedicated_connection(block, "broadcast").await else {
        eprintln!("scale: {node} cannot open its broadcast connection");
        return;
    };
    if let Err(error) = ready {
        eprintln!("scale: {node} cannot create its broadcast group: {error}");
        return;
    }
    // Once when its group exists (the node is ready), then once per broadcast read.
    let _ = delivered.send(node.clone());
    let consumer = format!("{node}-1");
    while !stop.is_cancelled() {
        let read = tokio::select! {
            () = stop.cancelled() => break,
            read = broker.read_group(&mut conn, &group, &consumer, &streams, 16, Some(block)) => read,
        };
        for _ in read.unwrap_or_default() {
            let _ = delivered.send(node.clone());
        }
    }
}

/// What an idle simulated node says about itself.
fn status_of(node: &str) -> NodeStatus {
    NodeStatus {
        node: node.to_owned(),
        pid: 1,
        pool: "async".into(),
        min_workers: 0,
        max_workers: 256,
        queued: 0,
        workers: Vec::new(),
        queues: [("default".to_owned(), false)].into(),
        units_in_use: 0,
        exclusive: None,
    }
}
