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
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::activity::Activity;
use crate::cancels::CancelBook;
use crate::controller::Controller;
use crate::executor::{Executor, ExecutorParts};
use crate::fetcher::{FetchMode, Fetcher, FetcherConfig};
use crate::forwarder::Forwarder;
use crate::heartbeat::Heartbeat;
use crate::hooks::{Hooks, NodeInfo};
use crate::in_flight::InFlight;
use crate::pause::PauseGate;
use crate::pool::{ChildLauncher, Pool, PoolConfig, PoolKind};
use crate::priority::{parse_queue, QueueSpec};
use crate::reaper::Reaper;
use crate::recorder::Recorder;
use crate::running::RunningTasks;
use crate::task_table::TaskTable;
use crate::WorkerArgs;
use stevedore::nodes::NodeBeat;

/// How long the recorder may keep retrying at shutdown.
const RECORDER_GRACE: Duration = Duration::from_secs(10);
/// Fetchers a node runs: its queues, and the broadcasts.
const FETCHERS: usize = 2;
/// Broadcasts read at once.
const BROADCAST_BATCH: usize = 16;

/// Runs a worker node until `stop` is cancelled (the binary cancels it on SIGINT/SIGTERM).
pub async fn run(args: WorkerArgs, hooks: Hooks, stop: CancellationToken) -> anyhow::Result<()> {
    let table = TaskTable::linked()?;
    crate::builtin::command::allow(args.allow_commands.clone());
    let node = node_name(args.node.as_deref())?;
    let specs = args
        .queues
        .iter()
        .map(|q| parse_queue(q))
        .collect::<stevedore::Result<Vec<_>>>()?;
    let mut config = ClientConfig::new(&args.global.redis_url, &args.global.namespace);
    config.label = Some(node.clone());
    config.dead_letter_cap = args.dead_letter_cap;
    config.dead_letter_max_age = args.dead_letter_max_age;
    let Some(client) = connect(config, &stop).await? else {
        return Ok(());
    };
    warn_if_evicting(&client).await;
    let started = Node::start(&args, table, specs, node.into(), client, hooks, &stop).await?;
    stop.cancelled().await;
    started.shut_down(args.shutdown_timeout).await
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
    tracker: TaskTracker,
    cancel_all: CancellationToken,
    abandon: CancellationToken,
    /// Ends the recorder's retries when Redis stays away at shutdown.
    give_up: CancellationToken,
    /// Stops the heartbeat, last of all.
    beat_stop: CancellationToken,
}

/// What the fetchers, the controller and the heartbeat share with the executor.
struct Shared {
    activity: Arc<Activity>,
    gate: Arc<PauseGate>,
    running: RunningTasks,
    cancels: CancelBook,
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
    ) -> anyhow::Result<Self> {
        let consumer = format!("{node}:{}:{}", std::process::id(), stevedore::now_ms());
        let pool = start_pool(args, &node).await?;
        let table = Arc::new(table);
        let template = beat_template(args, &node, &consumer, &specs, &pool);
        client.broker().beat(&template).await?;
        let (events, received) = mpsc::unbounded_channel();
        let in_flight = Arc::new(InFlight::default());
        let give_up = CancellationToken::new();
        let recorder = Recorder::new(
            client.broker().clone(),
            received,
            args.record_ttl,
            in_flight.clone(),
        );
        let recorder = tokio::spawn(recorder.run(give_up.clone()));
        let control_position = client.broker().control_position().await?;
        let shared = Shared {
            activity: Arc::new(Activity::default()),
            gate: Arc::new(PauseGate::default()),
            running: RunningTasks::default(),
            cancels: CancelBook::default(),
        };
        shared.cancels.refresh(client.broker()).await?;
        let (tracker, cancel_all, abandon) = (
            TaskTracker::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let executor = Executor::new(ExecutorParts {
            node: node.clone(),
            node_queue: stevedore::QueueName::new("node", &node)?,
            table: table.clone(),
            activity: shared.activity.clone(),
            client: client.clone(),
            events,
            tracker: tracker.clone(),
            cancel_all: cancel_all.clone(),
            abandon: abandon.clone(),
            pool: pool.clone(),
            running: shared.running.clone(),
            cancels: shared.cancels.clone(),
            hooks: hooks.clone(),
            in_flight,
        });
        let queues: Vec<Destination> = specs.iter().map(|q| q.destination.clone()).collect();
        let own_queue = Destination::Node(stevedore::QueueName::new("node", &node)?);
        let configs = fetcher_configs(args, &client, &node, &consumer, own_queue.clone(), specs);
        let slots = Arc::new(Semaphore::new(pool.config().max_workers));
        let fetchers = configs
            .into_iter()
            .map(|config| {
                let fetcher = Fetcher::new(
                    config,
                    client.broker().clone(),
                    slots.clone(),
                    executor.clone(),
                    shared.gate.clone(),
                    shared.activity.clone(),
                );
                tokio::spawn(fetcher.run(stop.clone()))
            })
            .collect();
        drop(executor);

        let controller = Controller {
            node: node.clone(),
            broker: client.broker().clone(),
            pool: pool.clone(),
            running: shared.running,
            cancels: shared.cancels,
            paused: shared.gate,
            queues: queues.iter().map(Destination::wire_name).collect(),
            block: args.block,
            position: control_position,
        };
        let mut delayed = vec![own_queue];
        delayed.extend(queues);
        delayed.push(Destination::Broadcast);
        let forwarder = Forwarder {
            broker: client.broker().clone(),
            destinations: delayed,
        };
        let upkeep = vec![
            ("controller", tokio::spawn(controller.run(stop.clone()))),
            (
                "pool scaler",
                tokio::spawn(pool.clone().scale_down(stop.clone())),
            ),
            ("forwarder", tokio::spawn(forwarder.run(stop.clone()))),
        ];
        let beat_stop = CancellationToken::new();
        let heartbeat = Heartbeat {
            broker: client.broker().clone(),
            template,
            pool: pool.clone(),
            activity: shared.activity.clone(),
            fetchers: FETCHERS,
            every: args.heartbeat,
            lost_after: args.lost_after,
            yield_to_newer: args.yield_to_newer,
        };
        let heartbeat = tokio::spawn(heartbeat.run(beat_stop.clone()));
        let reaper = reaper(
            args,
            &client,
            &node,
            &consumer,
            table.clone(),
            shared.activity,
        )?;
        let reaper = tokio::spawn(reaper.run(stop.clone()));
        tracing::info!(%node, %consumer, queues = ?args.queues, pool = ?args.pool,
            max_workers = pool.config().max_workers, tasks = table.names().len(), "worker started");
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
            tracker,
            cancel_all,
            abandon,
            give_up,
            beat_stop,
        };
        if let Err(error) = started.hooks.started(&started.info()).await {
            tracing::error!(%error, "cannot publish the start-up tasks");
        }
        Ok(started)
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
        let clean = drain(
            &self.tracker,
            shutdown_timeout,
            &self.cancel_all,
            &self.abandon,
        )
        .await;
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
        if clean {
            if let Err(error) = self.client.broker().forget_consumer(&self.consumer).await {
                tracing::warn!(%error, "cannot remove this process's heartbeat; peers will find nothing to reap");
            }
        }
        tracing::info!(node = %self.node, "worker stopped");
        Ok(())
    }
}

/// The reaper of process `consumer` of `node`.
fn reaper(
    args: &WorkerArgs,
    client: &Client,
    node: &Arc<str>,
    consumer: &str,
    table: Arc<TaskTable>,
    activity: Arc<Activity>,
) -> anyhow::Result<Reaper> {
    Ok(Reaper {
        broker: client.broker().clone(),
        consumer: consumer.to_owned(),
        node: node.clone(),
        lost_after: args.lost_after,
        every: args.heartbeat * 2,
        table,
        record_ttl: args.record_ttl,
        adopt_to: args
            .adopt_lost_node_queue
            .as_deref()
            .map(Destination::queue)
            .transpose()?,
        activity,
    })
}

/// The two fetchers: the node's own queue then its shared queues (as many as it has free
/// slots), and the broadcasts (in batches).
fn fetcher_configs(
    args: &WorkerArgs,
    client: &Client,
    node: &str,
    consumer: &str,
    own_queue: Destination,
    specs: Vec<QueueSpec>,
) -> [FetcherConfig; FETCHERS] {
    [
        FetcherConfig {
            group: QUEUE_GROUP.to_owned(),
            consumer: consumer.to_owned(),
            first: vec![own_queue],
            shared: specs,
            start: GroupStart::Beginning,
            mode: FetchMode::FreeSlots,
            block: args.block,
        },
        FetcherConfig {
            group: client.broker().keys().group(&Destination::Broadcast, node),
            consumer: consumer.to_owned(),
            first: vec![Destination::Broadcast],
            shared: Vec::new(),
            start: GroupStart::Now,
            mode: FetchMode::Batch(BROADCAST_BATCH),
            block: args.block,
        },
    ]
}

/// Waits for running tasks up to `timeout`, then cancels and abandons the rest unacknowledged.
/// Returns whether every task finished (nothing was abandoned).
async fn drain(
    tracker: &TaskTracker,
    timeout: Duration,
    cancel_all: &CancellationToken,
    abandon: &CancellationToken,
) -> bool {
    tracker.close();
    if tokio::time::timeout(timeout, tracker.wait()).await.is_ok() {
        return true;
    }
    tracing::warn!(
        running = tracker.len(),
        "shutdown timeout: abandoning running tasks; their messages stay pending in Redis"
    );
    abandon.cancel();
    cancel_all.cancel();
    tracker.wait().await;
    false
}

/// Connects, retrying with capped backoff while Redis is unreachable (one log line per state
/// change); a bad URL fails at once. `None` when stopped before Redis answered.
async fn connect(config: ClientConfig, stop: &CancellationToken) -> anyhow::Result<Option<Client>> {
    let mut backoff = Duration::from_millis(200);
    let mut warned = false;
    loop {
        match Client::with_config(config.clone()).await {
            Ok(client) => {
                if warned {
                    tracing::info!("redis answers; starting");
                }
                return Ok(Some(client));
            }
            Err(error @ stevedore::Error::Unreachable { .. }) => {
                if !warned {
                    tracing::warn!(%error, "waiting for redis");
                    warned = true;
                }
            }
            Err(error) => return Err(error.into()),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return Ok(None),
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// What this process's heartbeat says that does not change.
fn beat_template(
    args: &WorkerArgs,
    node: &str,
    consumer: &str,
    queues: &[QueueSpec],
    pool: &Pool,
) -> NodeBeat {
    NodeBeat {
        node: node.to_owned(),
        consumer: consumer.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol: stevedore::MESSAGE_VERSION,
        pid: std::process::id(),
        started_at: stevedore::now_ms(),
        queues: queues.iter().map(|q| q.destination.wire_name()).collect(),
        pool: format!("{:?}", args.pool).to_lowercase(),
        max_workers: pool.config().max_workers,
        busy: 0,
        consuming: false,
        last_work_at: None,
    }
}

/// Builds the pool from the arguments and starts its minimum of workers.
async fn start_pool(args: &WorkerArgs, node: &str) -> anyhow::Result<Pool> {
    let max_workers = args.max_workers.resolve(args.pool);
    anyhow::ensure!(
        args.min_workers <= max_workers,
        "--min-workers {} is above --max-workers {max_workers}",
        args.min_workers
    );
    let config = PoolConfig {
        kind: args.pool,
        min_workers: args.min_workers,
        max_workers,
        idle_timeout: args.idle_timeout,
        max_tasks_per_child: args.max_tasks_per_child,
        max_memory_per_child: args.max_memory_per_child,
        cancel_grace: args.cancel_grace,
    };
    let launcher = match args.pool {
        PoolKind::Async => None,
        PoolKind::Process => Some(ChildLauncher::new(vec![
            ("STEVEDORE_REDIS_URL".into(), args.global.redis_url.clone()),
            ("STEVEDORE_NAMESPACE".into(), args.global.namespace.clone()),
            ("STEVEDORE_NODE".into(), node.to_owned()),
            (
                crate::builtin::command::ALLOW_ENV.into(),
                serde_json::to_string(&args.allow_commands)?,
            ),
        ])?),
    };
    let pool = Pool::new(config, launcher);
    pool.start()
        .await
        .context("cannot start the pool's worker processes")?;
    Ok(pool)
}

/// This node's name: the one given, else the host name.
pub fn node_name(given: Option<&str>) -> anyhow::Result<String> {
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
