//! Queues as operators see them: counts and whether paused; a queue's tasks per state;
//! purging what waits; pausing and resuming.

use std::time::Duration;

use super::{not_found, Admin};
use crate::broker::{Listed, QueueInfo};
use crate::control::NodeAnswer;
use crate::{Destination, Error, Message, Result};

/// One queue: its counts, and whether it is paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueView {
    /// Its counts.
    pub stats: QueueInfo,
    /// Whether the cluster stopped reading it (`stevedore queue pause`).
    pub paused: bool,
}

impl QueueView {
    /// Its wire name (`NAME`, `node:NAME`, `broadcast`).
    pub fn name(&self) -> String {
        self.stats.destination.wire_name()
    }

    /// How long its oldest waiting task has waited at `now` (ms), if one waits.
    pub fn oldest_age_ms(&self, now: u64) -> Option<u64> {
        (self.stats.oldest_waiting_at).map(|at| now.saturating_sub(at))
    }
}

impl Admin {
    /// Every queue with its counts and whether it is paused, sorted by name.
    pub async fn queues(&self) -> Result<Vec<QueueView>> {
        let (queues, paused) =
            tokio::try_join!(self.broker().queues(), self.broker().paused_queues())?;
        Ok((queues.into_iter())
            .map(|stats| QueueView {
                paused: paused.contains(&stats.destination.wire_name()),
                stats,
            })
            .collect())
    }

    /// Queue `name` (`NAME`, `node:NAME` or `broadcast`); [`Error::NotFound`] when nothing
    /// was ever published to it or read from it and it holds nothing.
    pub async fn queue(&self, name: &str) -> Result<QueueView> {
        let destination = Destination::from_wire_name(name)?;
        let (stats, paused, registered) = tokio::try_join!(
            self.broker().queue_info(destination.clone()),
            self.broker().paused_queues(),
            self.broker().queue_registered(&destination),
        )?;
        let holds = stats.length + stats.dead + stats.delayed > 0;
        if !registered && !holds {
            return Err(not_found(
                "queue",
                name,
                "nothing was ever published to it or read from it (see `stevedore queues`)",
            ));
        }
        let paused = paused.contains(&destination.wire_name());
        Ok(QueueView { stats, paused })
    }

    /// A shared or node queue whose tasks can be listed or purged: known, and not the
    /// broadcasts (read per node).
    pub async fn listable_queue(&self, name: &str) -> Result<Destination> {
        let view = self.queue(name).await?;
        match view.stats.destination {
            Destination::Broadcast => Err(Error::InvalidOptions(
                "broadcasts are read per node: see `stevedore running --all` and `dead list --queue broadcast`".into(),
            )),
            queue => Ok(queue),
        }
    }

    /// Up to `limit` tasks waiting in `queue`, oldest first, after entry `after` (a page).
    pub async fn waiting(
        &self,
        queue: &Destination,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Listed>> {
        self.broker().list_waiting_after(queue, after, limit).await
    }

    /// Up to `limit` tasks of `queue` read by a worker and not settled.
    pub async fn running(&self, queue: &Destination, limit: usize) -> Result<Vec<Listed>> {
        self.broker().list_running(queue, limit).await
    }

    /// Up to `limit` delayed tasks of `queue` (retries waiting for their backoff too), soonest
    /// first, from position `from`.
    pub async fn delayed(
        &self,
        queue: &Destination,
        from: usize,
        limit: usize,
    ) -> Result<Vec<Listed>> {
        self.broker().list_delayed_from(queue, from, limit).await
    }

    /// Up to `limit` dead letters of `queue` as listed tasks, each with why it died.
    pub async fn dead_tasks(
        &self,
        queue: &Destination,
        limit: usize,
    ) -> Result<Vec<(Listed, String)>> {
        let letters = self.broker().dead_letters(queue, limit).await?;
        Ok((letters.into_iter())
            .map(|letter| {
                let message = crate::signing::unwrap_unchecked(&letter.raw)
                    .ok()
                    .and_then(|bytes| Message::decode(&bytes).ok());
                let listed = Listed {
                    entry_id: letter.entry_id,
                    message,
                    due_ms: None,
                    consumer: None,
                };
                (listed, letter.reason)
            })
            .collect())
    }

    /// Deletes what waits in queue `name` (never what runs), and with `delayed` its delayed
    /// messages too; returns how many of each.
    pub async fn purge_queue(&self, name: &str, delayed: bool) -> Result<(u64, u64)> {
        let queue = self.listable_queue(name).await?;
        self.broker().purge_waiting(&queue, delayed).await
    }

    /// Pauses (`true`) or resumes queue `name` for the whole cluster, and waits up to
    /// `timeout` for the live nodes to take it in. A queue nobody reads yet can be paused
    /// (the pause holds for the nodes that will): see [`Admin::queue_read`].
    pub async fn pause_queue(
        &self,
        name: &str,
        paused: bool,
        timeout: Duration,
    ) -> Result<Vec<NodeAnswer>> {
        let queue = Destination::queue(name)?;
        self.client.pause_queue(&queue, paused, timeout).await
    }

    /// Whether a live node reads shared queue `name`.
    pub async fn queue_read(&self, name: &str) -> Result<bool> {
        let nodes = self.nodes().await?;
        Ok((nodes.iter()).any(|n| !n.is_lost() && n.beat.queues.iter().any(|q| q == name)))
    }
}
