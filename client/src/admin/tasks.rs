//! A task as operators see it: its record, or where it waits when it has none.

use super::{not_found, Admin};
use crate::broker::Whereabouts;
use crate::{Result, TaskRecord, TaskState};

/// What is known about one task.
#[derive(Debug, Clone)]
pub struct TaskView {
    /// Its id.
    pub id: String,
    /// Its state: its record's (`pending` ... `dead`, docs/protocol.md section 3); without a
    /// record, `pending` when it waits or is delayed and `rejected` when it was dead-lettered
    /// on arrival.
    pub state: &'static str,
    /// Its record (empty when it has none).
    pub record: TaskRecord,
    /// Where it is, when it has no record.
    pub whereabouts: Option<Whereabouts>,
    /// Its latest progress report, if it made one.
    pub progress: Option<crate::Progress>,
    /// What the task itself logged, oldest first (a line naming each attempt, then its lines).
    pub log: Vec<String>,
}

impl TaskView {
    /// Whether it has a record (it started at least once; a damaged field counts).
    pub fn has_record(&self) -> bool {
        let record = &self.record;
        !record.runs.is_empty() || !record.attempts.is_empty() || !record.unreadable.is_empty()
    }
}

impl Admin {
    /// Task `id`: its record, or where it is. [`crate::Error::NotFound`] when it has no record
    /// and is in no queue, delayed set or dead letters (never published, or its record
    /// expired). An id that reads as a UUID is looked up in its lowercase hyphenated form.
    pub async fn task(&self, id: &str) -> Result<TaskView> {
        let id = match uuid::Uuid::parse_str(id) {
            Ok(uuid) => uuid.hyphenated().to_string(),
            Err(_) => id.to_owned(),
        };
        let (record, progress, log) = tokio::try_join!(
            self.client.task(&id),
            self.broker().progress(&id),
            self.broker().task_log(&id)
        )?;
        let mut view = TaskView {
            state: "pending",
            whereabouts: None,
            record,
            progress,
            log,
            id,
        };
        if view.has_record() {
            view.state = view.record.state().as_str();
            return Ok(view);
        }
        view.whereabouts = self.broker().find_task(&view.id).await?;
        view.state = match &view.whereabouts {
            Some(Whereabouts::Waiting(_) | Whereabouts::Delayed(..)) => "pending",
            Some(Whereabouts::Rejected(..)) => "rejected",
            None => {
                return Err(not_found(
                    "task",
                    &view.id,
                    "no record, and not in any queue, delayed set or dead letters (never published, or its record expired)",
                ))
            }
        };
        Ok(view)
    }
}

impl Admin {
    /// Publishes failed (or timed out) task `id` again with its own options, as its next
    /// attempt with the retry budget it was published with (the dashboard's Retry,
    /// `stevedore retry`). [`crate::Error::NotFound`] for an unknown task, or when its
    /// message was not kept (retried already, larger than 64 KiB, or failed on an older
    /// worker); [`crate::Error::InvalidOptions`] for a task that did not fail.
    pub async fn retry_task(&self, id: &str) -> Result<()> {
        let task = self.task(id).await?;
        let state = task.record.state();
        if !matches!(state, TaskState::Failed | TaskState::TimedOut) {
            let hint = match state {
                TaskState::Dead => "; a dead task is requeued from its dead letter",
                _ => "",
            };
            return Err(crate::Error::InvalidOptions(format!(
                "task {} is {}: only a failed or timed out task can be retried{hint}",
                task.id,
                state.as_str()
            )));
        }
        match self.broker().retry_failed(&task.id).await? {
            true => Ok(()),
            false => Err(not_found(
                "kept message of task",
                &task.id,
                "retried already, larger than 64 KiB, or it failed on a worker that kept none: publish it again",
            )),
        }
    }
}
