//! How a worker node's parts are built from its arguments: the pool, the fetchers, the
//! upkeep loops (controller, pool scaler, forwarder), the heartbeat and the reaper. The node
//! (worker.rs) starts them in this order and stops them in the order its doc gives.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use stevedore::broker::{keys::QUEUE_GROUP, Broker, GroupStart, Keys};
use stevedore::nodes::NodeBeat;
use stevedore::{Client, Destination};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::activity::Activity;
use crate::admission::{Admission, Limiter};
use crate::cancels::CancelBook;
use crate::capacity::Capacity;
use crate::controller::Controller;
use crate::executor::{Executor, ExecutorParts};
use crate::fetcher::{FetchMode, Fetcher, FetcherConfig};
use crate::forwarder::Forwarder;
use crate::heartbeat::Heartbeat;
use crate::hooks::Hooks;
use crate::in_flight::InFlight;
use crate::pause::PauseGate;
use crate::pool::{ChildLauncher, Pool, PoolConfig, PoolKind};
use crate::priority::QueueSpec;
use crate::reaper::Reaper;
use crate::recorder::Event;
use crate::running::RunningTasks;
use crate::task_table::TaskTable;
use crate::WorkerArgs;

/// Fetchers a node runs: its queues, and the broadcasts.
pub const FETCHERS: usize = 2;
/// Broadcasts read at once.
const BROADCAST_BATCH: usize = 16;

/// What the fetchers, the controller and the heartbeat share with the executor.
pub struct Shared {
    pub activity: Arc<Activity>,
    pub gate: Arc<PauseGate>,
    pub running: RunningTasks,
    pub cancels: CancelBook,
    pub capacity: Arc<Capacity>,
    pub limiter: Arc<Limiter>,
}

impl Shared {
    /// Fresh shared state for a node of `units` capacity whose limit permits lapse after
    /// `lease`, with the cancel records read from Redis.
    pub async fn new(broker: &Broker, units: usize, lease: Duration) -> stevedore::Result<Self> {
        let shared = Self {
            activity: Arc::new(Activity::default()),
            gate: Arc::new(PauseGate::default()),
            running: RunningTasks::default(),
            cancels: CancelBook::default(),
            capacity: Arc::new(Capacity::new(units)),
            limiter: Arc::new(Limiter::new(lease)),
        };
        shared.cancels.refresh(broker).await?;
        Ok(shared)
    }
}

/// The node's runs, and the tokens that end them at shutdown.
#[derive(Default)]
pub struct Runs {
    /// Every run, for the drain.
    pub tracker: TaskTracker,
    /// Cancelled at the shutdown deadline: tasks see their cancellation token fire.
    pub cancel_all: CancellationToken,
    /// Cancelled at the shutdown deadline: runs are abandoned, not acknowledged.
    pub abandon: CancellationToken,
}

impl Runs {
    /// Waits for running tasks up to `timeout`, then cancels and abandons the rest
    /// unacknowledged. Returns whether every task finished (nothing was abandoned).
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.tracker.close();
        if tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok()
        {
            return true;
        }
        tracing::warn!(
            running = self.tracker.len(),
            "shutdown timeout: abandoning running tasks; their messages stay pending in Redis"
        );
        self.abandon.cancel();
        self.cancel_all.cancel();
        self.tracker.wait().await;
        false
    }
}

/// What a starting node's parts are built from.
pub struct Parts<'a> {
    pub args: &'a WorkerArgs,
    pub client: &'a Client,
    pub node: &'a Arc<str>,
    pub consumer: &'a str,
    pub pool: &'a Pool,
    pub table: Arc<TaskTable>,
    pub shared: &'a Shared,
    pub runs: &'a Runs,
    pub stop: &'a CancellationToken,
}

impl Parts<'_> {
    /// The names of the tasks this node links, sorted (for `stevedore registered`).
    fn registered_names(&self) -> Arc<[String]> {
        self.table.names().into_iter().map(str::to_owned).collect()
    }

    fn own_queue(&self) -> anyhow::Result<Destination> {
        Ok(Destination::node(self.node)?)
    }

    /// The executor: runs what the fetchers read, reports to the recorder through `events`.
    pub fn executor(
        &self,
        events: mpsc::UnboundedSender<Event>,
        in_flight: Arc<InFlight>,
        hooks: Hooks,
    ) -> anyhow::Result<Executor> {
        Ok(Executor::new(ExecutorParts {
            node: self.node.clone(),
            node_queue: stevedore::QueueName::new("node", self.node)?,
            table: self.table.clone(),
            activity: self.shared.activity.clone(),
            client: self.client.clone(),
            events,
            tracker: self.runs.tracker.clone(),
            cancel_all: self.runs.cancel_all.clone(),
            abandon: self.runs.abandon.clone(),
            pool: self.pool.clone(),
            running: self.shared.running.clone(),
            cancels: self.shared.cancels.clone(),
            hooks,
            in_flight,
            capacity: self.shared.capacity.clone(),
            admission: Admission::new(
                self.client.broker().clone(),
                self.table.clone(),
                self.shared.capacity.clone(),
                self.shared.limiter.clone(),
                self.runs.abandon.clone(),
            ),
        }))
    }

    /// Starts the two fetchers, sharing the node's units, handing what they read to `executor`.
    pub fn fetchers(
        &self,
        executor: Executor,
        specs: &[QueueSpec],
    ) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let configs = fetcher_configs(
            self.args,
            self.node,
            self.consumer,
            self.own_queue()?,
            specs,
        );
        Ok(configs
            .into_iter()
            .map(|config| {
                let fetcher = Fetcher::new(
                    config,
                    self.client.broker().clone(),
                    self.shared.capacity.clone(),
                    executor.clone(),
                    self.shared.gate.clone(),
                    self.shared.activity.clone(),
                );
                tokio::spawn(fetcher.run(self.stop.clone()))
            })
            .collect())
    }

    /// Starts the controller (reading control requests from `position`), the pool scaler and
    /// the delayed-message forwarder.
    pub fn upkeep(
        &self,
        specs: &[QueueSpec],
        position: String,
    ) -> anyhow::Result<Vec<(&'static str, JoinHandle<()>)>> {
        let queues: Vec<Destination> = specs.iter().map(|q| q.destination.clone()).collect();
        let controller = Controller {
            node: self.node.clone(),
            broker: self.client.broker().clone(),
            pool: self.pool.clone(),
            running: self.shared.running.clone(),
            cancels: self.shared.cancels.clone(),
            paused: self.shared.gate.clone(),
            capacity: self.shared.capacity.clone(),
            queues: queues.iter().map(Destination::wire_name).collect(),
            tasks: self.registered_names(),
            block: self.args.block,
            position,
        };
        let mut delayed = vec![self.own_queue()?];
        delayed.extend(queues.iter().filter_map(Destination::first_lane));
        delayed.extend(queues);
        delayed.push(Destination::Broadcast);
        let forwarder = Forwarder {
            broker: self.client.broker().clone(),
            destinations: delayed,
        };
        let stop = self.stop.clone();
        Ok(vec![
            ("controller", tokio::spawn(controller.run(stop.clone()))),
            (
                "pool scaler",
                tokio::spawn(self.pool.clone().scale_down(stop.clone())),
            ),
            ("forwarder", tokio::spawn(forwarder.run(stop))),
        ])
    }

    /// Starts the heartbeat; it stops at `beat_stop`, last of all.
    pub fn heartbeat(&self, template: NodeBeat, beat_stop: &CancellationToken) -> JoinHandle<()> {
        let heartbeat = Heartbeat {
            broker: self.client.broker().clone(),
            template,
            activity: self.shared.activity.clone(),
            capacity: self.shared.capacity.clone(),
            limiter: self.shared.limiter.clone(),
            fetchers: FETCHERS,
            every: self.args.heartbeat,
            lost_after: self.args.lost_after,
            yield_to_newer: self.args.yield_to_newer,
        };
        tokio::spawn(heartbeat.run(beat_stop.clone()))
    }

    /// The reaper of this process.
    pub fn reaper(&self) -> anyhow::Result<Reaper> {
        let args = self.args;
        Ok(Reaper {
            broker: self.client.broker().clone(),
            consumer: self.consumer.to_owned(),
            node: self.node.clone(),
            lost_after: args.lost_after,
            lost_retention: args.lost_retention,
            every: args.heartbeat * 2,
            table: self.table.clone(),
            record_ttl: args.record_ttl,
            adopt_to: args
                .adopt_lost_node_queue
                .as_deref()
                .map(Destination::queue)
                .transpose()?,
            activity: self.shared.activity.clone(),
        })
    }
}

/// The two fetchers: the node's own queue then its shared queues (as many as it has free
/// units), and the broadcasts (in batches).
fn fetcher_configs(
    args: &WorkerArgs,
    node: &str,
    consumer: &str,
    own_queue: Destination,
    specs: &[QueueSpec],
) -> [FetcherConfig; FETCHERS] {
    // Four units' worth: never reached while outcomes are written (the recorder settles a
    // batch within a round trip), reached at once when they cannot be.
    let max_unsettled = (4 * args.max_workers.resolve(args.pool)).max(64);
    [
        FetcherConfig {
            group: QUEUE_GROUP.to_owned(),
            consumer: consumer.to_owned(),
            // The node's queue, then the first lanes of its queues (exclusive tasks).
            first: std::iter::once(own_queue)
                .chain(specs.iter().filter_map(|q| q.destination.first_lane()))
                .collect(),
            shared: specs.to_vec(),
            start: GroupStart::Beginning,
            mode: FetchMode::FreeUnits,
            block: args.block,
            max_unsettled,
        },
        FetcherConfig {
            group: Keys::group(&Destination::Broadcast, node),
            consumer: consumer.to_owned(),
            first: vec![Destination::Broadcast],
            shared: Vec::new(),
            start: GroupStart::Now,
            mode: FetchMode::Batch(BROADCAST_BATCH),
            block: args.block,
            max_unsettled,
        },
    ]
}

/// What this process's heartbeat says that does not change.
pub fn beat_template(
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
pub async fn start_pool(args: &WorkerArgs, node: &str) -> anyhow::Result<Pool> {
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
                serde_json::to_string(crate::builtin::command::policy())?,
            ),
        ])?),
    };
    let pool = Pool::new(config, launcher);
    pool.start()
        .await
        .context("cannot start the pool's worker processes")?;
    Ok(pool)
}
