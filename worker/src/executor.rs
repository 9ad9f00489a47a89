//! The executor: takes one delivered message to its outcome.
//!
//! 1. Has [`Admission`] decode the message when the fetcher hands it over (so the fetcher
//!    knows how many units of the node's capacity it takes) and say whether it may start
//!    (eta, impact, limits, on_duplicate); bytes that do not decode go to the queue's dead
//!    letters with the reason and the raw bytes. Skips a cancelled message (recorded
//!    `cancelled`, never run).
//! 3. Looks the task up; an unknown name fails the task with `unknown task NAME`.
//! 4. Records the run as started and hands it to the pool with its stop signal and time limits;
//!    maps how it ended to a state (`succeeded`, `failed`, `cancelled`, `timed_out`).
//! 5. Gives the node's units back, has `retry` decide what becomes of the message, and hands the
//!    run's one [`Outcome`] to the recorder.
//! 6. At a hard stop, abandons the run without acknowledging it: the message stays pending in
//!    Redis, to be recovered, never lost.

use std::sync::Arc;
use std::time::Duration;

use stevedore::broker::{Broker, Delivery, Entry, Outcome, Settle, StepRef};
use stevedore::{
    dedup_policy, Client, Invocation, Message, RecordField, RecordPolicy, RunRecord, TaskContext,
    TaskError, TaskRegistration, TaskState,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::activity::Activity;
use crate::admission::{Admission, Prepared};
use crate::cancels::CancelBook;
use crate::capacity::{Capacity, HeldUnits};
use crate::hooks::{Hooks, RunInfo};
use crate::in_flight::InFlight;
use crate::persist::until_written;
use crate::pool::{Job, Pool, TimeLimits};
use crate::recorder::Event;
use crate::retry;
use crate::running::{RunKey, RunningTasks};
use crate::stop::{StopReason, StopSignal};
use crate::task_table::TaskTable;

/// What the executor works with.
pub struct ExecutorParts {
    /// This node.
    pub node: Arc<str>,
    /// This node's own queue (where a failed broadcast is retried).
    pub node_queue: stevedore::QueueName,
    /// The tasks it can run.
    pub table: Arc<TaskTable>,
    /// Activity counters for the heartbeat.
    pub activity: Arc<Activity>,
    /// For task contexts and dead letters.
    pub client: Client,
    /// To the recorder.
    pub events: mpsc::UnboundedSender<Event>,
    /// Tracks every run, for the drain at shutdown.
    pub tracker: TaskTracker,
    /// Cancelled at the shutdown deadline: tasks see their cancellation token fire.
    pub cancel_all: CancellationToken,
    /// Cancelled at the shutdown deadline: runs are abandoned, not acknowledged.
    pub abandon: CancellationToken,
    /// Where runs go.
    pub pool: Pool,
    /// Held runs, for control.
    pub running: RunningTasks,
    /// Cancel records.
    pub cancels: CancelBook,
    /// Entries read and not yet settled (shared with the recorder, which settles them).
    pub in_flight: Arc<InFlight>,
    /// The app's hooks around each task.
    pub hooks: Hooks,
    /// The node's capacity in units (exclusive runs report their state to it).
    pub capacity: Arc<Capacity>,
    /// Whether a message may start (eta, impact, limits, on_duplicate).
    pub admission: Admission,
}

/// Starts runs; cheap to clone.
#[derive(Clone)]
pub struct Executor {
    pub(crate) shared: Arc<ExecutorParts>,
}

impl Executor {
    /// An executor over `parts`.
    pub fn new(parts: ExecutorParts) -> Self {
        Self {
            shared: Arc::new(parts),
        }
    }

    /// Decodes `delivery` and says how many units it needs (see [`Admission::prepare`]).
    pub fn prepare(&self, delivery: Delivery) -> Prepared {
        self.shared.admission.prepare(delivery)
    }

    /// Runs `prepared` in the background, holding `units` until the run ends.
    pub fn start(&self, prepared: Prepared, units: HeldUnits) {
        let delivery = &prepared.delivery;
        if !self
            .shared
            .in_flight
            .take(&delivery.destination, &delivery.entry_id)
        {
            return;
        }
        let shared = self.shared.clone();
        self.shared.tracker.spawn(async move {
            let abandon = shared.abandon.clone();
            // Boxed: the run's state machine is kilobytes, and a future held inline is copied
            // whole each time the task is moved (spawned, polled the first time).
            let run = Box::pin(shared.run(prepared, units));
            // Biased: once abandoned, a run that ends because its token fired is not recorded.
            tokio::select! {
                biased;
                () = abandon.cancelled() => {}
                () = run => {}
            }
            // Abandoned runs stay marked: their entries are pending on purpose.
        });
    }

    /// The entries read here and not yet settled.
    pub fn in_flight(&self) -> &InFlight {
        &self.shared.in_flight
    }
}

impl ExecutorParts {
    fn broker(&self) -> &Broker {
        self.client.broker()
    }

    async fn run(&self, prepared: Prepared, units: HeldUnits) {
        let delivery = &prepared.delivery;
        let exclusive = prepared
            .exclusive_run()
            .map(|(id, task)| (id.to_owned(), task.to_owned()));
        if let Some((id, task)) = &exclusive {
            self.capacity.running_alone(id, task);
        }
        let outcome_sent = self
            .run_or_settle(prepared.opened, delivery, prepared.oversize, units)
            .await;
        if let Some((id, _)) = &exclusive {
            self.capacity.alone_no_more(id);
        }
        if !outcome_sent {
            self.in_flight
                .settled(&delivery.destination, &delivery.entry_id);
        }
    }

    /// Runs the delivery; returns whether its outcome went to the recorder (which then settles
    /// the entry), false when it was settled here or left pending for a later reread.
    async fn run_or_settle(
        &self,
        opened: Result<Message, String>,
        delivery: &Delivery,
        oversize: bool,
        units: HeldUnits,
    ) -> bool {
        let mut message = match opened {
            Ok(message) => message,
            Err(reason) => {
                self.dead_letter(delivery, &reason).await;
                return false;
            }
        };
        let span = stevedore::trace::process_span(&message, &delivery.group);
        let gate = self.admission.may_start(delivery, &message, oversize);
        let Some(permit) = gate.instrument(span.clone()).await else {
            return false;
        };
        let (run, error) = self
            .run_message(&mut message)
            .instrument(span.clone())
            .await;
        drop(units);
        if let Some(permit) = permit {
            self.admission
                .release(permit)
                .instrument(span.clone())
                .await;
        }
        // Inside the run's span: its retry or dead letter is logged with the task's id.
        span.in_scope(|| self.finish(delivery, &message, run, error));
        true
    }

    /// Settles a finished run (retry, dead letter or done) and hands its outcome to the
    /// recorder.
    fn finish(
        &self,
        delivery: &Delivery,
        message: &Message,
        mut run: RunRecord,
        error: Option<TaskError>,
    ) {
        let attempt = retry::Attempt {
            message,
            payload: delivery.payload.as_deref().unwrap_or_default(),
            options: self.table.get(&message.task).map(|t| &t.options),
            from: &delivery.destination,
            node_queue: &self.node_queue,
        };
        let settle = retry::settle(self.broker(), &attempt, &mut run, error.as_ref());
        if crate::observe::enabled() {
            let task = self.table.get(&message.task).map_or("unknown", |t| t.name);
            crate::observe::run_settled(&delivery.destination, task, &run);
        }
        let release = match settle {
            Settle::Retry { .. } => None,
            _ => dedup_policy(message).map(|(_, key)| key.to_owned()),
        };
        self.activity.worked();
        let outcome = Outcome {
            field: self.finished_field(message, &run),
            notify: message.wants_notify(),
            entry: Entry {
                destination: delivery.destination.clone(),
                group: delivery.group.clone(),
                entry_id: delivery.entry_id.clone(),
            },
            settle,
            release,
            workflow: StepRef::of(message).map(Box::new),
            record: record_policy(message),
            log: crate::task_log::take_current(),
            run,
        };
        let _ = self.events.send(Event::Finished(outcome));
    }

    /// Where the outcome of `run` goes: as usual, or apart when this process was declared lost
    /// and reaped after the run started (the reaper already settled it).
    fn finished_field(&self, message: &Message, run: &RunRecord) -> RecordField {
        let reaped_after_start = match (self.activity.reaped_at(), run.started_at) {
            (Some(reaped), Some(started)) => started <= reaped,
            _ => false,
        };
        if reaped_after_start {
            tracing::warn!("finished after this process was declared lost; recorded as a late run");
            RecordField::Late
        } else {
            RecordField::of(message)
        }
    }

    /// Runs the task of `message` (its arguments are moved out) and returns its finished run
    /// record, with the error when it did not succeed.
    async fn run_message(&self, message: &mut Message) -> (RunRecord, Option<TaskError>) {
        let mut run = RunRecord::starting(message, &self.node);
        if self.cancels.cancels(message) {
            tracing::info!("skipped: cancelled before it started");
            run.state = TaskState::Cancelled;
            run.error = Some("cancelled before it started".into());
            run.finished_at = Some(stevedore::now_ms());
            return (run, Some(TaskError::cancelled()));
        }
        if message.expires.is_some_and(|at| stevedore::now_ms() > at) {
            tracing::info!("skipped: expired before it started");
            run.state = TaskState::Expired;
            run.error = Some("expired: no worker started it before its expiry time".into());
            run.finished_at = Some(stevedore::now_ms());
            return (run, Some(TaskError::fatal("expired")));
        }
        run.started_at = Some(stevedore::now_ms());
        if crate::observe::enabled() {
            let (published, eta) = (message.published_at, message.eta);
            crate::observe::run_started(&message.queue, published, eta, stevedore::now_ms());
        }
        self.activity.worked();
        if record_policy(message).records(&run) {
            let _ = self.events.send(Event::Started {
                run: run.clone(),
                field: RecordField::of(message),
            });
        }
        let mut info = self.hooks.has_task_hooks().then(|| RunInfo {
            id: message.id.clone(),
            task: message.task.clone(),
            node: self.node.to_string(),
            attempt: message.attempt(),
            state: TaskState::Running,
        });
        if let Some(info) = &info {
            self.hooks.before(info).await;
        }
        let (state, outcome) = match self.table.get(&message.task) {
            None => (
                TaskState::Failed,
                Err(TaskError::fatal(format!(
                    "unknown task {}",
                    message.task.escape_debug()
                ))),
            ),
            Some(task) => self.run_task(task, message).await,
        };
        if let Some(info) = &mut info {
            info.state = state;
            self.hooks.after(info).await;
        }
        run.finished_at = Some(stevedore::now_ms());
        run.state = state;
        match outcome {
            Ok(value) => {
                run.result = Some(value);
                tracing::debug!("task succeeded");
                (run, None)
            }
            Err(error) => {
                let error_text = stevedore::admin::format::printable(error.message());
                tracing::warn!(error = %error_text, state = state.as_str(), "task did not succeed");
                run.error = Some(error.message().to_owned());
                (run, Some(error))
            }
        }
    }

    /// Hands the run to the pool and says how it ended.
    async fn run_task(
        &self,
        task: &'static TaskRegistration,
        message: &mut Message,
    ) -> (TaskState, Result<rmpv::Value, TaskError>) {
        let stop = StopSignal::new(&self.cancel_all);
        let held = (self.running).hold(&message.id, RunKey::of(message), stop.clone());
        let context = TaskContext::new(
            &message.id,
            &message.task,
            message.attempt(),
            self.node.clone(),
            &message.queue,
            stop.token().clone(),
            self.client.clone(),
        );
        let job = Job {
            task,
            shape: shape(message),
            invocation: Invocation {
                args: std::mem::take(&mut message.args),
                kwargs: std::mem::take(&mut message.kwargs),
                context,
            },
            stop: stop.clone(),
            limits: self.limits(task, message),
            held,
        };
        let outcome = self.pool.run(job).await;
        match (&outcome, stop.reason()) {
            (Ok(_), _) => (TaskState::Succeeded, outcome),
            (Err(_), Some(reason)) => (
                reason.state(),
                outcome.map_err(|e| stopped_error(reason, e)),
            ),
            (Err(_), None) => (TaskState::Failed, outcome),
        }
    }

    /// The run's time limits: the call's, else the task's; the hard limit defaults to the soft
    /// one plus the cancel grace.
    fn limits(&self, task: &TaskRegistration, message: &Message) -> TimeLimits {
        let ms = |ms: Option<u64>| ms.map(Duration::from_millis);
        let soft = ms(message.timeout.or(task.options.timeout_ms));
        let hard = ms(message.hard_timeout.or(task.options.hard_timeout_ms))
            .or_else(|| soft.map(|soft| soft + self.pool.config().cancel_grace));
        TimeLimits { soft, hard }
    }

    /// Moves a message that cannot run to the dead letters, retrying while Redis refuses.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) {
        let queue = delivery.destination.to_string();
        let moved = until_written(&self.abandon, "dead-letter a bad message", || {
            self.broker().dead_letter(delivery, reason)
        })
        .await;
        if let Some(dead_id) = moved {
            let reason = stevedore::admin::format::printable(reason);
            tracing::warn!(%queue, entry = %delivery.entry_id, %dead_id, %reason, "message dead-lettered");
            crate::observe::dead_lettered(&queue, "unreadable");
        }
    }
}

/// The error recorded for a run that stopped because it was told to.
fn stopped_error(reason: StopReason, error: TaskError) -> TaskError {
    match reason {
        StopReason::TimedOut => TaskError::fatal(format!("timed out ({})", error.message())),
        StopReason::Cancelled => error,
    }
}

/// `task(<2 args, 1 kwarg>)`: the shape of a call, never its values (they may hold secrets).
fn shape(message: &Message) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let mut parts = vec![plural(message.args.len(), "arg")];
    if !message.kwargs.is_empty() {
        parts.push(plural(message.kwargs.len(), "kwarg"));
    }
    format!("{}(<{}>)", message.task, parts.join(", "))
}

/// Which runs of `message` leave a record: its policy, but every run of a workflow step
/// (`workflow show` reads them).
fn record_policy(message: &Message) -> RecordPolicy {
    if StepRef::of(message).is_some() {
        RecordPolicy::All
    } else {
        message.record_policy()
    }
}
