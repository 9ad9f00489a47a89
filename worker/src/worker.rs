//! A worker node: owns the fetchers, the executor and the recorder, and stops them in order.
//!
//! Shutdown order, and why:
//! 1. Stop fetching (`CLIENT UNBLOCK` wakes the blocked reads): no new work is taken, and
//!    nothing Redis handed out is left unseen.
//! 2. Drain: wait up to `--shutdown-timeout` for running tasks to finish and be recorded.
//! 3. Past the deadline, cancel the tasks' tokens and abandon them unacknowledged: their
//!    messages stay pending in Redis for recovery, and no half-finished run is recorded.
//! 4. Stop the recorder last, once it has written every outcome (or Redis is unreachable for
//!    longer than the grace): an outcome is never acknowledged before it is recorded.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use stevedore::broker::{keys::QUEUE_GROUP, GroupStart};
use stevedore::{Client, ClientConfig, Destination};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::executor::Executor;
use crate::fetcher::{FetchMode, Fetcher, FetcherConfig};
use crate::recorder::Recorder;
use crate::task_table::TaskTable;
use crate::WorkerArgs;

/// How long the recorder may keep retrying at shutdown.
const RECORDER_GRACE: Duration = Duration::from_secs(10);
/// Broadcasts read at once.
const BROADCAST_BATCH: usize = 16;

/// Runs a worker node until `stop` is cancelled (the binary cancels it on SIGINT/SIGTERM).
pub async fn run(args: WorkerArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let table = TaskTable::linked()?;
    let node = node_name(args.node.as_deref())?;
    let queues = args
        .queues
        .iter()
        .map(|q| Destination::queue(q.trim()))
        .collect::<stevedore::Result<Vec<_>>>()?;
    let mut config = ClientConfig::new(&args.global.redis_url, &args.global.namespace);
    config.label = Some(node.clone());
    let client = Client::with_config(config).await?;
    warn_if_evicting(&client).await;

    let node: Arc<str> = node.into();
    let consumer = format!("{node}:{}:{}", std::process::id(), stevedore::now_ms());
    let slots = Arc::new(Semaphore::new(args.concurrency as usize));
    let (events, received) = mpsc::unbounded_channel();
    let tracker = TaskTracker::new();
    let cancel_all = CancellationToken::new();
    let abandon = CancellationToken::new();
    let give_up = CancellationToken::new();
    let recorder = tokio::spawn(
        Recorder::new(client.broker().clone(), received, args.record_ttl).run(give_up.clone()),
    );
    let names = table.names();
    let executor = Executor::new(
        node.clone(),
        table,
        client.clone(),
        events,
        tracker.clone(),
        cancel_all.clone(),
        abandon.clone(),
    );

    let mut streams = vec![Destination::Node(stevedore::QueueName::new("node", &node)?)];
    streams.extend(queues.iter().cloned());
    let fetchers = [
        FetcherConfig {
            group: QUEUE_GROUP.to_owned(),
            consumer: consumer.clone(),
            streams,
            start: GroupStart::Beginning,
            mode: FetchMode::FreeSlots,
            block: args.block,
        },
        FetcherConfig {
            group: client.broker().keys().group(&Destination::Broadcast, &node),
            consumer: consumer.clone(),
            streams: vec![Destination::Broadcast],
            start: GroupStart::Now,
            mode: FetchMode::Batch(BROADCAST_BATCH),
            block: args.block,
        },
    ]
    .map(|config| {
        let fetcher = Fetcher::new(
            config,
            client.broker().clone(),
            slots.clone(),
            executor.clone(),
        );
        tokio::spawn(fetcher.run(stop.clone()))
    });
    drop(executor);
    tracing::info!(%node, %consumer, queues = ?args.queues, concurrency = args.concurrency,
        tasks = names.len(), "worker started");

    stop.cancelled().await;
    for fetcher in fetchers {
        fetcher.await.context("a fetcher panicked")?;
    }
    drain(&tracker, args.shutdown_timeout, &cancel_all, &abandon).await;
    let recorder_done = tokio::time::timeout(RECORDER_GRACE, recorder);
    if recorder_done.await.is_err() {
        give_up.cancel();
    }
    tracing::info!(%node, "worker stopped");
    Ok(())
}

/// Waits for running tasks up to `timeout`, then cancels and abandons the rest unacknowledged.
async fn drain(
    tracker: &TaskTracker,
    timeout: Duration,
    cancel_all: &CancellationToken,
    abandon: &CancellationToken,
) {
    tracker.close();
    if tokio::time::timeout(timeout, tracker.wait()).await.is_ok() {
        return;
    }
    tracing::warn!(
        running = tracker.len(),
        "shutdown timeout: abandoning running tasks; their messages stay pending in Redis"
    );
    abandon.cancel();
    cancel_all.cancel();
    tracker.wait().await;
}

fn node_name(given: Option<&str>) -> anyhow::Result<String> {
    let name = match given {
        Some(name) => name.to_owned(),
        None => hostname::get()
            .context("cannot read the host name; pass --node NAME")?
            .to_string_lossy()
            .into_owned(),
    };
    stevedore::QueueName::new("node", &name)?;
    Ok(name)
}

async fn warn_if_evicting(client: &Client) {
    match client.broker().eviction_policy().await {
        Ok(policy) if policy == "noeviction" => {}
        Ok(policy) => tracing::error!(%policy,
            "redis maxmemory-policy is not `noeviction`: Redis may silently delete queued tasks; set `maxmemory-policy noeviction`"),
        Err(error) => {
            tracing::warn!(%error, "cannot read redis maxmemory-policy (CONFIG may be disabled)")
        }
    }
}
