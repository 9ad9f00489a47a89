//! Dead letters as operators handle them: list, show, requeue one, some or all, delete,
//! purge; and a dead task requeued by its id.
//!
//! Requeueing every letter of a queue takes only the letters there when it began: a requeued
//! task that dies again during the loop comes back with a newer entry id, past the newest one
//! seen at the start, and is left for the operator to look at (never requeued in a loop).

use super::{not_found, Admin};
use crate::broker::DeadLetter;
use crate::{Destination, Error, Result};

/// Dead letters read per round trip when requeueing them all, or looking for a task's.
const PAGE: usize = 500;

/// Dead letters looked at, at most, to find a task's by its id.
const FIND_AT_MOST: usize = 100_000;

/// What requeueing several dead letters did, letter by letter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequeueReport {
    /// Entry ids put back on their queue.
    pub requeued: Vec<String>,
    /// Entry ids that stayed, each with why (gone, unreadable, signed and no key here).
    pub failed: Vec<(String, String)>,
}

impl Admin {
    /// Up to `limit` dead letters of queue `queue` after entry `after` (from the oldest when
    /// `None`), oldest first.
    pub async fn dead_letters(
        &self,
        queue: &Destination,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        self.broker().dead_letters_after(queue, after, limit).await
    }

    /// Dead letter `entry` of `queue`; [`Error::NotFound`] when it is not there.
    pub async fn dead_letter(&self, queue: &Destination, entry: &str) -> Result<DeadLetter> {
        (self.broker().find_dead_letter(queue, entry).await?)
            .ok_or_else(|| missing_letter(queue, entry))
    }

    /// Requeues dead letter `entry` of `queue` as its next attempt with a fresh retry budget.
    /// [`Error::NotFound`] when it is gone; a letter whose bytes do not open, or that is
    /// signed while this process has no key, is an error and stays.
    pub async fn requeue_dead(&self, queue: &Destination, entry: &str) -> Result<()> {
        match self.broker().requeue_dead(queue, entry).await? {
            true => Ok(()),
            false => Err(missing_letter(queue, entry)),
        }
    }

    /// Requeues each of `entries` of `queue`, going on past those that cannot be.
    pub async fn requeue_dead_entries(
        &self,
        queue: &Destination,
        entries: &[String],
    ) -> Result<RequeueReport> {
        let mut report = RequeueReport::default();
        for entry in entries {
            self.requeue_into(queue, entry, &mut report).await?;
        }
        Ok(report)
    }

    /// Requeues every dead letter `queue` holds now (not those that die again meanwhile),
    /// going on past those that cannot be.
    pub async fn requeue_all_dead(&self, queue: &Destination) -> Result<RequeueReport> {
        let mut report = RequeueReport::default();
        let Some(newest) = self.broker().newest_dead_letter(queue).await? else {
            return Ok(report);
        };
        let newest = entry_order(&newest);
        let mut after: Option<String> = None;
        loop {
            let page = self.dead_letters(queue, after.as_deref(), PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(report);
            };
            after = Some(last.entry_id.clone());
            for letter in &page {
                if entry_order(&letter.entry_id) > newest {
                    return Ok(report);
                }
                self.requeue_into(queue, &letter.entry_id, &mut report)
                    .await?;
            }
        }
    }

    /// Requeues the dead letter of task `id` (found in its queue's dead letters).
    pub async fn requeue_dead_task(&self, id: &str) -> Result<()> {
        let task = self.task(id).await?;
        let queue = (task.record.task_run())
            .map(|run| run.queue.clone())
            .ok_or_else(|| not_found("dead task", id, "it has no record of a run"))?;
        let queue = Destination::from_wire_name(&queue)?;
        let mut after: Option<String> = None;
        for _ in 0..FIND_AT_MOST / PAGE {
            let page = self.dead_letters(&queue, after.as_deref(), PAGE).await?;
            if let Some(letter) = page.iter().find(|l| l.id.as_deref() == Some(&task.id)) {
                return self.requeue_dead(&queue, &letter.entry_id).await;
            }
            match page.last() {
                Some(last) => after = Some(last.entry_id.clone()),
                None => break,
            }
        }
        let hint = format!("it is not in the dead letters of {queue}");
        Err(not_found("dead task", id, &hint))
    }

    /// Deletes dead letter `entry` of `queue`; [`Error::NotFound`] when it is not there.
    pub async fn delete_dead(&self, queue: &Destination, entry: &str) -> Result<()> {
        match self.broker().delete_dead(queue, entry).await? {
            true => Ok(()),
            false => Err(missing_letter(queue, entry)),
        }
    }

    /// Deletes every dead letter of `queue`; returns how many there were.
    pub async fn purge_dead(&self, queue: &Destination) -> Result<u64> {
        self.broker().purge_dead(queue).await
    }

    /// Requeues one letter into `report`: a letter that is gone or cannot be requeued is
    /// counted as failed with why; any other error ends the whole run.
    async fn requeue_into(
        &self,
        queue: &Destination,
        entry: &str,
        report: &mut RequeueReport,
    ) -> Result<()> {
        let why = match self.requeue_dead(queue, entry).await {
            Ok(()) => {
                report.requeued.push(entry.to_owned());
                return Ok(());
            }
            Err(error @ Error::NotFound { .. }) => error.to_string(),
            Err(error @ (Error::Decode { .. } | Error::Signature(_))) => format!(
                "cannot requeue {entry}: {error}; it stays (see `dead show`, `dead delete`)"
            ),
            Err(error) => return Err(error),
        };
        report.failed.push((entry.to_owned(), why));
        Ok(())
    }
}

fn missing_letter(queue: &Destination, entry: &str) -> Error {
    let hint = format!("not in the dead letters of queue {queue} (see `stevedore dead list`)");
    not_found("dead letter", entry, &hint)
}

/// A stream entry id (`MS-SEQ`) as comparable numbers.
fn entry_order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}
