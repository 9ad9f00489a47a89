//! Task records: what happened to a task, kept in Redis until their TTL runs out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Message;

/// The state of one run of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// No record yet: published and waiting, or never published, or the record expired.
    Pending,
    /// A worker is running it.
    Running,
    /// It returned a value.
    Succeeded,
    /// It returned an error or could not be run (unknown task, bad arguments).
    Failed,
    /// It was cancelled (before it started, or while it ran).
    Cancelled,
    /// It ran past its time limit and was stopped.
    TimedOut,
    /// An attempt failed; another is scheduled.
    Retrying,
    /// Every attempt failed; the message is in the dead letters.
    Dead,
    /// No worker started it before its `expires` time; it never ran.
    Expired,
    /// Dropped at publish time by its on_duplicate policy (a copy was queued or running).
    Discarded,
}

impl TaskState {
    /// Whether the task has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Running | Self::Retrying)
    }

    /// The state named `name` (as [`TaskState::as_str`] names it).
    pub fn from_name(name: &str) -> Option<Self> {
        const ALL: [TaskState; 10] = [
            TaskState::Pending,
            TaskState::Running,
            TaskState::Succeeded,
            TaskState::Failed,
            TaskState::Cancelled,
            TaskState::TimedOut,
            TaskState::Retrying,
            TaskState::Dead,
            TaskState::Expired,
            TaskState::Discarded,
        ];
        ALL.into_iter().find(|state| state.as_str() == name)
    }

    /// The lowercase name used in records, logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
            Self::Retrying => "retrying",
            Self::Dead => "dead",
            Self::Expired => "expired",
            Self::Discarded => "discarded",
        }
    }
}

/// One field of a run's stored (compact) form.
#[derive(Serialize)]
#[serde(untagged)]
enum Stored<'a> {
    Nil,
    Str(&'a str),
    Int(u64),
    Value(&'a rmpv::Value),
}

/// Which of a task's runs leave a record in Redis (`#[task(record = "...")]`,
/// [`PublishOptions::record`](crate::PublishOptions::record), message field `record`).
///
/// Like Celery's `ignore_result`: a task published by the million whose outcome nobody reads
/// need not leave a key per run. A task that keeps no record of its success cannot be waited
/// on; publishing it with `notify` is refused. A run that left no record is, when its node is
/// lost, queued again like one that never started (at-least-once): tasks that must not run
/// twice keep `All`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordPolicy {
    /// Every run is recorded: running, then its outcome (the default).
    #[default]
    All,
    /// Only runs that did not succeed (failed, retried, dead, timed out, cancelled, expired);
    /// a success is recorded only after a recorded failed attempt, to close that record.
    Failures,
    /// Nothing is recorded; dead letters still keep failed messages.
    None,
}

impl RecordPolicy {
    /// The lowercase name used in messages, options and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Failures => "failures",
            Self::None => "none",
        }
    }

    /// Whether a success is recorded (what a waiter needs).
    pub fn records_success(self) -> bool {
        self == Self::All
    }

    /// Whether `run` (its start or its end) leaves a record under this policy.
    pub fn records(self, run: &RunRecord) -> bool {
        match self {
            Self::All => true,
            Self::None => false,
            Self::Failures => match run.state {
                TaskState::Running => false,
                TaskState::Succeeded => run.attempt > 1,
                _ => true,
            },
        }
    }
}

impl std::str::FromStr for RecordPolicy {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "all" => Ok(Self::All),
            "failures" => Ok(Self::Failures),
            "none" => Ok(Self::None),
            _ => Err(crate::Error::InvalidOptions(format!(
                "record policy `{s}` is not one of all, failures, none"
            ))),
        }
    }
}

/// One run of a task on one node, stored MessagePack-encoded in the task's record hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The task id.
    pub id: String,
    /// The task name.
    pub task: String,
    /// Where it was published (`NAME`, `node:NAME` or `broadcast`).
    pub queue: String,
    /// The node that ran it.
    pub node: String,
    /// The state of this run.
    pub state: TaskState,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// When it was published (ms since the epoch).
    pub published_at: u64,
    /// When the run started (ms since the epoch).
    pub started_at: Option<u64>,
    /// When the run ended (ms since the epoch).
    pub finished_at: Option<u64>,
    /// The returned value, when it succeeded.
    pub result: Option<rmpv::Value>,
    /// The error, when it failed.
    pub error: Option<String>,
    /// When the next attempt is due (ms since the epoch), while retrying.
    #[serde(default)]
    pub retry_at: Option<u64>,
}

impl RunRecord {
    /// The record of a run of `message` on `node` that is about to start: state `running`,
    /// attempt `tried + 1`, no times, result or error yet.
    pub fn starting(message: &Message, node: &str) -> Self {
        Self {
            id: message.id.clone(),
            task: message.task.clone(),
            queue: message.queue.clone(),
            node: node.to_owned(),
            state: TaskState::Running,
            attempt: message.attempt(),
            published_at: message.published_at,
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
            retry_at: None,
        }
    }

    /// Encodes the run for storage in its compact form (docs/protocol.md, section 3): a
    /// MessagePack array in field order without the id (the key holds it), start and end as
    /// milliseconds after publication, trailing nils left out. A no-op success fits Redis's
    /// small-hash encoding (values up to 64 bytes), half the memory of the named map.
    pub fn encode(&self) -> crate::Result<Vec<u8>> {
        let after = |at: Option<u64>| {
            at.map_or(Stored::Nil, |at| {
                Stored::Int(at.saturating_sub(self.published_at))
            })
        };
        let mut fields = vec![
            Stored::Str(&self.task),
            Stored::Str(&self.queue),
            Stored::Str(&self.node),
            Stored::Str(self.state.as_str()),
            Stored::Int(u64::from(self.attempt)),
            Stored::Int(self.published_at),
            after(self.started_at),
            after(self.finished_at),
            // A nil result (a task returning nothing) is stored as no result: the same on
            // reading, and trailing nils are left out (docs/protocol.md, section 3).
            (self.result.as_ref())
                .filter(|v| !v.is_nil())
                .map_or(Stored::Nil, Stored::Value),
            self.error.as_deref().map_or(Stored::Nil, Stored::Str),
            self.retry_at.map_or(Stored::Nil, Stored::Int),
        ];
        while matches!(fields.last(), Some(Stored::Nil)) {
            fields.pop();
        }
        rmp_serde::to_vec(&fields).map_err(|e| crate::Error::Encode {
            what: format!("record of task {}", self.id),
            reason: e.to_string(),
        })
    }

    /// Decodes a stored run of task `id`: the compact array, or the named map records were
    /// stored as before (still read, for records written by older workers).
    pub fn decode(id: &str, bytes: &[u8]) -> crate::Result<Self> {
        let bad = |reason: String| crate::Error::Decode {
            what: "task record".into(),
            reason,
        };
        let value = rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| bad(e.to_string()))?;
        let rmpv::Value::Array(fields) = value else {
            return rmp_serde::from_slice(bytes).map_err(|e| bad(e.to_string()));
        };
        let mut fields = fields.into_iter();
        let mut next = || fields.next().unwrap_or(rmpv::Value::Nil);
        let text = |v: rmpv::Value, what: &str| match v {
            rmpv::Value::String(s) => s
                .into_str()
                .ok_or_else(|| bad(format!("{what} is not UTF-8"))),
            _ => Err(bad(format!("{what} is not a string"))),
        };
        let int = |v: &rmpv::Value| v.as_u64();
        let (task, queue, node) = (
            text(next(), "task")?,
            text(next(), "queue")?,
            text(next(), "node")?,
        );
        let state = text(next(), "state")?;
        let state = TaskState::from_name(&state)
            .ok_or_else(|| bad(format!("`{state}` is not a task state")))?;
        let attempt = int(&next()).and_then(|n| u32::try_from(n).ok());
        let published_at =
            int(&next()).ok_or_else(|| bad("published_at is not a number".into()))?;
        let after = |v: rmpv::Value| int(&v).map(|ms| published_at.saturating_add(ms));
        let (started_at, finished_at) = (after(next()), after(next()));
        let result = Some(next()).filter(|v| !v.is_nil());
        let error = Some(next())
            .filter(|v| !v.is_nil())
            .map(|v| text(v, "error"))
            .transpose()?;
        Ok(Self {
            id: id.to_owned(),
            task,
            queue,
            node,
            state,
            attempt: attempt.ok_or_else(|| bad("attempt is not a number".into()))?,
            published_at,
            started_at,
            finished_at,
            result,
            error,
            retry_at: int(&next()),
        })
    }
}

/// Where in its task's record hash a run is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordField {
    /// A queued task's run: field `task`.
    Task,
    /// One node's run of a broadcast: field `node:NODE`.
    Broadcast,
    /// A run that ended after peers had declared its process lost and settled it: field
    /// `late:NODE`, kept apart, not over their verdict.
    Late,
}

impl RecordField {
    /// Where the runs of `message` are recorded: per node for a broadcast (also when a node
    /// retries it from its own queue), else in the task's one field.
    pub fn of(message: &Message) -> Self {
        if message.is_broadcast() {
            Self::Broadcast
        } else {
            Self::Task
        }
    }

    /// The hash field of a run on `node`.
    pub fn name(self, node: &str) -> String {
        match self {
            Self::Task => TaskRecord::TASK_FIELD.to_owned(),
            Self::Broadcast => TaskRecord::broadcast_field(node),
            Self::Late => TaskRecord::late_field(node),
        }
    }
}

/// Everything known about a task id: its current run (one per node for a broadcast), and the
/// earlier attempts of a retried task.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskRecord {
    /// Current runs keyed by their record field: `task` for a queued task, `node:NAME` for a broadcast.
    pub runs: BTreeMap<String, RunRecord>,
    /// Every attempt of a task that was retried, by attempt number.
    pub attempts: BTreeMap<u32, RunRecord>,
    /// Runs finished by a process after peers had declared it lost and settled its work.
    pub late: BTreeMap<String, RunRecord>,
    /// Fields whose value does not decode, each with why: one damaged field hides nothing
    /// else of the record.
    pub unreadable: BTreeMap<String, String>,
    /// The workflow the task is a step of, once a run of it ended.
    pub workflow: Option<String>,
}

impl TaskRecord {
    /// The hash field of a queued task's run.
    pub const TASK_FIELD: &'static str = "task";

    /// The hash field of a run that `node` finished after it had been declared lost.
    pub fn late_field(node: &str) -> String {
        format!("late:{node}")
    }

    /// The hash field of attempt `n` of a retried task.
    pub fn attempt_field(n: u32) -> String {
        format!("attempt:{n}")
    }

    /// Builds the record from its hash fields.
    pub fn from_fields(fields: impl IntoIterator<Item = (String, RunRecord)>) -> Self {
        let mut record = Self::default();
        for (field, run) in fields {
            if let Some(n) = field.strip_prefix("attempt:").and_then(|n| n.parse().ok()) {
                record.attempts.insert(n, run);
            } else if field.starts_with("late:") {
                record.late.insert(field, run);
            } else {
                record.runs.insert(field, run);
            }
        }
        record
    }

    /// The hash field of one node's run of a broadcast.
    pub fn broadcast_field(node: &str) -> String {
        format!("node:{node}")
    }

    /// The state of the task as a whole: its run's state; for a broadcast, `running` while any
    /// node runs it, else the first of `failed`, `timed_out`, `cancelled` that any run has, else
    /// `succeeded`; `pending` without runs.
    pub fn state(&self) -> TaskState {
        let states: Vec<TaskState> = self.runs.values().map(|r| r.state).collect();
        let precedence = [
            TaskState::Running,
            TaskState::Retrying,
            TaskState::Dead,
            TaskState::Failed,
            TaskState::TimedOut,
            TaskState::Cancelled,
            TaskState::Expired,
            TaskState::Discarded,
            TaskState::Succeeded,
        ];
        precedence
            .into_iter()
            .find(|state| states.contains(state))
            .unwrap_or(TaskState::Pending)
    }

    /// The run of a queued task (not a broadcast), if recorded.
    pub fn task_run(&self) -> Option<&RunRecord> {
        self.runs.get(Self::TASK_FIELD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> RunRecord {
        RunRecord {
            id: "0b9e5f8a-3c1d-4e2f-9a7b-6c5d4e3f2a1b".into(),
            task: "noop".into(),
            queue: "default".into(),
            node: "web-7f9c4".into(),
            state: TaskState::Succeeded,
            attempt: 1,
            published_at: 1_790_000_000_000,
            started_at: Some(1_790_000_000_003),
            finished_at: Some(1_790_000_000_004),
            result: None,
            error: None,
            retry_at: None,
        }
    }

    #[test]
    fn a_no_op_success_is_stored_in_at_most_64_bytes_and_read_back_whole() {
        let bytes = run().encode().unwrap();
        assert!(
            bytes.len() <= 64,
            "{} bytes: past Redis's small-hash limit",
            bytes.len()
        );
        assert_eq!(RunRecord::decode(&run().id, &bytes).unwrap(), run());
    }

    #[test]
    fn trailing_nils_are_left_out_a_nil_result_too() {
        let unit = RunRecord {
            result: Some(rmpv::Value::Nil),
            ..run()
        };
        let fields = |bytes: Vec<u8>| match rmpv::decode::read_value(&mut &bytes[..]).unwrap() {
            rmpv::Value::Array(fields) => fields.len(),
            other => panic!("not an array: {other}"),
        };
        assert_eq!(fields(unit.encode().unwrap()), 8, "up to finished_at");
        let running = RunRecord {
            state: TaskState::Running,
            finished_at: None,
            ..run()
        };
        assert_eq!(fields(running.encode().unwrap()), 7, "up to started_at");
    }

    #[test]
    fn every_field_survives_the_compact_form_and_the_old_named_map_still_reads() {
        let full = RunRecord {
            state: TaskState::Retrying,
            attempt: 3,
            result: Some(rmpv::Value::from(vec![rmpv::Value::from(1), "two".into()])),
            error: Some("it broke".into()),
            retry_at: Some(1_790_000_009_000),
            ..run()
        };
        let bytes = full.encode().unwrap();
        assert_eq!(RunRecord::decode(&full.id, &bytes).unwrap(), full);
        let named = rmp_serde::to_vec_named(&full).unwrap();
        assert_eq!(RunRecord::decode("ignored", &named).unwrap(), full);
        let started = RunRecord {
            state: TaskState::Running,
            finished_at: None,
            ..run()
        };
        let bytes = started.encode().unwrap();
        assert_eq!(RunRecord::decode(&started.id, &bytes).unwrap(), started);
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\x93\xa1a",
            b"\x96\xa1a\xa1b\xa1c\xa2no\x01\x00",
            b"\xc1",
        ] {
            assert!(RunRecord::decode("x", bytes).is_err(), "{bytes:?}");
        }
    }
}
