//! The history of finished runs and the per-minute rollup of each task, both written in the
//! recorder's batch (no round trip of their own), both bounded.
//!
//! 1. **History** (`NS:{TAG}:history:STATE`, a sorted set per queue and final state: task id
//!    -> when it finished, ms): the recorder adds every run that ended for good with a
//!    record, one ZADD per queue and state in the batch, then trims the set to its newest
//!    `cap` ids (ZREMRANGEBYRANK) and sets its expiry to the record retention: a set nobody
//!    writes to vanishes with the records it points at. [`Broker::history`] reads it newest
//!    first, across queues.
//! 2. **Task minutes** (`NS:{m}:tasks:MINUTE`, a hash per minute): for each task name, runs
//!    ended (`NAME\truns`), successes (`NAME\tsucceeded`), failures (`NAME\tfailed`: failed,
//!    timed out or dead),
//!    and how long they ran, counted in buckets (`NAME\tb:I`, [`RUN_TIME_BUCKETS_MS`]); one
//!    HINCRBY per distinct field in the batch, kept for [`super::throughput::KEPT`].
//!    [`Broker::task_minutes`] reads the last minutes in one round trip.

use std::collections::BTreeMap;
use std::time::Duration;

use super::throughput::KEPT;
use super::Broker;
use crate::{Destination, Result, RunRecord, TaskState};

/// The final states the history indexes, in the order the operator API lists them.
pub const HISTORY_STATES: [TaskState; 7] = [
    TaskState::Succeeded,
    TaskState::Failed,
    TaskState::Dead,
    TaskState::Cancelled,
    TaskState::TimedOut,
    TaskState::Expired,
    TaskState::Discarded,
];

/// How many ids the history keeps per queue and state unless the worker says otherwise
/// (`worker --history`).
pub const DEFAULT_HISTORY: usize = 10_000;

/// Upper bounds (ms, inclusive) of the run-time buckets of the task minutes; a run longer
/// than the last counts in one more bucket (index `RUN_TIME_BUCKETS_MS.len()`).
pub const RUN_TIME_BUCKETS_MS: [u64; 18] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000,
    900_000, 3_600_000,
];

/// One task name's runs in one minute (or summed over several).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskMinute {
    /// Runs that ended.
    pub runs: u64,
    /// Those that succeeded.
    pub succeeded: u64,
    /// Those that failed, timed out or died.
    pub failed: u64,
    /// Runs per run-time bucket ([`RUN_TIME_BUCKETS_MS`], then one for longer runs).
    pub buckets: Vec<u64>,
}

impl TaskMinute {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &TaskMinute) {
        self.runs += other.runs;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
    }

    /// The run time (the upper bound of its bucket, ms) that the fraction `q` (0..=1) of
    /// the runs did not exceed; `None` without runs in buckets. A run longer than the last
    /// bound reports `u64::MAX`.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let wanted = ((total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return Some(RUN_TIME_BUCKETS_MS.get(index).copied().unwrap_or(u64::MAX));
            }
        }
        Some(u64::MAX)
    }
}

/// The bucket of a run that took `ms`.
fn bucket_of(ms: u64) -> usize {
    RUN_TIME_BUCKETS_MS
        .iter()
        .position(|bound| ms <= *bound)
        .unwrap_or(RUN_TIME_BUCKETS_MS.len())
}

/// Whether a run in `state` counts as a failure in the task minutes.
fn is_failure(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::Failed | TaskState::TimedOut | TaskState::Dead
    )
}

impl Broker {
    /// Adds to `pipe` the history entries of `runs` (those in a final state; others are
    /// skipped), keeping `cap` ids per queue and state; the sets expire after `ttl`. Nothing
    /// when `cap` is 0.
    pub(super) fn add_history<'r>(
        &self,
        pipe: &mut redis::Pipeline,
        runs: impl Iterator<Item = &'r RunRecord>,
        cap: usize,
        ttl: Duration,
    ) {
        if cap == 0 {
            return;
        }
        let mut by_set: BTreeMap<(&str, &str), Vec<(u64, &str)>> = BTreeMap::new();
        for run in runs.filter(|r| HISTORY_STATES.contains(&r.state)) {
            let at = run.finished_at.unwrap_or_else(crate::now_ms);
            let set = by_set
                .entry((run.queue.as_str(), run.state.as_str()))
                .or_default();
            set.push((at, run.id.as_str()));
        }
        for ((queue, state), members) in by_set {
            let Ok(destination) = Destination::from_wire_name(queue) else {
                continue;
            };
            let key = self.keys().history(&destination, state);
            pipe.cmd("ZADD").arg(&key).arg(members).ignore();
            let keep_from = -(cap.min(i64::MAX as usize) as i64) - 1;
            (pipe.cmd("ZREMRANGEBYRANK").arg(&key).arg(0).arg(keep_from)).ignore();
            (pipe.cmd("PEXPIRE").arg(&key).arg(ttl.as_millis() as u64)).ignore();
        }
    }

    /// Adds to `pipe` the task-minute counts of `runs` that ended (final state), in the
    /// hash of the current minute.
    pub(super) fn add_task_minutes<'r>(
        &self,
        pipe: &mut redis::Pipeline,
        runs: impl Iterator<Item = &'r RunRecord>,
    ) {
        // Counted per task name first: a few fields per name and batch, not per run.
        let mut counts: BTreeMap<&str, TaskMinute> = BTreeMap::new();
        for run in runs.filter(|r| r.state.is_final()) {
            let minute = counts.entry(run.task.as_str()).or_default();
            minute.runs += 1;
            if is_failure(run.state) {
                minute.failed += 1;
            } else if run.state == TaskState::Succeeded {
                minute.succeeded += 1;
            }
            if let (Some(start), Some(end)) = (run.started_at, run.finished_at) {
                let bucket = bucket_of(end.saturating_sub(start));
                if minute.buckets.len() <= bucket {
                    minute.buckets.resize(bucket + 1, 0);
                }
                minute.buckets[bucket] += 1;
            }
        }
        if counts.is_empty() {
            return;
        }
        let key = self.keys().task_minute(crate::now_ms() / 60_000);
        for (task, minute) in counts {
            let totals = [
                ("runs", minute.runs),
                ("succeeded", minute.succeeded),
                ("failed", minute.failed),
            ];
            let buckets = (minute.buckets.iter().enumerate()).map(|(i, n)| (format!("b:{i}"), *n));
            let fields = (totals.into_iter().map(|(f, n)| (f.to_owned(), n))).chain(buckets);
            for (field, n) in fields.filter(|(_, n)| *n > 0) {
                pipe.cmd("HINCRBY")
                    .arg(&key)
                    .arg(format!("{task}\t{field}"))
                    .arg(n)
                    .ignore();
            }
        }
        pipe.cmd("EXPIRE").arg(&key).arg(KEPT.as_secs()).ignore();
    }

    /// Each task name's counts in each of the last `minutes` minutes, oldest first (the
    /// current, partial minute last), with the minute each is for.
    pub async fn task_minutes(
        &self,
        minutes: u64,
    ) -> Result<Vec<(u64, BTreeMap<String, TaskMinute>)>> {
        let span = super::throughput::last_minutes(minutes);
        let hashes: Vec<BTreeMap<String, u64>> =
            (self.minute_hashes(&span, |m| self.keys().task_minute(m))).await?;
        Ok(span
            .into_iter()
            .zip(hashes)
            .map(|(m, h)| (m, parse_minute(h)))
            .collect())
    }

    /// Up to `limit` ids of queue `destination`'s history in `state`, newest first, that
    /// finished in `[since_ms, before_ms)`; each with when it finished (ms).
    pub async fn history(
        &self,
        destination: &Destination,
        state: TaskState,
        (since_ms, before_ms): (u64, u64),
        limit: usize,
    ) -> Result<Vec<(String, u64)>> {
        let rows: Vec<(String, f64)> = redis::cmd("ZREVRANGEBYSCORE")
            .arg(self.keys().history(destination, state.as_str()))
            .arg(format!("({before_ms}"))
            .arg(since_ms)
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.commands())
            .await?;
        Ok(rows.into_iter().map(|(id, at)| (id, at as u64)).collect())
    }

    /// How many ids queue `destination`'s history holds in `state`.
    pub async fn history_len(&self, destination: &Destination, state: TaskState) -> Result<u64> {
        Ok(redis::cmd("ZCARD")
            .arg(self.keys().history(destination, state.as_str()))
            .query_async(&mut self.commands())
            .await?)
    }
}

/// One minute's hash as counts per task name (fields that do not parse are left out).
fn parse_minute(hash: BTreeMap<String, u64>) -> BTreeMap<String, TaskMinute> {
    let mut tasks: BTreeMap<String, TaskMinute> = BTreeMap::new();
    for (field, n) in hash {
        let Some((task, what)) = field.rsplit_once('\t') else {
            continue;
        };
        let minute = tasks.entry(task.to_owned()).or_default();
        match what {
            "runs" => minute.runs += n,
            "succeeded" => minute.succeeded += n,
            "failed" => minute.failed += n,
            _ => {
                let Some(index) = what
                    .strip_prefix("b:")
                    .and_then(|i| i.parse::<usize>().ok())
                else {
                    continue;
                };
                if index <= RUN_TIME_BUCKETS_MS.len() {
                    if minute.buckets.len() <= index {
                        minute.buckets.resize(index + 1, 0);
                    }
                    minute.buckets[index] += n;
                }
            }
        }
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_times_fall_in_the_bucket_of_their_upper_bound() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 0);
        assert_eq!(bucket_of(2), 1);
        assert_eq!(bucket_of(3), 2);
        assert_eq!(bucket_of(3_600_000), RUN_TIME_BUCKETS_MS.len() - 1);
        assert_eq!(bucket_of(3_600_001), RUN_TIME_BUCKETS_MS.len());
    }

    #[test]
    fn quantiles_are_the_bound_of_the_bucket_that_reaches_them() {
        let minute = TaskMinute {
            buckets: vec![90, 0, 0, 10],
            ..TaskMinute::default()
        };
        assert_eq!(minute.quantile_ms(0.5), Some(1));
        assert_eq!(minute.quantile_ms(0.9), Some(1));
        assert_eq!(minute.quantile_ms(0.95), Some(10));
        assert_eq!(TaskMinute::default().quantile_ms(0.5), None);
    }

    #[test]
    fn a_minute_hash_parses_per_task_and_skips_what_is_not_its_shape() {
        let hash = BTreeMap::from([
            ("a\truns".to_owned(), 3),
            ("a\tfailed".to_owned(), 1),
            ("a\tb:2".to_owned(), 3),
            ("with\ttab\truns".to_owned(), 1),
            ("a\tb:99".to_owned(), 5),
            ("junk".to_owned(), 7),
        ]);
        let tasks = parse_minute(hash);
        assert_eq!(tasks["a"].runs, 3);
        assert_eq!(tasks["a"].failed, 1);
        assert_eq!(tasks["a"].buckets, vec![0, 0, 3]);
        assert_eq!(tasks["with\ttab"].runs, 1);
        assert_eq!(tasks.len(), 2);
    }
}
