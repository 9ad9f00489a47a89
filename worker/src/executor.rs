//! The executor: runs one delivered message and reports its outcome.
//!
//! 1. Decodes the message; bytes that do not decode go to the queue's dead letters with the
//!    reason and the raw bytes.
//! 2. Looks the task up; an unknown name fails the task with `unknown task NAME`.
//! 3. Records the run as started, runs the handler (a panic is a failure, not a crash), and
//!    hands the outcome and the acknowledgement to the recorder.
//! 4. Holds the node's slot until the task body has returned.
//! 5. At a hard stop, abandons the run without acknowledging it: the message stays pending in
//!    Redis, to be recovered, never lost.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use stevedore::broker::{Broker, Delivery};
use stevedore::{
    Client, Destination, Invocation, Message, RunRecord, TaskContext, TaskError, TaskState,
};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::recorder::Event;
use crate::task_table::TaskTable;

/// Starts runs; cheap to clone.
#[derive(Clone)]
pub struct Executor {
    shared: Arc<Shared>,
}

struct Shared {
    node: Arc<str>,
    table: TaskTable,
    client: Client,
    events: mpsc::UnboundedSender<Event>,
    tracker: TaskTracker,
    /// Cancelled at the shutdown deadline: tasks see their cancellation token fire.
    cancel_all: CancellationToken,
    /// Cancelled at the shutdown deadline: runs are abandoned, not acknowledged.
    abandon: CancellationToken,
}

impl Executor {
    /// An executor for `node` that reports to the recorder through `events`.
    pub fn new(
        node: Arc<str>,
        table: TaskTable,
        client: Client,
        events: mpsc::UnboundedSender<Event>,
        tracker: TaskTracker,
        cancel_all: CancellationToken,
        abandon: CancellationToken,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                node,
                table,
                client,
                events,
                tracker,
                cancel_all,
                abandon,
            }),
        }
    }

    /// Runs `delivery` (read through `group`) in the background, holding `slot` until the task
    /// body returns.
    pub fn start(&self, delivery: Delivery, group: String, slot: OwnedSemaphorePermit) {
        let shared = self.shared.clone();
        self.shared.tracker.spawn(async move {
            let abandon = shared.abandon.clone();
            // Biased: once abandoned, a run that ends because its token fired is not recorded.
            tokio::select! {
                biased;
                () = abandon.cancelled() => {}
                () = shared.run(delivery, group, slot) => {}
            }
        });
    }
}

impl Shared {
    fn broker(&self) -> &Broker {
        self.client.broker()
    }

    async fn run(&self, delivery: Delivery, group: String, slot: OwnedSemaphorePermit) {
        let mut message = match delivery.payload.as_deref().map(Message::decode) {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                return self
                    .dead_letter(&delivery, &group, &error.to_string())
                    .await
            }
            None => {
                let reason = "stream entry has no message field `m` (or was trimmed while pending)";
                return self.dead_letter(&delivery, &group, reason).await;
            }
        };
        let span = tracing::info_span!("task", task.name = %message.task, task.id = %message.id,
            queue = %message.queue, attempt = message.tried + 1);
        let outcome = self
            .run_message(&mut message, &delivery)
            .instrument(span)
            .await;
        drop(slot);
        let _ = self.events.send(Event::Finished {
            run: outcome,
            broadcast: delivery.destination == Destination::Broadcast,
            notify: message.wants_notify(),
            destination: delivery.destination,
            group,
            entry_id: delivery.entry_id,
        });
    }

    /// Runs the task of `message` (its arguments are moved out) and returns its finished run
    /// record.
    async fn run_message(&self, message: &mut Message, delivery: &Delivery) -> RunRecord {
        let broadcast = delivery.destination == Destination::Broadcast;
        let mut run = RunRecord {
            id: message.id.clone(),
            task: message.task.clone(),
            queue: message.queue.clone(),
            node: self.node.to_string(),
            state: TaskState::Running,
            attempt: message.tried + 1,
            published_at: message.published_at,
            started_at: Some(stevedore::now_ms()),
            finished_at: None,
            result: None,
            error: None,
        };
        let _ = self.events.send(Event::Started {
            run: run.clone(),
            broadcast,
        });
        let outcome = match self.table.get(&message.task) {
            None => Err(TaskError::fatal(format!("unknown task {}", message.task))),
            Some(task) => {
                let invocation = Invocation {
                    args: std::mem::take(&mut message.args),
                    kwargs: std::mem::take(&mut message.kwargs),
                    context: self.context(message),
                };
                AssertUnwindSafe((task.handler)(invocation))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| {
                        Err(TaskError::new(format!(
                            "task panicked: {}",
                            stevedore::__private::panic_message(&panic)
                        )))
                    })
            }
        };
        run.finished_at = Some(stevedore::now_ms());
        match outcome {
            Ok(value) => {
                run.state = TaskState::Succeeded;
                run.result = Some(value);
                tracing::debug!("task succeeded");
            }
            Err(error) => {
                run.state = TaskState::Failed;
                tracing::warn!(error = %error, "task failed");
                run.error = Some(error.message().to_owned());
            }
        }
        run
    }

    fn context(&self, message: &Message) -> TaskContext {
        TaskContext::new(
            &message.id,
            &message.task,
            message.tried + 1,
            self.node.clone(),
            &message.queue,
            self.cancel_all.child_token(),
            self.client.clone(),
        )
    }

    async fn dead_letter(&self, delivery: &Delivery, group: &str, reason: &str) {
        let queue = delivery.destination.to_string();
        match self.broker().dead_letter(delivery, group, reason).await {
            Ok(dead_id) => {
                tracing::warn!(%queue, entry = %delivery.entry_id, %dead_id, %reason, "message dead-lettered")
            }
            Err(error) => {
                tracing::error!(%queue, entry = %delivery.entry_id, %error, "could not dead-letter a bad message; it stays pending")
            }
        }
    }
}
