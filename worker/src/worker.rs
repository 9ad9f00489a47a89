//! A worker node: owns the fetchers, the executor and the recorder, and stops them in order.
//!
//! Shutdown order (`Node::shut_down`), and why:
//! 1. Stop fetching (`CLIENT UNBLOCK` wakes the blocked reads): no new work is taken, and
//!    nothing Redis handed out is left unseen.
//! 2. Drain: wait up to `--shutdown-timeout` for running tasks to finish and be recorded; past
//!    the deadline, cancel the tasks' tokens and abandon them unacknowledged: their messages
//!    stay pending in Redis for recovery, and no half-finished run is recorded.
//! 3. Stop the reaper, run the app's `stopping` hook, stop the upkeep tasks (forwarder,
//!    controller, sweeps) and the pool (its children exit).
//! 4. Stop the recorder once it has written every outcome (or after 10 s while Redis refuses):
//!    an outcome is never acknowledged before it is recorded.
//! 5. Stop the heartbeat last. After a clean drain, with nothing pending on its name, the
//!    process removes its heartbeat and consumers (peers find nothing to reap); otherwise the
//!    heartbeat is left to go stale, so that peers reap what was abandoned.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use stevedore::nodes::NodeBeat;
use stevedore::{Client, ClientConfig};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::assembly::{beat_template, start_pool, Parts, Runs, Shared};
use crate::builtin::command::CommandPolicy;
use crate::hooks::{Hooks, NodeInfo};
use crate::in_flight::InFlight;
use crate::pool::Pool;
use crate::priority::{parse_queue, QueueSpec};
use crate::recorder::Recorder;
use crate::task_table::TaskTable;
use crate::WorkerArgs;

/// How long the recorder may keep retrying at shutdown.
const RECORDER_GRACE: Duration = Duration::from_secs(10);

/// Runs a worker node until `stop` is cancelled (the binary cancels it on SIGINT/SIGTERM).
pub async fn run(args: WorkerArgs, hooks: Hooks, stop: CancellationToken) -> anyhow::Result<()> {
    args.validate().map_err(anyhow::Error::msg)?;
    raise_open_files_limit();
    let table = TaskTable::linked()?;
    let commands =
        CommandPolicy::new(&args.allow_commands, &args.command_env).map_err(anyhow::Error::msg)?;
    crate::builtin::command::install(commands);
    let node = stevedore_runtime::node_name(args.node.as_deref())?;
    let specs = args
        .queues
        .iter()
        .map(|q| parse_queue(q))
        .collect::<stevedore::Result<Vec<_>>>()?;
    let mut config = ClientConfig::new(&args.global.redis_url, &args.global.namespace);
    config.label = Some(node.clone());
    config.events |= args.events;
    config.dead_letter_cap = args.dead_letter_cap;
    config.dead_letter_max_age = args.dead_letter_max_age;
    let readiness = Arc::new(crate::observe::Readiness::default());
    let http = match args.http {
        Some(addr) => Some(crate::observe::serve(addr, readiness.clone(), stop.clone()).await?),
        None => None,
    };
    let Some(client) = stevedore_runtime::connect_waiting(config, &stop).await? else {
        return Ok(());
    };
    warn_if_evicting(&client).await;
    register_queues(&client, &specs, &node);
    let Some(started) = Node::start(&args, table, specs, node.into(), client, hooks, &stop).await?
    else {
        return Ok(()); // stopped before Redis took the first heartbeat
    };
    readiness.started(started.activity.clone(), crate::assembly::FETCHERS);
    stop.cancelled().await;
    started.shut_down(args.shutdown_timeout).await?;
    if let Some(http) = http {
        http.await.context("the metrics endpoint panicked")?;
    }
    Ok(())
}

/// A started worker node: its parts, stopped in the order the module's doc gives.
struct Node {
    node: Arc<str>,
    consumer: String,
    client: Client,
    pool: Pool,
    hooks: Hooks,
    fetchers: Vec<JoinHandle<()>>,
    reaper: JoinHandle<()>,
    /// The controller, the pool scaler and the forwarder, by name.
    upkeep: Vec<(&'static str, JoinHandle<()>)>,
    recorder: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
    /// Running tasks, and the tokens that cancel or abandon them at shutdown.
    runs: Runs,
    /// Ends the recorder's retries when Redis stays away at shutdown.
    give_up: CancellationToken,
    /// Stops the heartbeat, last of all.
    beat_stop: CancellationToken,
    /// Every (stream, group) this process reads, to check it holds nothing before its
    /// heartbeat is removed.
    streams: Vec<(stevedore::Destination, String)>,
    /// What the node is doing (for `/readyz`).
    activity: Arc<crate::activity::Activity>,
}

impl Node {
    /// Starts every part of the node; they run until `stop`.
    async fn start(
        args: &WorkerArgs,
        table: TaskTable,
        specs: Vec<QueueSpec>,
        node: Arc<str>,
        client: Client,
        hooks: Hooks,
        stop: &CancellationToken,
    ) -> anyhow::Result<Option<Self>> {
        let consumer = format!("{node}:{}:{}", std::process::id(), stevedore::now_ms());
        let pool = start_pool(args, &node).await?;
        let template = beat_template(args, &node, &consumer, &specs, &pool);
        let streams = crate::reaper::streams_of(&template);
        if !first_beat(&client, &template, stop).await {
            pool.shutdown().await;
            return Ok(None);
        }
        let (events, received) = mpsc::unbounded_channel();
        let in_flight = Arc::new(InFlight::default());
        let give_up = CancellationToken::new();
        let recorder = Recorder::new(
            client.broker().clone(),
            received,
            crate::recorder::Retention {
                records: args.record_ttl,
                successes: args.succeeded_ttl,
                history: args.history,
                task_minutes: args.task_minutes,
            },
            in_flight.clone(),
        );
        let recorder = tokio::spawn(recorder.run(give_up.clone()));
        let position = client.broker().control_position().await?;
        let units = pool.config().max_workers;
        let shared = Shared::new(client.broker(), units, args.lost_after).await?;
        let runs = Runs::default();
        let parts = Parts {
            args,
            client: &client,
            node: &node,
            consumer: &consumer,
            pool: &pool,
            table: Arc::new(table),
            shared: &shared,
            runs: &runs,
            stop,
        };
        let executor = parts.executor(events, in_flight, hooks.clone())?;
        let fetchers = parts.fetchers(executor, &specs)?;
        let upkeep = parts.upkeep(&specs, position)?;
        let beat_stop = CancellationToken::new();
        let heartbeat = parts.heartbeat(template, &beat_stop);
        let reaper = tokio::spawn(parts.reaper()?.run(stop.clone()));
        tracing::info!(%node, %consumer, queues = ?args.queues, pool = ?args.pool,
            max_workers = pool.config().max_workers, tasks = parts.table.names().len(), "worker started");
        let started = Self {
            node,
            consumer,
            client,
            pool,
            hooks,
            fetchers,
            reaper,
            upkeep,
            recorder,
            heartbeat,
            runs,
            give_up,
            beat_stop,
            streams,
            activity: shared.activity.clone(),
        };
        if let Err(error) = started.hooks.started(&started.info()).await {
            tracing::error!(%error, "cannot publish the start-up tasks");
        }
        Ok(Some(started))
    }

    fn info(&self) -> NodeInfo {
        NodeInfo {
            node: self.node.to_string(),
            client: self.client.clone(),
        }
    }

    /// Stops every part in order, once `stop` was cancelled; running tasks get up to
    /// `shutdown_timeout`.
    async fn shut_down(self, shutdown_timeout: Duration) -> anyhow::Result<()> {
        let info = self.info();
        for fetcher in self.fetchers {
            fetcher.await.context("a fetcher panicked")?;
        }
        let clean = self.runs.drain(shutdown_timeout).await;
        self.reaper.await.context("the reaper panicked")?;
        self.hooks.stopping(&info).await;
        for (name, part) in self.upkeep {
            part.await.with_context(|| format!("the {name} panicked"))?;
        }
        self.pool.shutdown().await;
        if tokio::time::timeout(RECORDER_GRACE, self.recorder)
            .await
            .is_err()
        {
            self.give_up.cancel();
        }
        // The heartbeat stops last. After a clean drain the process holds nothing, so its beat
        // is removed; otherwise it is left to go stale, so that peers reap what was abandoned.
        self.beat_stop.cancel();
        self.heartbeat.await.context("the heartbeat panicked")?;
        if clean && !holds_pending(&self.client, &self.streams, &self.consumer).await {
            retire(&self.client, &self.streams, &self.consumer).await;
        }
        tracing::info!(node = %self.node, "worker stopped");
        Ok(())
    }
}

/// Raises this process's soft limit of open files to its hard limit (at most 2^20): the
/// default soft limit (1,024) is what a busy node with many connections runs out of first.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let wanted = hard.min(1 << 20);
    if soft < wanted {
        if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, wanted, hard) {
            tracing::warn!(%error, soft, "cannot raise the limit of open files");
        }
    }
}

/// Registers the queues this node reads, and (in the background: it walks every key) the
/// queues created before the registry existed, so listings find them all.
fn register_queues(client: &Client, specs: &[QueueSpec], node: &str) {
    let mut own: Vec<String> = specs.iter().map(|s| s.destination.wire_name()).collect();
    own.extend(stevedore::Destination::node(node).map(|d| d.wire_name()));
    own.push(stevedore::Destination::Broadcast.wire_name());
    let broker = client.broker().clone();
    tokio::spawn(async move {
        let registered = match broker.register_queues(&own).await {
            Ok(()) => broker.register_existing_queues().await.map(|_| ()),
            Err(error) => Err(error),
        };
        if let Err(error) = registered {
            tracing::warn!(%error, "could not register queues for listings");
        }
    });
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

/// Whether this process still owns pending entries (or cannot tell): then its heartbeat
/// is left to go stale, so that peers reap them, never removed with them unsettled.
async fn holds_pending(
    client: &Client,
    streams: &[(stevedore::Destination, String)],
    consumer: &str,
) -> bool {
    for (destination, group) in streams {
        let pending = (client.broker())
            .pending_of(destination, group, consumer, 1)
            .await;
        if !matches!(pending, Ok(entries) if entries.is_empty()) {
            tracing::warn!(queue = %destination, "this process still holds entries; its heartbeat is left for peers to reap them");
            return true;
        }
    }
    false
}

/// Writes this process's first heartbeat, waiting while Redis refuses writes (out of memory,
/// a replica, a read-only moment) with one log line per state change; false when stopped first.
async fn first_beat(client: &Client, template: &NodeBeat, stop: &CancellationToken) -> bool {
    let mut backoff =
        stevedore_runtime::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut waiting = false;
    loop {
        match client.broker().beat(template).await {
            Ok(_) => {
                if waiting {
                    tracing::info!("redis accepts writes; starting");
                }
                return true;
            }
            Err(error) if !waiting => {
                tracing::warn!(%error, "waiting for redis to accept writes");
                waiting = true;
            }
            Err(_) => {}
        }
        if !backoff.wait(stop).await {
            return false;
        }
    }
}

/// Removes a cleanly stopped process that holds nothing: its consumer from every group it read
/// (so groups do not collect one consumer per process start), then its heartbeat.
async fn retire(client: &Client, streams: &[(stevedore::Destination, String)], consumer: &str) {
    let broker = client.broker();
    for (destination, group) in streams {
        if let Err(error) = broker.delete_consumer(destination, group, consumer).await {
            tracing::warn!(%error, queue = %destination, "cannot remove this process's consumer from its group");
        }
    }
    let nodes = broker.nodes(stevedore::nodes::DEFAULT_LOST_AFTER).await;
    let own = nodes.map(|nodes| nodes.into_iter().find(|n| n.beat.consumer == consumer));
    let forgotten = match own {
        Ok(Some(health)) => {
            let gone = stevedore::nodes::GoneProcess {
                beat: health.beat,
                state: stevedore::nodes::GoneState::Stopped,
                at: stevedore::now_ms(),
                reaped: 0,
            };
            broker.forget_consumer(&gone).await
        }
        Ok(None) => Ok(()), // peers took it for lost and reaped it meanwhile
        Err(error) => Err(error),
    };
    if let Err(error) = forgotten {
        tracing::warn!(%error, "cannot remove this process's heartbeat; peers will find nothing to reap");
    }
}
