//! Finding a task that has no record yet: waiting in a stream, delayed, or rejected into the
//! dead letters on arrival. For `stevedore task ID`; each place is read in pages, up to a bound.

use redis::Value;

use super::{reply, Broker};
use crate::{Destination, Message, Result};

/// Entries read per round trip.
const PAGE: usize = 1000;
/// Most entries looked at per stream or set.
const LOOKED_AT: usize = 100_000;

/// Where a task without a record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whereabouts {
    /// Waiting in `queue`'s stream (or read and not yet recorded).
    Waiting(Destination),
    /// In `queue`'s delayed set, due at `due_ms`.
    Delayed(Destination, u64),
    /// Dead-lettered on arrival (bytes that did not open, a bad signature), with the reason.
    Rejected(Destination, String),
}

impl Broker {
    /// Where task `id` is, when it has no record: looked for in every queue's stream, delayed
    /// set and dead letters (the newest 100,000 entries of each at most). `None`: nowhere.
    pub async fn find_task(&self, id: &str) -> Result<Option<Whereabouts>> {
        for queue in self.queues().await? {
            let destination = queue.destination;
            if self
                .in_stream(&self.keys().stream(&destination), id)
                .await?
            {
                return Ok(Some(Whereabouts::Waiting(destination)));
            }
            if let Some(due) = self.in_delayed(&destination, id).await? {
                return Ok(Some(Whereabouts::Delayed(destination, due)));
            }
            if let Some(reason) = self.in_dead_letters(&destination, id).await? {
                return Ok(Some(Whereabouts::Rejected(destination, reason)));
            }
        }
        Ok(None)
    }

    /// Whether a message of `stream` (newest first) has task id `id`.
    async fn in_stream(&self, stream: &str, id: &str) -> Result<bool> {
        Ok(self.stream_entry_with(stream, id).await?.is_some())
    }

    /// The fields of the newest entry of `stream` whose message (field `m`, or `raw` of a dead
    /// letter) has task id `id`.
    async fn stream_entry_with(
        &self,
        stream: &str,
        id: &str,
    ) -> Result<Option<reply::StreamEntry>> {
        let mut end = "+".to_owned();
        for _ in 0..LOOKED_AT / PAGE {
            let found: Value = redis::cmd("XREVRANGE")
                .arg(stream)
                .arg(&end)
                .arg("-")
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut self.commands())
                .await?;
            let entries = reply::entries(found)?;
            let Some(last) = entries.last() else {
                return Ok(None);
            };
            end = format!("({}", last.id);
            for mut entry in entries {
                let payload = entry.take("m").or_else(|| entry.take("raw"));
                if payload.is_some_and(|p| message_id(&p).as_deref() == Some(id)) {
                    return Ok(Some(entry));
                }
            }
        }
        Ok(None)
    }

    async fn in_delayed(&self, destination: &Destination, id: &str) -> Result<Option<u64>> {
        let key = self.keys().delayed(destination);
        for page in 0..LOOKED_AT / PAGE {
            let found: Vec<(Vec<u8>, u64)> = redis::cmd("ZRANGE")
                .arg(&key)
                .arg(page * PAGE)
                .arg((page + 1) * PAGE - 1)
                .arg("WITHSCORES")
                .query_async(&mut self.commands())
                .await?;
            if let Some((_, due)) =
                (found.iter()).find(|(p, _)| message_id(p).as_deref() == Some(id))
            {
                return Ok(Some(*due));
            }
            if found.len() < PAGE {
                break;
            }
        }
        Ok(None)
    }

    async fn in_dead_letters(&self, destination: &Destination, id: &str) -> Result<Option<String>> {
        let dead = self.keys().dead_letters(destination);
        let entry = self.stream_entry_with(&dead, id).await?;
        Ok(entry.map(|mut entry| {
            let reason = entry.take("reason").unwrap_or_default();
            String::from_utf8_lossy(&reason).into_owned()
        }))
    }
}

/// The task id inside a payload, signed or not, without checking anything.
fn message_id(payload: &[u8]) -> Option<String> {
    let bytes = crate::signing::unwrap_unchecked(payload).ok()?;
    Message::decode(&bytes).ok().map(|m| m.id)
}
