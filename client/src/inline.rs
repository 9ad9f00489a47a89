//! [`Client::inline`]: a client that runs each published task in this process, as soon as it
//! is published (Celery's `task_always_eager`, Sidekiq's `Testing.inline!`).
//!
//! 1. The message goes through the same serialisation both ways (encoded, then decoded) and
//!    the task's result is encoded and decoded again, as between a producer and a worker.
//! 2. A failed attempt with retries left runs again at once (no backoff waits); out of
//!    retries it ends `dead`, a fatal error `failed`, as on a worker.
//! 3. Tasks a task publishes through its context's client run too, before its own run ends.
//! 4. Handles read the in-memory records: `get` returns the result or [`crate::Error::Task`].
//! 5. A submitted workflow runs to its end at once, by the workers' rules
//!    (`workflow/inline.rs`); its handle's `wait`, `result` and `status` read the outcome
//!    (`show` and `cancel` need Redis).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::{
    registered_tasks, Client, Invocation, Message, RecordField, RunRecord, TaskContext,
    TaskErrorKind, TaskRecord, TaskState,
};

/// How an inline workflow ended: status, result and failure map (MessagePack), as stored by
/// the workers' scripts.
pub(crate) type WorkflowOutcome = (String, Option<Vec<u8>>, Option<Vec<u8>>);

/// The records of the tasks an inline client ran, by id, and its workflows' outcomes.
#[derive(Debug, Default)]
pub(crate) struct Records(
    Mutex<HashMap<String, TaskRecord>>,
    Mutex<HashMap<String, WorkflowOutcome>>,
);

impl Records {
    /// Workflow `id`'s outcome, if it ran here.
    pub(crate) fn workflow(&self, id: &str) -> Option<WorkflowOutcome> {
        let outcomes = self
            .1
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        outcomes.get(id).cloned()
    }

    /// Keeps how workflow `id` ended.
    pub(crate) fn ended(&self, id: String, ended: &crate::workflow::Ended) {
        let encode = |value: &rmpv::Value| {
            let mut bytes = Vec::new();
            rmpv::encode::write_value(&mut bytes, value)
                .ok()
                .map(|()| bytes)
        };
        let outcome = match ended {
            crate::workflow::Ended::Succeeded(result) => {
                ("succeeded".to_owned(), encode(result), None)
            }
            crate::workflow::Ended::Failed(map) => ("failed".to_owned(), None, encode(map)),
        };
        let mut outcomes = self
            .1
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        outcomes.insert(id, outcome);
    }

    /// Task `id`'s record (empty when it never ran here).
    pub(crate) fn get(&self, id: &str) -> TaskRecord {
        self.lock().get(id).cloned().unwrap_or_default()
    }

    fn put(&self, id: String, record: TaskRecord) {
        self.lock().insert(id, record);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TaskRecord>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Runs `message` in this process through `client`, every attempt it gets, and records it.
pub(crate) async fn run(client: &Client, records: &Arc<Records>, message: &Message) {
    let message = match message.encode().and_then(|bytes| Message::decode(&bytes)) {
        Ok(message) => message,
        Err(error) => return records.put(message.id.clone(), failed(message, &error.to_string())),
    };
    let Some(task) = registered_tasks().find(|t| t.name == message.task) else {
        let why = format!(
            "unknown task `{}`: not registered in this process",
            message.task
        );
        return records.put(message.id.clone(), failed(&message, &why));
    };
    let retries = message.retries.or(task.options.retries).unwrap_or(0);
    let mut record = TaskRecord::default();
    let mut tried = message.tried;
    loop {
        let attempt = tried.saturating_add(1);
        let mut run = RunRecord::starting(&message, "inline");
        (run.attempt, run.started_at) = (attempt, Some(crate::now_ms()));
        let context = TaskContext::new(
            &message.id,
            &message.task,
            attempt,
            Arc::from("inline"),
            &message.queue,
            crate::CancellationToken::new(),
            client.clone(),
        );
        let invocation = Invocation {
            args: message.args.clone(),
            kwargs: message.kwargs.clone(),
            context,
        };
        let outcome = (task.handler)(invocation).await;
        run.finished_at = Some(crate::now_ms());
        let again = match outcome {
            Ok(value) => {
                run.state = TaskState::Succeeded;
                run.result = round_trip(value);
                false
            }
            Err(error) => {
                run.error = Some(error.message().to_owned());
                let retryable = matches!(
                    error.kind(),
                    TaskErrorKind::Failed | TaskErrorKind::RetryAfter(_)
                );
                let left = retries.saturating_sub(tried.saturating_sub(message.tried));
                run.state = match (error.kind(), retryable, left) {
                    (TaskErrorKind::Cancelled, _, _) => TaskState::Cancelled,
                    (_, true, 1..) => TaskState::Retrying,
                    (_, true, 0) if tried > 0 => TaskState::Dead,
                    _ => TaskState::Failed,
                };
                run.state == TaskState::Retrying
            }
        };
        if again || attempt > 1 {
            record.attempts.insert(attempt, run.clone());
        }
        record.runs.insert(RecordField::Task.name(""), run);
        if !again {
            break;
        }
        tried = attempt;
    }
    records.put(message.id.clone(), record);
}

/// A record of one run that failed before it started.
fn failed(message: &Message, why: &str) -> TaskRecord {
    let mut run = RunRecord::starting(message, "inline");
    run.state = TaskState::Failed;
    run.error = Some(why.to_owned());
    run.finished_at = Some(crate::now_ms());
    TaskRecord::from_fields([(RecordField::Task.name(""), run)])
}

/// `value` encoded and decoded again, as a worker's record carries it.
fn round_trip(value: rmpv::Value) -> Option<rmpv::Value> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &value).ok()?;
    rmpv::decode::read_value(&mut bytes.as_slice()).ok()
}
