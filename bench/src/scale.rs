//! How the control plane's costs grow with the cluster, by simulation (issue 22, point 3).
//!
//! 1. Nodes: 10, 100 and 1,000 simulated nodes in this process, each speaking the real
//!    protocol through the client's broker: a heartbeat every 2 s (the worker's default) and a
//!    blocking read of the control stream on its own connection, answering requests as a
//!    worker does; one real stock worker runs beside them (its heartbeat and reaper). Measured:
//!    Redis CPU per second at rest (heartbeats, control reads, the reaper), `status --all`
//!    (every node answers), and a durable cancel (stored, then every node answers).
//! 2. Queues: a worker reading 10, 100 and 1,000 queues, tasks published to the last one
//!    (the worst place: every read tries the others first): Redis CPU and commands per task,
//!    and `stevedore queues` (the listing of every queue) with that many queues.
//!
//! Not simulated: broadcasts delivered to every simulated node, delayed-task forwarding with a
//! million delayed tasks, and the metrics scrape (BENCHMARKS.md says so).

use std::time::{Duration, Instant};

use stevedore::broker::Broker;
use stevedore::control::{Answer, CancelSelector, Command, NodeStatus, Reply, Target};
use stevedore::nodes::NodeBeat;
use stevedore::CancellationToken;
use stevedore::{Client, PublishOptions};

use crate::measure;
use crate::server::{Server, Worker};

/// The figures for each cluster size and each queue count.
pub async fn costs(
    nodes: &[usize],
    queues: &[usize],
    tasks: usize,
) -> anyhow::Result<serde_json::Value> {
    let mut by_nodes = serde_json::Map::new();
    for &n in nodes {
        let server = Server::start(false)?;
        let figures = cluster_of(&server, n).await?;
        eprintln!("scale: {n} nodes: {figures}");
        by_nodes.insert(n.to_string(), figures);
    }
    let mut by_queues = serde_json::Map::new();
    for &q in queues {
        let server = Server::start(false)?;
        let figures = queues_of(&server, q, tasks).await?;
        eprintln!("scale: {q} queues: {figures}");
        by_queues.insert(q.to_string(), figures);
    }
    Ok(serde_json::json!({"nodes": by_nodes, "queues": by_queues}))
}

/// Starts `n` simulated nodes and one stock worker, then measures.
async fn cluster_of(server: &Server, n: usize) -> anyhow::Result<serde_json::Value> {
    let client = Client::connect(&server.url(), "stevedore").await?;
    let stop = CancellationToken::new();
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
        tasks.push(tokio::spawn(answer(broker, node, stop.clone())));
    }
    let _worker = Worker::start(&server.url(), "real", &[])?;
    measure::wait_for_workers(&client, n + 1).await?;
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

/// A worker reading `count` queues drains `tasks` no-ops published to the last of them.
async fn queues_of(
    server: &Server,
    count: usize,
    tasks: usize,
) -> anyhow::Result<serde_json::Value> {
    let client = Client::connect(&server.url(), "stevedore").await?;
    let names: Vec<String> = (0..count).map(|i| format!("q{i:04}")).collect();
    let last = names.last().cloned().unwrap_or_default();
    let _worker = Worker::start(&server.url(), "many", &["--queues", &names.join(",")])?;
    measure::wait_for_workers(&client, 1).await?;
    let (cpu, cmds) = (server.cpu_seconds().await?, server.commands_total().await?);
    let options = PublishOptions::new().queue(&last);
    measure::publish_noops(&client, tasks, &options).await?;
    measure::wait_queue_drained(server, &last).await?;
    let per_task = |x: f64| x / tasks as f64;
    let redis_us = per_task((server.cpu_seconds().await? - cpu) * 1e6);
    let cmds_per_task = per_task((server.commands_total().await? - cmds) as f64);
    let started = Instant::now();
    let listed = client.queues().await?.len();
    let queues_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(serde_json::json!({
        "redis_cpu_us_per_task": redis_us,
        "redis_cmds_per_task": cmds_per_task,
        "queues_listing_ms": queues_ms,
        "queues_listed": listed,
    }))
}
