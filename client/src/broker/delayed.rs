//! Delayed messages: kept in a sorted set per queue and moved to the stream when due.

use futures_util::StreamExt;

use super::scripts::{resend_refused, Sending, DEFER, MOVE_DUE};
use super::Broker;
use crate::{Destination, Result};

/// What one queue's move in [`Broker::move_due_all`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveDue {
    /// Messages moved to the stream.
    pub moved: u64,
    /// When the next delayed message is due (ms since the epoch), if any.
    pub next_due_ms: Option<u64>,
}

impl Broker {
    /// Moves up to `limit` due messages of each of `destinations` to its stream, all in one
    /// round trip (one pipeline; split per slot on a cluster), and returns each queue's result
    /// in order. The calls go by the script's SHA; those Redis refuses as NOSCRIPT (a restarted
    /// server) did not run and go again by body. A queue whose call fails (its delayed set
    /// damaged by hand) has its error in its place and holds back none of the others.
    pub async fn move_due_all(
        &self,
        destinations: &[&Destination],
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Result<MoveDue>>> {
        let all: Vec<usize> = (0..destinations.len()).collect();
        let sent = self
            .move_due_pipeline(destinations, &all, (now_ms, limit), Sending::Sha)
            .await?;
        let replies = resend_refused(sent, |refused| async move {
            self.move_due_pipeline(destinations, &refused, (now_ms, limit), Sending::Body)
                .await
        })
        .await?;
        Ok(replies
            .into_iter()
            .map(|reply| {
                let (moved, next): (u64, i64) =
                    redis::from_redis_value(reply?).map_err(redis::RedisError::from)?;
                Ok(MoveDue {
                    moved,
                    next_due_ms: u64::try_from(next).ok(),
                })
            })
            .collect())
    }

    /// Sends the move script for `destinations[at]` of every `at` in `which`, in one pipeline.
    async fn move_due_pipeline(
        &self,
        destinations: &[&Destination],
        which: &[usize],
        (now_ms, limit): (u64, usize),
        sending: Sending,
    ) -> Result<Vec<redis::RedisResult<redis::Value>>> {
        let mut pipe = redis::pipe();
        for &at in which {
            let destination = destinations[at];
            let keys = [
                self.keys().delayed(destination),
                self.keys().stream(destination),
            ];
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            MOVE_DUE
                .send_in(&mut pipe, &keys, sending)
                .arg(now_ms)
                .arg(limit)
                .arg(self.stream_cap(destination));
        }
        pipe.ignore_errors();
        Ok(pipe.query_async(&mut self.commands()).await?)
    }

    /// The approximate MAXLEN of `destination`'s stream, 0 for none (broadcasts are capped).
    fn stream_cap(&self, destination: &Destination) -> u64 {
        match destination {
            Destination::Broadcast => self.config().broadcast_cap,
            _ => 0,
        }
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
