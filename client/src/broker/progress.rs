//! Storing and reading a task's progress report (see `crate::progress`).

use super::Broker;
use crate::progress::{Progress, KEPT};
use crate::Result;

/// Who reports: the run a progress event names.
pub struct Reporter<'a> {
    /// The task id.
    pub id: &'a str,
    /// The task name.
    pub task: &'a str,
    /// The queue's wire name.
    pub queue: &'a str,
    /// The node running it.
    pub node: &'a str,
    /// The attempt.
    pub attempt: u32,
}

impl Broker {
    /// Stores `progress` as task `by.id`'s latest report (and its `progress` event, with
    /// events on), in one round trip.
    pub async fn set_progress(&self, by: &Reporter<'_>, progress: &Progress) -> Result<()> {
        let json = serde_json::to_string(progress).map_err(|e| crate::Error::Encode {
            what: "a progress report".into(),
            reason: e.to_string(),
        })?;
        let mut pipe = redis::pipe();
        let key = self.keys().progress(by.id);
        (pipe
            .cmd("SET")
            .arg(key)
            .arg(json)
            .arg("PX")
            .arg(KEPT.as_millis() as u64))
        .ignore();
        if self.writes_events() {
            let (at, attempt) = (progress.at.to_string(), by.attempt.to_string());
            let (done, total) = (progress.done.to_string(), progress.total.to_string());
            let fields = [
                ("event", "progress"),
                ("id", by.id),
                ("task", by.task),
                ("queue", by.queue),
                ("at", &at),
                ("node", by.node),
                ("attempt", &attempt),
                ("done", &done),
                ("total", &total),
            ];
            self.add_event(&mut pipe, &fields);
        }
        pipe.query_async::<()>(&mut self.commands()).await?;
        Ok(())
    }

    /// Task `id`'s latest progress report, if it made one (and it was kept).
    pub async fn progress(&self, id: &str) -> Result<Option<Progress>> {
        let json: Option<String> = redis::cmd("GET")
            .arg(self.keys().progress(id))
            .query_async(&mut self.commands())
            .await?;
        json.map(|text| {
            serde_json::from_str(&text).map_err(|e| crate::Error::Decode {
                what: format!("the progress of task {id}"),
                reason: e.to_string(),
            })
        })
        .transpose()
    }
}
