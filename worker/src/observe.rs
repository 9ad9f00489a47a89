//! Seeing a worker from outside (`worker --http ADDR`, off by default):
//!
//! 1. `/metrics`: the process's metrics in the Prometheus text format. The code records them
//!    through the `metrics` facade (a no-op without `--http`); [`serve`] installs the
//!    Prometheus recorder and renders it.
//! 2. `/healthz`: 200 while the process runs.
//! 3. `/readyz`: 200 while the node is connected to Redis and consuming, 503 otherwise with
//!    the reason in the body (still connecting, fetchers down, told to stop taking work).
//!
//! The metrics (labels are bounded: never a task id; `task` is a task this worker links or
//! `unknown`):
//!
//! | name | type | labels |
//! |---|---|---|
//! | `stevedore_tasks_total` | counter | `queue`, `task`, `outcome` (succeeded, failed, retried, dead, cancelled, timed_out, expired; lost: counted by the reaper that settled it) |
//! | `stevedore_task_duration_seconds` | histogram | `queue`, `task`, `outcome` |
//! | `stevedore_task_wait_seconds` | histogram | `queue`: publish (or eta) to start |
//! | `stevedore_worker_busy`, `stevedore_worker_slots` | gauge | |
//! | `stevedore_published_total` | counter | `queue`: messages this process published (the client counts them) |
//! | `stevedore_dead_letters_total` | counter | `queue`, `reason` (unreadable, out_of_retries) |
//! | `stevedore_reaped_total` | counter | |
//! | `stevedore_redis_reconnects_total` | counter | `component` (fetcher, controller) |

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use stevedore::{Destination, RunRecord, TaskState};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::activity::Activity;

/// Histogram buckets of the run and wait times, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Whether metrics are recorded: only with `--http`, so that a worker without it spends nothing
/// on their labels.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether metrics are on (`--http` was given).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether the node is ready: set once it has started; then its fetchers say.
#[derive(Debug, Default)]
pub struct Readiness {
    activity: OnceLock<(Arc<Activity>, usize)>,
}

impl Readiness {
    /// The node started, with `fetchers` fetchers sharing `activity`.
    pub fn started(&self, activity: Arc<Activity>, fetchers: usize) {
        let _ = self.activity.set((activity, fetchers));
    }

    /// `Ok` when ready, else why not.
    fn check(&self) -> Result<(), String> {
        let Some((activity, fetchers)) = self.activity.get() else {
            return Err("starting: waiting for Redis to take the first heartbeat".into());
        };
        if activity.stopped_taking_work() {
            return Err("stopped taking work (a peer reads a newer protocol)".into());
        }
        match activity.consuming(*fetchers) {
            true => Ok(()),
            false => Err("not consuming: a fetcher has lost its Redis connection".into()),
        }
    }
}

struct Served {
    metrics: PrometheusHandle,
    readiness: Arc<Readiness>,
}

/// Installs the Prometheus recorder and serves the endpoints on `addr` until `stop`. Fails at
/// once when the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    readiness: Arc<Readiness>,
    stop: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let metrics = PrometheusBuilder::new()
        .set_buckets(BUCKETS)?
        .install_recorder()?;
    describe();
    ENABLED.store(true, Ordering::Relaxed);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("--http {addr}: cannot listen ({e})"))?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    let upkeep = metrics.clone();
    let served = Served { metrics, readiness };
    let route: Arc<crate::http::Route> = Arc::new(move |path: &str| served.route(path));
    Ok(tokio::spawn(async move {
        let upkeep = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                upkeep.run_upkeep();
            }
        });
        crate::http::serve(listener, route, stop).await;
        upkeep.abort();
    }))
}

/// The help text of every metric (Prometheus and promtool want one).
fn describe() {
    use metrics::Unit;
    metrics::describe_counter!("stevedore_tasks_total", "Task runs settled, by outcome.");
    metrics::describe_histogram!(
        "stevedore_task_duration_seconds",
        Unit::Seconds,
        "How long settled runs ran."
    );
    metrics::describe_histogram!(
        "stevedore_task_wait_seconds",
        Unit::Seconds,
        "From publish (or eta) to the start of a run."
    );
    metrics::describe_gauge!(
        "stevedore_worker_busy",
        "Workers of the pool running a task."
    );
    metrics::describe_gauge!(
        "stevedore_worker_slots",
        "Workers the pool may run at most."
    );
    metrics::describe_counter!(
        "stevedore_published_total",
        "Messages this process published (tasks publishing tasks), by queue."
    );
    metrics::describe_counter!(
        "stevedore_dead_letters_total",
        "Messages this worker moved to the dead letters, by reason."
    );
    metrics::describe_counter!(
        "stevedore_reaped_total",
        "Entries reaped from lost processes."
    );
    metrics::describe_counter!(
        "stevedore_redis_reconnects_total",
        "Times a part of this worker lost its Redis connection."
    );
}

impl Served {
    /// The answer of `path`: the metrics, liveness, readiness.
    fn route(&self, path: &str) -> Option<crate::http::Reply> {
        match path {
            "/metrics" => Some((200, "OK", self.metrics.render())),
            "/healthz" => Some((200, "OK", "ok\n".into())),
            "/readyz" => Some(match self.readiness.check() {
                Ok(()) => (200, "OK", "ready\n".into()),
                Err(reason) => (503, "Service Unavailable", reason + "\n"),
            }),
            _ => None,
        }
    }
}

/// The series of settled runs, registered once per (queue, task, outcome) and thread: a run
/// then costs a hash of its queue, an increment and a histogram record; no lock, no allocation.
type Settled = HashMap<Destination, HashMap<(&'static str, &'static str), (Counter, Histogram)>>;

thread_local! {
    static SETTLED: RefCell<Settled> = RefCell::default();
    /// The wait histograms, one per queue.
    static WAITED: RefCell<HashMap<String, Histogram>> = RefCell::default();
}

/// Counts a settled run of `task` (its label: the name when this worker links it, else
/// `unknown`) from `queue`.
pub fn run_settled(queue: &Destination, task: &'static str, run: &RunRecord) {
    if !enabled() {
        return;
    }
    if run.state == TaskState::Dead {
        dead_lettered(&queue.wire_name(), "out_of_retries");
    }
    let outcome = match run.state {
        TaskState::Retrying => "retried",
        state => state.as_str(),
    };
    SETTLED.with_borrow_mut(|settled| {
        if !settled.contains_key(queue) {
            settled.insert(queue.clone(), HashMap::new());
        }
        let Some(per_queue) = settled.get_mut(queue) else {
            return;
        };
        let (counter, histogram) = per_queue
            .entry((task, outcome))
            .or_insert_with(|| settled_series(queue, task, outcome));
        counter.increment(1);
        if let (Some(started), Some(finished)) = (run.started_at, run.finished_at) {
            histogram.record(finished.saturating_sub(started) as f64 / 1000.0);
        }
    });
}

/// The run counter and duration histogram of `task` from `queue` ending in `outcome`.
fn settled_series(queue: &Destination, task: &str, outcome: &str) -> (Counter, Histogram) {
    let labels = [
        ("queue", queue.wire_name()),
        ("task", task.to_owned()),
        ("outcome", outcome.to_owned()),
    ];
    (
        metrics::counter!("stevedore_tasks_total", &labels),
        metrics::histogram!("stevedore_task_duration_seconds", &labels),
    )
}

/// A run of `task` from `queue` was lost with its process (reaped; run again when it has
/// retries left): outcome `lost`.
pub fn run_lost(queue: &str, task: &'static str) {
    if !enabled() {
        return;
    }
    let labels = [
        ("queue", queue.to_owned()),
        ("task", task.to_owned()),
        ("outcome", "lost".to_owned()),
    ];
    metrics::counter!("stevedore_tasks_total", &labels).increment(1);
}

/// A run of a message published at `published_at` (due at `eta`) started at `started`.
pub fn run_started(queue: &str, published_at: u64, eta: Option<u64>, started: u64) {
    if !enabled() {
        return;
    }
    let due = eta.unwrap_or(published_at).max(published_at);
    let seconds = started.saturating_sub(due) as f64 / 1000.0;
    WAITED.with_borrow_mut(|waited| match waited.get(queue) {
        Some(histogram) => histogram.record(seconds),
        None => {
            let histogram =
                metrics::histogram!("stevedore_task_wait_seconds", "queue" => queue.to_owned());
            histogram.record(seconds);
            waited.insert(queue.to_owned(), histogram);
        }
    });
}

/// A message went to `queue`'s dead letters for `reason` (`unreadable`, `out_of_retries`).
pub fn dead_lettered(queue: &str, reason: &'static str) {
    if !enabled() {
        return;
    }
    metrics::counter!("stevedore_dead_letters_total", "queue" => queue.to_owned(), "reason" => reason)
        .increment(1);
}

/// The pool's size and how many of its workers are busy.
pub fn pool(busy: usize, slots: usize) {
    metrics::gauge!("stevedore_worker_busy").set(busy as f64);
    metrics::gauge!("stevedore_worker_slots").set(slots as f64);
}

/// `entries` were reaped from lost processes.
pub fn reaped(entries: usize) {
    metrics::counter!("stevedore_reaped_total").increment(entries as u64);
}

/// `component` (fetcher, controller) lost its Redis connection and reconnects.
pub fn reconnect(component: &'static str) {
    metrics::counter!("stevedore_redis_reconnects_total", "component" => component).increment(1);
}
