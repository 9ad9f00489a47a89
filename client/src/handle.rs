//! [`TaskHandle`]: a published task, typed by what its task returns.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! #[stevedore::task]
//! async fn add(a: i64, b: i64) -> i64 {
//!     a + b
//! }
//!
//! async fn sum(client: &stevedore::Client) -> stevedore::Result<i64> {
//!     let handle = add::delay(client, 2, 3).await?; // a TaskHandle<i64>
//!     handle.get(Duration::from_secs(30)).await
//! }
//! # fn main() {}
//! ```

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::{Client, Error, Result, RunRecord, TaskRecord, TaskState};

/// The longest pause between two reads of a record when waiting on a task published without
/// `notify`.
pub const POLL_AT_MOST: Duration = Duration::from_millis(500);

/// How a task ended when it did not succeed: what [`TaskHandle::get`] returns as
/// [`Error::Task`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task {id} {} (attempt {attempt}): {message}", state.as_str())]
pub struct TaskFailure {
    /// The task id.
    pub id: String,
    /// `failed`, `dead`, `cancelled`, `timed_out`, `expired` or `discarded` (a run lost with
    /// its node is `failed`, its message saying so).
    pub state: TaskState,
    /// The error recorded.
    pub message: String,
    /// The attempt that ended so (1 for the first).
    pub attempt: u32,
}

impl TaskFailure {
    fn of(id: &str, run: &RunRecord) -> Self {
        Self {
            id: id.to_owned(),
            state: run.state,
            message: run
                .error
                .clone()
                .unwrap_or_else(|| "no error recorded".into()),
            attempt: run.attempt,
        }
    }
}

/// A published task: its id, and a way to wait for its outcome. `T` is what the task returns
/// when it succeeds (the stubs `#[task]` generates give it); an untyped handle decodes into
/// any MessagePack value. The type carries through, so a result cannot be taken as another:
///
/// ```compile_fail
/// # async fn run(handle: stevedore::TaskHandle<i64>) {
/// let text: String = handle.get(std::time::Duration::from_secs(1)).await.unwrap();
/// # }
/// ```
pub struct TaskHandle<T = rmpv::Value> {
    id: String,
    client: Client,
    /// Whether it was published with `notify`; `None` for a handle rebuilt from an id.
    notify: Option<bool>,
    discarded: bool,
    /// The record policy it was published with (`All` for a handle rebuilt from an id).
    policy: crate::RecordPolicy,
    result: PhantomData<fn() -> T>,
}

impl<T> TaskHandle<T> {
    /// The task's latest progress report (`ctx.set_progress` in the task), `None` when it
    /// made none (or it was not kept: reports last a day).
    pub async fn progress(&self) -> Result<Option<crate::Progress>> {
        self.client.real("read a task's progress")?;
        match self.client.is_fake() {
            true => Ok(None), // an inline run's reports are not kept
            false => self.client.broker().progress(&self.id).await,
        }
    }
}

impl<T> Clone for TaskHandle<T> {
    fn clone(&self) -> Self {
        Self::new(&self.client, self.id.clone(), self.notify, self.discarded).keeping(self.policy)
    }
}

impl<T> std::fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.id)
            .field("notify", &self.notify)
            .field("discarded", &self.discarded)
            .field("result", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T> TaskHandle<T> {
    pub(crate) fn new(client: &Client, id: String, notify: Option<bool>, discarded: bool) -> Self {
        Self {
            id,
            client: client.clone(),
            notify,
            discarded,
            policy: crate::RecordPolicy::All,
            result: PhantomData,
        }
    }

    /// The same handle, for a task published with record `policy`.
    pub(crate) fn keeping(mut self, policy: crate::RecordPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The same handle, decoding results into `U`.
    pub fn typed<U>(self) -> TaskHandle<U> {
        TaskHandle::new(&self.client, self.id, self.notify, self.discarded).keeping(self.policy)
    }

    /// The task id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the message was dropped at publish time as a duplicate (on_duplicate `discard`
    /// or `queue_one`): then it will never run.
    pub fn discarded(&self) -> bool {
        self.discarded
    }

    /// The task's current record, as stored (every run and attempt, results undecoded).
    pub async fn record(&self) -> Result<TaskRecord> {
        self.client.task(&self.id).await
    }

    /// Waits until the task has ended and returns its record. A task published with
    /// [`PublishOptions::notify`](crate::PublishOptions::notify) wakes the waiter at once (no polling); any other is looked
    /// at with a growing pause (10 ms, doubling, at most [`POLL_AT_MOST`]): one short read
    /// each time, so a handle that waits on a task that is not `notify` costs a few reads,
    /// not a failure.
    ///
    /// A task published with a record policy that keeps no record of its success (`none`,
    /// `failures`) cannot be waited on: the error says so at once.
    pub async fn wait(&self, timeout: Duration) -> Result<TaskRecord> {
        self.client.real("wait for a task")?;
        if let Some(record) = self.client.inline_record(&self.id) {
            return Ok(record); // it ran when it was published
        }
        if !self.policy.records_success() {
            return Err(Error::InvalidOptions(format!(
                "task {} was published with record `{}`: no record of its success is kept, so it cannot be waited on; publish it with record `all` to wait",
                self.id,
                self.policy.as_str()
            )));
        }
        let started = Instant::now();
        let record = self.record().await?;
        if record.state().is_final() {
            return Ok(record);
        }
        if self.notify == Some(true) {
            if self.client.broker().wait_done(&self.id, timeout).await? {
                return self.record().await;
            }
        } else if let Some(record) = self.poll_until_final(started + timeout).await? {
            return Ok(record);
        }
        Err(Error::Timeout {
            id: self.id.clone(),
            waited_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Reads the record with a growing pause until it is final (`None` at `deadline`).
    async fn poll_until_final(&self, deadline: Instant) -> Result<Option<TaskRecord>> {
        let mut pause = Duration::from_millis(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self.notify {
                // Not published with notify: nothing will wake us.
                Some(false) => tokio::time::sleep(pause.min(left)).await,
                // Rebuilt from an id: a token, if the task was published with notify, ends
                // the pause at once.
                _ => {
                    (self.client.broker())
                        .wait_done(&self.id, pause.min(left))
                        .await?;
                }
            }
            let record = self.record().await?;
            if record.state().is_final() {
                return Ok(Some(record));
            }
            pause = (pause * 2).min(POLL_AT_MOST);
        }
    }

    /// For a broadcast: waits until each of `nodes` has a final run (or `timeout` passed) and
    /// returns the record as it is then; the caller compares its runs with `nodes`. The first
    /// end wakes it as [`TaskHandle::wait`] does; later ones are looked for every 50 ms.
    pub async fn wait_for_nodes(&self, nodes: &[String], timeout: Duration) -> Result<TaskRecord> {
        let deadline = Instant::now() + timeout;
        let all_ended = |record: &TaskRecord| {
            nodes.iter().all(|node| {
                (record.runs.get(&TaskRecord::broadcast_field(node)))
                    .is_some_and(|run| run.state.is_final())
            })
        };
        match self.wait(timeout).await {
            Err(Error::Timeout { .. }) => return self.record().await,
            other => other?,
        };
        loop {
            let record = self.record().await?;
            if all_ended(&record) || Instant::now() >= deadline {
                return Ok(record);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl<T: DeserializeOwned> TaskHandle<T> {
    /// Waits until the task has ended and returns its result decoded into `T`:
    /// [`Error::Task`] when it ended otherwise (failed, dead, cancelled, timed out, expired,
    /// discarded), [`Error::Timeout`] when it has not ended within `timeout`.
    pub async fn get(&self, timeout: Duration) -> Result<T> {
        let record = self.wait(timeout).await?;
        let run = (record.task_run())
            .or_else(|| record.runs.values().next())
            .ok_or_else(|| Error::Timeout {
                id: self.id.clone(),
                waited_ms: timeout.as_millis() as u64,
            })?;
        Ok(self.outcome(run)??)
    }

    /// For a broadcast: waits until every node in `nodes` (e.g. those live when it was
    /// published: [`Client::live_nodes`]) has ended its run, and returns each node's outcome;
    /// a node with no outcome by `timeout` is left out.
    pub async fn get_all(
        &self,
        nodes: &[String],
        timeout: Duration,
    ) -> Result<BTreeMap<String, std::result::Result<T, TaskFailure>>> {
        let record = self.wait_for_nodes(nodes, timeout).await?;
        let mut outcomes = BTreeMap::new();
        for node in nodes {
            let field = TaskRecord::broadcast_field(node);
            let Some(run) = record.runs.get(&field).filter(|r| r.state.is_final()) else {
                continue;
            };
            outcomes.insert(node.clone(), self.outcome(run)?);
        }
        Ok(outcomes)
    }

    /// The decoded result of a finished `run`, or how it failed; a result that does not
    /// decode into `T` is an error of the call, not of the task.
    fn outcome(&self, run: &RunRecord) -> Result<std::result::Result<T, TaskFailure>> {
        if run.state != TaskState::Succeeded {
            return Ok(Err(TaskFailure::of(&self.id, run)));
        }
        let value = run.result.clone().unwrap_or(rmpv::Value::Nil);
        let decoded = rmpv::ext::from_value(value).map_err(|e| Error::Decode {
            what: format!(
                "result of task {} as {}",
                self.id,
                std::any::type_name::<T>()
            ),
            reason: e.to_string(),
        })?;
        Ok(Ok(decoded))
    }
}
