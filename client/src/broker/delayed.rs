//! Delayed messages: kept in a sorted set per queue and moved to the stream when due.

use futures_util::StreamExt;

use super::scripts::{DEFER, MOVE_DUE};
use super::Broker;
use crate::{Destination, Result};

/// What one pass of [`Broker::move_due`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveDue {
    /// Messages moved to the stream.
    pub moved: u64,
    /// When the next delayed message is due (ms since the epoch), if any.
    pub next_due_ms: Option<u64>,
}

impl Broker {
    /// Moves up to `limit` messages of `destination` that are due at `now_ms` to its stream.
    pub async fn move_due(
        &self,
        destination: &Destination,
        now_ms: u64,
        limit: usize,
    ) -> Result<MoveDue> {
        let cap = match destination {
            Destination::Broadcast => self.config().broadcast_cap,
            _ => 0,
        };
        let (moved, next): (u64, i64) = MOVE_DUE
            .key(self.keys().delayed(destination))
            .key(self.keys().stream(destination))
            .arg(now_ms)
            .arg(limit)
            .arg(cap)
            .invoke_async(&mut self.commands())
            .await?;
        Ok(MoveDue {
            moved,
            next_due_ms: u64::try_from(next).ok(),
        })
    }

    /// Moves entry `entry_id` of `destination` (read by `group`, its bytes `payload`) to the
    /// delayed set until `due_ms`: a message that arrived before its `eta` (a producer that
    /// wrote it to the stream directly). The forwarders are woken.
    pub async fn defer(
        &self,
        destination: &Destination,
        group: &str,
        entry_id: &str,
        due_ms: u64,
        payload: &[u8],
    ) -> Result<()> {
        DEFER
            .key(self.keys().stream(destination))
            .key(self.keys().delayed(destination))
            .arg(group)
            .arg(entry_id)
            .arg(due_ms)
            .arg(payload)
            .invoke_async::<i64>(&mut self.commands())
            .await?;
        let mut wake = redis::pipe();
        self.add_wake(&mut wake, due_ms);
        wake.query_async::<()>(&mut self.commands()).await?;
        Ok(())
    }

    /// A stream of wake-up hints (due times in ms) published when delayed messages are added;
    /// it ends when the subscription's connection drops.
    pub async fn delayed_wakeups(&self) -> Result<impl futures_util::Stream<Item = u64> + Send> {
        let mut pubsub = self.inner.deployment.pubsub().await?;
        pubsub.subscribe(self.keys().delayed_wake()).await?;
        Ok(pubsub
            .into_on_message()
            .filter_map(|message| async move { message.get_payload::<u64>().ok() }))
    }

    /// Messages waiting in `destination`'s delayed set.
    pub async fn delayed_len(&self, destination: &Destination) -> Result<u64> {
        Ok(redis::cmd("ZCARD")
            .arg(self.keys().delayed(destination))
            .query_async(&mut self.commands())
            .await?)
    }
}
