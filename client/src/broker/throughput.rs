//! Runs settled per minute, cluster-wide, for the dashboard's throughput chart:
//!
//! 1. The recorder adds each batch's settled runs to the counter of the current minute
//!    (`NS:{m}:done:MINUTE`, MINUTE = ms since the epoch / 60,000), in the batch's own round
//!    trip: two commands per batch, however many runs it holds.
//! 2. Counters expire after [`KEPT`]: nothing grows.
//! 3. [`Broker::throughput`] reads the last minutes in one round trip (one slot: `{m}`).

use std::time::Duration;

use super::Broker;
use crate::Result;

/// How long a minute's counter is kept.
pub const KEPT: Duration = Duration::from_secs(2 * 3600);

impl Broker {
    /// Adds to `pipe` `runs` settled now.
    pub(super) fn add_settled_count(&self, pipe: &mut redis::Pipeline, runs: usize) {
        let key = self.keys().done_in_minute(crate::now_ms() / 60_000);
        pipe.cmd("INCRBY").arg(&key).arg(runs).ignore();
        pipe.cmd("EXPIRE").arg(&key).arg(KEPT.as_secs()).ignore();
    }

    /// Runs settled in each of the last `minutes` minutes, oldest first, the current (partial)
    /// minute last; with the minute each count is for (ms since the epoch / 60,000).
    pub async fn throughput(&self, minutes: u64) -> Result<Vec<(u64, u64)>> {
        let now = crate::now_ms() / 60_000;
        let span: Vec<u64> = (now.saturating_sub(minutes.saturating_sub(1))..=now).collect();
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
}
