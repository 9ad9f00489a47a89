//! A task as operators see it: its record, or where it waits when it has none.

use super::{not_found, Admin};
use crate::broker::Whereabouts;
use crate::{Result, TaskRecord};

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
        let record = self.client.task(&id).await?;
        let mut view = TaskView {
            state: "pending",
            whereabouts: None,
            record,
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
