//! The pool: the workers that run tasks, between `--min-workers` and `--max-workers`.
//!
//! 1. Hands a run only to an idle worker (dispatcherd's rule); runs that find none wait here,
//!    in order, while the rest of the backlog stays in Redis (the fetcher reads only what the
//!    pool can take).
//! 2. Grows when every worker is busy and work waits; retires workers idle longer than
//!    `--idle-timeout`, down to the minimum.
//! 3. Keeps counters per worker: sent, finished, the current task and since when.
//! 4. Async pool: a worker is a place in the pool whose runs are tokio tasks of this process. Process pool:
//!    a worker is a child process; it is recycled after `--max-tasks-per-child` runs or above
//!    `--max-memory-per-child`, and replaced when it dies (its run is recorded as lost).
//! 5. `reload` recycles every worker; a busy one finishes its run first.

mod child;
mod frame;
mod guard;
mod process;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stevedore::control::{CurrentTask, WorkerStatus};
use stevedore::{Invocation, TaskError, TaskRegistration};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use child::main as child_main;
pub use guard::TimeLimits;
pub use process::{ChildLauncher, CHILD_SOCKET_ENV};

use crate::running::Held;
use crate::stop::StopSignal;
use frame::ToChild;
use process::ChildProcess;

/// Async workers (tokio tasks) or child processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolKind {
    /// Tasks run as tokio tasks of the worker process.
    Async,
    /// Tasks run in child processes: for blocking and CPU-bound work.
    Process,
}

/// Sizes and limits of the pool.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Async or process.
    pub kind: PoolKind,
    /// Workers kept even when idle.
    pub min_workers: usize,
    /// Workers at most.
    pub max_workers: usize,
    /// An idle worker above the minimum is retired after this long.
    pub idle_timeout: Duration,
    /// A child is recycled after this many runs.
    pub max_tasks_per_child: Option<u64>,
    /// A child is recycled when its resident memory exceeds this many bytes.
    pub max_memory_per_child: Option<u64>,
    /// How long a cancelled run that can see its cancellation (or a child) gets before it is
    /// aborted (or killed).
    pub cancel_grace: Duration,
}

/// One run handed to the pool.
pub struct Job {
    /// The task.
    pub task: &'static TaskRegistration,
    /// Its arguments and context.
    pub invocation: Invocation,
    /// Its stop signal.
    pub stop: StopSignal,
    /// Its time limits.
    pub limits: TimeLimits,
    /// A short shape of the call for `--status` (never the arguments: they may hold secrets).
    pub shape: String,
    /// Its entry among the node's held runs: marked running once a worker takes it.
    pub held: Held,
}

/// The pool. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    config: PoolConfig,
    launcher: Option<ChildLauncher>,
    state: Mutex<State>,
    freed: Notify,
}

#[derive(Default)]
struct State {
    workers: BTreeMap<u32, PoolWorker>,
    /// Idle workers, the most recently idle last (taken first: the others age out and retire).
    idle: Vec<u32>,
    next_id: u32,
    starting: usize,
    generation: u64,
}

struct PoolWorker {
    sent: u64,
    finished: u64,
    current: Option<CurrentTask>,
    idle_since: Instant,
    generation: u64,
    pid: Option<u32>,
    /// The child while the worker is idle (taken while it runs).
    child: Option<ChildProcess>,
}

impl PoolWorker {
    fn new(generation: u64, child: Option<ChildProcess>) -> Self {
        Self {
            sent: 0,
            finished: 0,
            current: None,
            idle_since: Instant::now(),
            generation,
            pid: child.as_ref().map(ChildProcess::pid),
            child,
        }
    }
}

impl Pool {
    /// A pool; a process pool needs `launcher`.
    pub fn new(config: PoolConfig, launcher: Option<ChildLauncher>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                launcher,
                state: Mutex::new(State::default()),
                freed: Notify::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// Starts the minimum number of workers.
    pub async fn start(&self) -> std::io::Result<()> {
        self.fill_to_minimum().await
    }

    /// Runs `job` on an idle worker (waiting for one, or starting one when below the maximum).
    pub async fn run(&self, job: Job) -> Result<rmpv::Value, TaskError> {
        let (id, child) = match self.acquire(&job).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return Err(TaskError::cancelled()),
            Err(error) => {
                return Err(TaskError::new(format!(
                    "cannot start a worker process: {error}"
                )))
            }
        };
        job.held.started();
        let grace = self.inner.config.cancel_grace;
        let (outcome, child) = match child {
            None => {
                let outcome =
                    guard::run_guarded(job.task, job.invocation, &job.stop, job.limits, grace)
                        .await;
                (outcome, None)
            }
            Some(child) => {
                let ctx = &job.invocation.context;
                let run = ToChild::Run {
                    id: ctx.id().to_owned(),
                    task: job.task.name.to_owned(),
                    args: job.invocation.args,
                    kwargs: job.invocation.kwargs,
                    attempt: ctx.attempt(),
                    queue: ctx.queue().to_owned(),
                };
                let ended = child.run(run, &job.stop, job.limits, grace).await;
                (ended.outcome, Some(ended.child))
            }
        };
        self.release(id, child).await;
        outcome
    }

    /// Takes an idle worker for `job`, or starts one, or waits; `None` when the job is
    /// cancelled while it waits.
    async fn acquire(&self, job: &Job) -> std::io::Result<Option<(u32, Option<ChildProcess>)>> {
        loop {
            let freed = self.inner.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            {
                if let Some(decision) = self.try_take(job) {
                    return match decision {
                        Take::Idle(id, child) => Ok(Some((id, child.map(|c| *c)))),
                        Take::Grow => self.start_busy(job).await.map(Some),
                    };
                }
            }
            tokio::select! {
                () = freed => {}
                () = job.stop.cancel_requested().cancelled() => return Ok(None),
            }
        }
    }

    /// Takes an idle worker of the current generation for `job`, or reserves room to start one;
    /// `None` when the pool is full and busy.
    fn try_take(&self, job: &Job) -> Option<Take> {
        let mut state = self.state();
        let generation = state.generation;
        while let Some(id) = state.idle.pop() {
            // Ids of workers retired meanwhile are skipped.
            if let Some(worker) = state.workers.get_mut(&id) {
                if worker.current.is_none() && worker.generation == generation {
                    begin(worker, job);
                    return Some(Take::Idle(id, worker.child.take().map(Box::new)));
                }
            }
        }
        if state.workers.len() + state.starting < self.inner.config.max_workers {
            state.starting += 1;
            return Some(Take::Grow);
        }
        None
    }

    /// Starts a worker that is busy with `job` from the start.
    async fn start_busy(&self, job: &Job) -> std::io::Result<(u32, Option<ChildProcess>)> {
        let (id, child) = self.add_worker(Some(job)).await?;
        tracing::debug!(worker = id, "pool grew");
        Ok((id, child))
    }

    /// Starts a worker (its place already counted in `starting`): busy with `job` (its child
    /// is handed back for the run), or idle (the worker keeps its child).
    async fn add_worker(&self, job: Option<&Job>) -> std::io::Result<(u32, Option<ChildProcess>)> {
        let child = self.spawn_child().await;
        let mut state = self.state();
        state.starting -= 1;
        let child = child?;
        let id = state.next_id;
        state.next_id += 1;
        let mut worker = PoolWorker::new(state.generation, None);
        worker.pid = child.as_ref().map(ChildProcess::pid);
        let handed_back = match job {
            Some(job) => {
                begin(&mut worker, job);
                child
            }
            None => {
                worker.child = child;
                state.idle.push(id);
                None
            }
        };
        state.workers.insert(id, worker);
        Ok((id, handed_back))
    }

    async fn spawn_child(&self) -> std::io::Result<Option<ChildProcess>> {
        match &self.inner.launcher {
            Some(launcher) if self.inner.config.kind == PoolKind::Process => {
                launcher.spawn().await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Gives worker `id` back after a run; retires it when it is due (reload, recycling) or
    /// gone (its child died), then makes sure the minimum is kept.
    async fn release(&self, id: u32, child: Option<Option<ChildProcess>>) {
        let retired = {
            let mut state = self.state();
            let generation = state.generation;
            let Some(worker) = state.workers.get_mut(&id) else {
                return;
            };
            worker.finished += 1;
            worker.current = None;
            worker.idle_since = Instant::now();
            let keep = match child {
                None => worker.generation == generation,
                Some(None) => false,
                Some(Some(child)) => {
                    let fit = worker.generation == generation && self.child_fit(worker, &child);
                    worker.child = Some(child);
                    fit
                }
            };
            if keep {
                state.idle.push(id);
                None
            } else {
                state.workers.remove(&id)
            }
        };
        self.inner.freed.notify_one();
        if let Some(worker) = retired {
            retire(worker).await;
            if let Err(error) = self.fill_to_minimum().await {
                tracing::error!(%error, "cannot start a worker process");
            }
            self.inner.freed.notify_one();
        }
    }

    fn child_fit(&self, worker: &PoolWorker, child: &ChildProcess) -> bool {
        let config = &self.inner.config;
        if config
            .max_tasks_per_child
            .is_some_and(|max| worker.finished >= max)
        {
            tracing::info!(
                pid = child.pid(),
                runs = worker.finished,
                "recycling a worker process: task limit"
            );
            return false;
        }
        let rss = child.rss_bytes().unwrap_or(0);
        if config.max_memory_per_child.is_some_and(|max| rss > max) {
            tracing::info!(
                pid = child.pid(),
                rss,
                "recycling a worker process: memory limit"
            );
            return false;
        }
        true
    }

    /// Starts idle workers until the minimum is met.
    async fn fill_to_minimum(&self) -> std::io::Result<()> {
        loop {
            {
                let mut state = self.state();
                if state.workers.len() + state.starting >= self.inner.config.min_workers {
                    return Ok(());
                }
                state.starting += 1;
            }
            self.add_worker(None).await?;
            self.inner.freed.notify_one();
        }
    }

    /// Recycles every worker: idle ones now, busy ones when their run ends.
    pub async fn reload(&self) {
        let idle: Vec<PoolWorker> = {
            let mut state = self.state();
            state.generation += 1;
            state.idle.clear();
            let ids: Vec<u32> = state
                .workers
                .iter()
                .filter(|(_, s)| s.current.is_none())
                .map(|(id, _)| *id)
                .collect();
            ids.iter()
                .filter_map(|id| state.workers.remove(id))
                .collect()
        };
        tracing::info!(recycled_now = idle.len(), "reloading the pool");
        for worker in idle {
            retire(worker).await;
        }
        if let Err(error) = self.fill_to_minimum().await {
            tracing::error!(%error, "cannot start a worker process");
        }
        self.inner.freed.notify_waiters();
    }

    /// Retires idle workers above the minimum every so often, until `stop`.
    pub async fn scale_down(self, stop: CancellationToken) {
        let every = (self.inner.config.idle_timeout / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(5));
        let mut ticks = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => return,
            }
            for worker in self.idle_surplus() {
                tracing::debug!(pid = ?worker.pid, "pool shrank: worker idle too long");
                retire(worker).await;
            }
        }
    }

    fn idle_surplus(&self) -> Vec<PoolWorker> {
        let mut state = self.state();
        let min = self.inner.config.min_workers;
        let timeout = self.inner.config.idle_timeout;
        let mut stale: Vec<(Instant, u32)> = state
            .workers
            .iter()
            .filter(|(_, s)| s.current.is_none() && s.idle_since.elapsed() >= timeout)
            .map(|(id, s)| (s.idle_since, *id))
            .collect();
        stale.sort();
        let surplus = state.workers.len().saturating_sub(min).min(stale.len());
        let retired: Vec<u32> = stale[..surplus].iter().map(|(_, id)| *id).collect();
        state.idle.retain(|id| !retired.contains(id));
        retired
            .iter()
            .filter_map(|id| state.workers.remove(id))
            .collect()
    }

    /// Stops every idle child (at shutdown; busy ones were already abandoned or finished).
    pub async fn shutdown(&self) {
        let workers: Vec<PoolWorker> = {
            let mut state = self.state();
            state.idle.clear();
            std::mem::take(&mut state.workers).into_values().collect()
        };
        for worker in workers {
            retire(worker).await;
        }
    }

    /// Every worker with its counters, by id.
    pub fn status(&self) -> Vec<WorkerStatus> {
        self.state()
            .workers
            .iter()
            .map(|(id, s)| WorkerStatus {
                id: *id,
                pid: s.pid,
                sent: s.sent,
                finished: s.finished,
                queued: u64::from(s.current.is_some()),
                rss_bytes: s.pid.and_then(rss_bytes),
                current: s.current.clone(),
            })
            .collect()
    }
}

/// What [`Pool::try_take`] found.
enum Take {
    /// An idle worker (with its child, in a process pool).
    Idle(u32, Option<Box<ChildProcess>>),
    /// Room to start a worker (reserved in `starting`).
    Grow,
}

/// Marks `worker` busy with `job`.
fn begin(worker: &mut PoolWorker, job: &Job) {
    worker.sent += 1;
    worker.current = Some(CurrentTask {
        id: job.invocation.context.id().to_owned(),
        task: job.task.name.to_owned(),
        shape: job.shape.clone(),
        since_ms: stevedore::now_ms(),
    });
}

async fn retire(worker: PoolWorker) {
    if let Some(child) = worker.child {
        child.retire().await;
    }
}

/// Resident memory of process `pid` in bytes (`VmRSS` of `/proc/PID/status`: right whatever
/// the page size, where `statm` counts pages).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kib_field(&status, "VmRSS:")
}

/// A `NAME:  123 kB` line of a `/proc` file, in bytes.
pub(crate) fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}
