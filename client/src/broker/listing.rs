//! A queue's tasks by state, for `stevedore queue show`, and purging what waits, for `stevedore
//! queue purge`. Shared and node queues only (read through the `workers` group).

use redis::streams::{StreamInfoGroupsReply, StreamPendingCountReply};
use redis::Value;

use super::keys::QUEUE_GROUP;
use super::scripts::PURGE_WAITING;
use super::{reply, Broker};
use crate::{Destination, Message, Result};

/// Entries one purge call deletes (each call is one short atomic script).
const PURGE_BATCH: usize = 10_000;

/// One task of a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The stream entry id (for a delayed message: empty).
    pub entry_id: String,
    /// The message, when its bytes open (signatures are not checked: this is for showing).
    pub message: Option<Message>,
    /// For a delayed message, when it is due (ms since the epoch).
    pub due_ms: Option<u64>,
    /// For a running one, the consumer (worker process) holding it.
    pub consumer: Option<String>,
}

impl Broker {
    /// The groups of `stream` (none when the stream does not exist).
    pub(super) async fn queue_groups(&self, stream: &str) -> Result<StreamInfoGroupsReply> {
        Ok(redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(&mut self.commands())
            .await
            .or_else(|e| match e.code() {
                Some("ERR") => Ok(StreamInfoGroupsReply::default()), // no stream yet
                _ => Err(e),
            })?)
    }

    /// The oldest `limit` entries of `stream` the queue group has not read (`groups`: the
    /// stream's groups), after entry `after` when given (the next page of a listing).
    pub(super) async fn unread(
        &self,
        stream: &str,
        groups: &StreamInfoGroupsReply,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<reply::StreamEntry>> {
        let group = groups.groups.iter().find(|g| g.name == QUEUE_GROUP);
        let delivered = group.map(|g| g.last_delivered_id.as_str());
        let start = match (delivered, after) {
            (Some(d), Some(a)) => Some(if entry_order(a) > entry_order(d) {
                a
            } else {
                d
            }),
            (d, a) => a.or(d),
        };
        let start = start.map_or("-".to_owned(), |id| format!("({id}"));
        let found: Value = redis::cmd("XRANGE")
            .arg(stream)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.commands())
            .await?;
        reply::entries(found)
    }

    /// The oldest `limit` messages of `destination` no worker has read yet.
    pub async fn list_waiting(
        &self,
        destination: &Destination,
        limit: usize,
    ) -> Result<Vec<Listed>> {
        self.list_waiting_after(destination, None, limit).await
    }

    /// As [`Broker::list_waiting`], after entry `after` (the last one of the previous page).
    pub async fn list_waiting_after(
        &self,
        destination: &Destination,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Listed>> {
        let stream = self.keys().stream(destination);
        let groups = self.queue_groups(&stream).await?;
        let unread = self.unread(&stream, &groups, after, limit).await?;
        Ok(unread.into_iter().map(listed).collect())
    }

    /// Up to `limit` messages of `destination` read by a worker and not yet settled.
    pub async fn list_running(
        &self,
        destination: &Destination,
        limit: usize,
    ) -> Result<Vec<Listed>> {
        let stream = self.keys().stream(destination);
        let pending: StreamPendingCountReply = match redis::cmd("XPENDING")
            .arg(&stream)
            .arg(QUEUE_GROUP)
            .arg("-")
            .arg("+")
            .arg(limit)
            .query_async(&mut self.commands())
            .await
        {
            Ok(pending) => pending,
            Err(e) if e.code() == Some("NOGROUP") => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut running = Vec::with_capacity(pending.ids.len());
        for held in pending.ids {
            let payload = self.entry_payload(destination, &held.id).await?;
            running.push(Listed {
                message: payload.as_deref().and_then(open_for_showing),
                entry_id: held.id,
                due_ms: None,
                consumer: Some(held.consumer),
            });
        }
        Ok(running)
    }

    /// The `limit` delayed (or retrying) messages of `destination` due first.
    pub async fn list_delayed(
        &self,
        destination: &Destination,
        limit: usize,
    ) -> Result<Vec<Listed>> {
        self.list_delayed_from(destination, 0, limit).await
    }

    /// As [`Broker::list_delayed`], skipping the `skip` due first (the next page of a listing).
    pub async fn list_delayed_from(
        &self,
        destination: &Destination,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<Listed>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let found: Vec<(Vec<u8>, u64)> = redis::cmd("ZRANGE")
            .arg(self.keys().delayed(destination))
            .arg(skip)
            .arg(skip + limit - 1)
            .arg("WITHSCORES")
            .query_async(&mut self.commands())
            .await?;
        Ok((found.into_iter())
            .map(|(payload, due)| Listed {
                entry_id: String::new(),
                message: open_for_showing(&payload),
                due_ms: Some(due),
                consumer: None,
            })
            .collect())
    }

    /// Deletes what waits in `destination` (never what runs), and its delayed messages too when
    /// `delayed`; returns how many of each went.
    pub async fn purge_waiting(
        &self,
        destination: &Destination,
        delayed: bool,
    ) -> Result<(u64, u64)> {
        let mut waiting = 0;
        loop {
            let deleted: u64 = PURGE_WAITING
                .key(self.keys().stream(destination))
                .arg(QUEUE_GROUP)
                .arg(PURGE_BATCH)
                .invoke_async(&mut self.commands())
                .await?;
            waiting += deleted;
            if deleted == 0 {
                break;
            }
        }
        let gone_delayed = match delayed {
            true => (self.delete_counted("ZCARD", &self.keys().delayed(destination))).await?,
            false => 0,
        };
        Ok((waiting, gone_delayed))
    }
}

fn listed(entry: reply::StreamEntry) -> Listed {
    let (entry_id, payload) = entry.into_message();
    Listed {
        message: payload.as_deref().and_then(open_for_showing),
        entry_id,
        due_ms: None,
        consumer: None,
    }
}

/// The message in `payload`, signed or not, without checking its signature.
fn open_for_showing(payload: &[u8]) -> Option<Message> {
    let bytes = crate::signing::unwrap_unchecked(payload).ok()?;
    Message::decode(&bytes).ok()
}

/// A stream entry id (`MS-SEQ`) as numbers, to compare two ids.
fn entry_order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}
