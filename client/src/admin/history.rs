//! Finding finished tasks: the history the recorder keeps (`broker/history.rs`), searched by
//! state, queue, task name, age and error text, newest first, a page at a time; and each
//! task's runs, failures and run times per minute.
//!
//! A history id whose record expired (a success nobody waits for is kept 30 s by default) is
//! not listed: the page counts them in `expired` so that views can say so.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{not_found, Admin};
use crate::broker::{TaskMinute, HISTORY_STATES};
use crate::{Destination, Error, Result, RunRecord, TaskState};

/// Ids read from each queue's history per step of a search.
const STEP: usize = 200;
/// Most ids one search reads before it stops and says where to go on.
const MOST_SCANNED: usize = 20_000;

/// What to look for (`stevedore tasks`, `/tasks`, `/api/tasks`).
#[derive(Debug, Clone)]
pub struct TaskQuery {
    /// The final state (`succeeded`, `failed`, `dead`, `cancelled`, `timed_out`, `expired`,
    /// `discarded`).
    pub state: TaskState,
    /// Only this queue (wire name); every queue when `None`.
    pub queue: Option<String>,
    /// Only tasks of this name.
    pub task: Option<String>,
    /// Only tasks that finished within this long before now.
    pub since: Option<Duration>,
    /// Only tasks whose error contains this text (case-insensitive).
    pub error: Option<String>,
    /// Only tasks that finished before this time (ms since the epoch): the page after a
    /// previous one (its [`TaskPage::next`]).
    pub before_ms: Option<u64>,
    /// At most this many rows.
    pub limit: usize,
}

impl TaskQuery {
    /// Tasks in `state`, 50 a page, no other filter.
    pub fn new(state: TaskState) -> Self {
        Self {
            state,
            queue: None,
            task: None,
            since: None,
            error: None,
            before_ms: None,
            limit: 50,
        }
    }
}

/// One finished task found.
#[derive(Debug, Clone)]
pub struct TaskRow {
    /// When it finished (ms since the epoch), as the history has it.
    pub finished_at: u64,
    /// Its current run (for a broadcast, one node's run in the state asked for).
    pub run: RunRecord,
}

/// One page of a search.
#[derive(Debug, Clone, Default)]
pub struct TaskPage {
    /// The tasks found, newest first.
    pub rows: Vec<TaskRow>,
    /// Ids in the history whose record expired, passed over.
    pub expired: usize,
    /// Where the next page starts (its `before_ms`), when there may be more.
    pub next: Option<u64>,
}

impl Admin {
    /// The finished tasks `query` asks for, newest first; [`Error::NotFound`] for an unknown
    /// queue, [`Error::InvalidOptions`] for a state the history does not keep.
    pub async fn tasks(&self, query: &TaskQuery) -> Result<TaskPage> {
        if !HISTORY_STATES.contains(&query.state) {
            return Err(Error::InvalidOptions(format!(
                "the history keeps finished tasks only: give a state of {}",
                HISTORY_STATES.map(|s| s.as_str()).join(", ")
            )));
        }
        let queues = self.history_queues(query.queue.as_deref()).await?;
        let since = (query.since).map_or(0, |d| {
            crate::now_ms().saturating_sub(d.as_millis().min(u64::MAX as u128) as u64)
        });
        let limit = query.limit.max(1);
        let mut page = TaskPage::default();
        let (mut before, mut scanned) = (query.before_ms.unwrap_or(u64::MAX), 0);
        while page.rows.len() < limit {
            let ids = self
                .newest_ids(&queues, query.state, (since, before))
                .await?;
            let Some(&(_, oldest)) = ids.last() else {
                page.next = None;
                return Ok(page);
            };
            scanned += ids.len();
            self.keep_matching(query, &ids, &mut page).await?;
            (before, page.next) = (oldest, Some(oldest));
            if scanned >= MOST_SCANNED {
                break;
            }
        }
        if page.rows.len() >= limit {
            // Rows that finished in the same ms as the last stay on this page: the next
            // starts before that ms.
            let edge = page.rows[limit - 1].finished_at;
            let keep = limit
                + (page.rows[limit..].iter())
                    .take_while(|r| r.finished_at == edge)
                    .count();
            page.rows.truncate(keep);
            page.next = Some(edge);
        }
        Ok(page)
    }

    /// Each task name's runs, failures and run times per minute over the last `minutes`,
    /// oldest minute first, and the sums over them per name.
    pub async fn task_minutes(&self, minutes: u64) -> Result<TaskMinutes> {
        let per_minute = self.broker().task_minutes(minutes).await?;
        let mut total: BTreeMap<String, TaskMinute> = BTreeMap::new();
        for (_, tasks) in &per_minute {
            for (name, counts) in tasks {
                total.entry(name.clone()).or_default().add(counts);
            }
        }
        Ok(TaskMinutes { per_minute, total })
    }

    async fn history_queues(&self, queue: Option<&str>) -> Result<Vec<Destination>> {
        match queue {
            Some(name) => Ok(vec![self.queue(name).await?.stats.destination]),
            None => Ok(self.broker().destinations().await?.into_iter().collect()),
        }
    }

    /// The next ids of every queue's history finished in `[since, before)`, newest first:
    /// every id finished after the newest time any queue may still hold more of (a queue
    /// that gave a full step), so that the next step, before the oldest id kept, skips none.
    /// Only when more than a step of one queue finished in one ms are some of them skipped.
    async fn newest_ids(
        &self,
        queues: &[Destination],
        state: TaskState,
        window: (u64, u64),
    ) -> Result<Vec<(String, u64)>> {
        let reads = queues
            .iter()
            .map(|q| self.broker().history(q, state, window, STEP));
        let per_queue = futures_util::future::try_join_all(reads).await?;
        let cutoff = (per_queue.iter())
            .filter(|ids| ids.len() >= STEP)
            .filter_map(|ids| ids.last().map(|(_, at)| *at))
            .max();
        let mut ids: Vec<(String, u64)> = per_queue.into_iter().flatten().collect();
        ids.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ids.dedup_by(|a, b| a.0 == b.0);
        if let Some(cutoff) = cutoff {
            if ids.iter().any(|(_, at)| *at > cutoff) {
                ids.retain(|(_, at)| *at > cutoff);
            }
        }
        Ok(ids)
    }

    /// Reads the records of `ids` and adds to `page` those that match `query`.
    async fn keep_matching(
        &self,
        query: &TaskQuery,
        ids: &[(String, u64)],
        page: &mut TaskPage,
    ) -> Result<()> {
        let names: Vec<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
        let records = self.broker().task_records(&names).await?;
        let error = query.error.as_deref().map(str::to_lowercase);
        for ((_, finished_at), record) in ids.iter().zip(records) {
            let Some(run) = record.runs.values().find(|r| r.state == query.state) else {
                page.expired += usize::from(record.runs.is_empty());
                continue;
            };
            let task_matches = query.task.as_deref().is_none_or(|t| t == run.task);
            let error_matches = error.as_deref().is_none_or(|e| {
                (run.error.as_deref()).is_some_and(|text| text.to_lowercase().contains(e))
            });
            if task_matches && error_matches {
                page.rows.push(TaskRow {
                    finished_at: *finished_at,
                    run: run.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Each task name's counts per minute ([`Admin::task_minutes`]).
#[derive(Debug, Clone, Default)]
pub struct TaskMinutes {
    /// (minute = ms since the epoch / 60,000, counts per task name), oldest first.
    pub per_minute: Vec<(u64, BTreeMap<String, TaskMinute>)>,
    /// The counts of every minute summed, per task name.
    pub total: BTreeMap<String, TaskMinute>,
}

/// [`Error::NotFound`] for a state name that is not a final state the history keeps.
pub fn history_state(name: &str) -> Result<TaskState> {
    TaskState::from_name(name)
        .filter(|s| HISTORY_STATES.contains(s))
        .ok_or_else(|| {
            not_found(
                "task state",
                name,
                &format!(
                    "give one of {}",
                    HISTORY_STATES.map(|s| s.as_str()).join(", ")
                ),
            )
        })
}
