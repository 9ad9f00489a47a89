//! Runs settled per minute, cluster-wide, for the dashboard's throughput chart, and each
//! queue's depth per minute:
//!
//! 1. The recorder adds each batch's settled runs to the counter of the current minute
//!    (`NS:{m}:done:MINUTE`, MINUTE = ms since the epoch / 60,000), in the batch's own round
//!    trip: two commands per batch, however many runs it holds.
//! 2. Once a minute, each worker's heartbeat samples the queues it reads into
//!    `NS:{m}:queues:MINUTE` (field = queue, value = `WAITING:OLDEST_AGE_MS`; one HSET: the
//!    last sample of the minute wins, and every worker reading a queue sees the same).
//! 3. Both expire after [`KEPT`]: nothing grows.
//! 4. [`Broker::throughput`] and [`Broker::queue_minutes`] read the last minutes in one round
//!    trip each (one slot: `{m}`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::Broker;
use crate::{Destination, Result};

/// One queue's sample of a minute: tasks waiting, and how long the oldest had waited (ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueSample {
    /// Tasks waiting (not yet read by a worker).
    pub waiting: u64,
    /// How long the oldest waiting task had waited, ms (0 when none waited).
    pub oldest_age_ms: u64,
}

/// How long a minute's counter is kept.
pub const KEPT: Duration = Duration::from_secs(2 * 3600);

/// The last `minutes` minute numbers (ms since the epoch / 60,000), oldest first, the
/// current (partial) one last.
pub(super) fn last_minutes(minutes: u64) -> Vec<u64> {
    let now = crate::now_ms() / 60_000;
    (now.saturating_sub(minutes.saturating_sub(1))..=now).collect()
}

impl Broker {
    /// The hash of each minute of `span` (named by `key_of`), in one round trip.
    pub(super) async fn minute_hashes<V: redis::FromRedisValue>(
        &self,
        span: &[u64],
        key_of: impl Fn(u64) -> String,
    ) -> Result<Vec<BTreeMap<String, V>>> {
        let mut pipe = redis::pipe();
        for minute in span {
            pipe.cmd("HGETALL").arg(key_of(*minute));
        }
        Ok(pipe.query_async(&mut self.commands()).await?)
    }

    /// Adds to `pipe` `runs` settled now.
    pub(super) fn add_settled_count(&self, pipe: &mut redis::Pipeline, runs: usize) {
        let key = self.keys().done_in_minute(crate::now_ms() / 60_000);
        pipe.cmd("INCRBY").arg(&key).arg(runs).ignore();
        pipe.cmd("EXPIRE").arg(&key).arg(KEPT.as_secs()).ignore();
    }

    /// Runs settled in each of the last `minutes` minutes, oldest first, the current (partial)
    /// minute last; with the minute each count is for (ms since the epoch / 60,000).
    pub async fn throughput(&self, minutes: u64) -> Result<Vec<(u64, u64)>> {
        let span = last_minutes(minutes);
        let keys: Vec<String> = span
            .iter()
            .map(|m| self.keys().done_in_minute(*m))
            .collect();
        let counts: Vec<Option<u64>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.commands())
            .await?;
        Ok(span
            .into_iter()
            .zip(counts)
            .map(|(minute, count)| (minute, count.unwrap_or(0)))
            .collect())
    }

    /// Samples `queues` (wire names) now into the current minute's hash (one round trip for
    /// the reads of each queue, one for the write).
    pub async fn sample_queues(&self, queues: &[String]) -> Result<()> {
        let now = crate::now_ms();
        let mut pipe = redis::pipe();
        let key = self.keys().queue_minute(now / 60_000);
        for name in queues {
            let Ok(destination) = Destination::from_wire_name(name) else {
                continue;
            };
            let info = self.queue_info(destination).await?;
            let age = info
                .oldest_waiting_at
                .map_or(0, |at| now.saturating_sub(at));
            let value = format!("{}:{age}", info.waiting);
            pipe.cmd("HSET").arg(&key).arg(name).arg(value).ignore();
        }
        pipe.cmd("EXPIRE").arg(&key).arg(KEPT.as_secs()).ignore();
        pipe.query_async::<()>(&mut self.commands()).await?;
        Ok(())
    }

    /// Each queue's sample in each of the last `minutes` minutes, oldest first (a minute
    /// nobody sampled has none), with the minute each is for.
    pub async fn queue_minutes(
        &self,
        minutes: u64,
    ) -> Result<Vec<(u64, BTreeMap<String, QueueSample>)>> {
        let span = last_minutes(minutes);
        let hashes: Vec<BTreeMap<String, String>> =
            (self.minute_hashes(&span, |m| self.keys().queue_minute(m))).await?;
        let parse = |value: &str| {
            let (waiting, age) = value.split_once(':')?;
            Some(QueueSample {
                waiting: waiting.parse().ok()?,
                oldest_age_ms: age.parse().ok()?,
            })
        };
        Ok(span
            .into_iter()
            .zip(hashes)
            .map(|(minute, hash)| {
                let samples = (hash.iter())
                    .filter_map(|(queue, value)| Some((queue.clone(), parse(value)?)))
                    .collect();
                (minute, samples)
            })
            .collect())
    }
}
