//! The task event stream (`NS:{e}:events`): what happened to tasks, for outside monitors.
//!
//! 1. Off by default. With `BrokerConfig::events` (`worker --events`, `STEVEDORE_EVENTS=1`
//!    for any binary or app), writers add one entry per event to one capped stream, in the
//!    round trip they make anyway: a publish adds `published` (or `discarded`), the worker's
//!    recorder adds `started` and each outcome, the reaper adds `lost`.
//! 2. An entry is flat text fields: `event`, `id` (the task id), `task`, `queue`, `at` (ms
//!    since the epoch), and when known `node`, `attempt`, `runtime_ms`, `retry_at`. Never the
//!    arguments, the result or the error text (the task's record has those).
//! 3. The stream is capped near [`EVENTS_CAP`] entries (`XADD MAXLEN ~`): the newest events,
//!    never an unbounded store. Events are at least once: a write retried after a dropped
//!    connection may add one twice.
//! 4. [`Broker::recent_events`] and [`Broker::events_after`] read it back
//!    (`stevedore events [--follow]`).

use std::time::Duration;

use redis::Value;

use super::{reply, Broker, Connection};
use crate::{Message, Result, RunRecord, TaskState};

/// About how many events the stream keeps (the newest).
pub const EVENTS_CAP: u64 = 100_000;

/// One task event read from the stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskEvent {
    /// The stream entry id (`MS-SEQ`): where `--follow` resumes.
    #[serde(rename = "entry")]
    pub entry_id: String,
    /// published, discarded, started, progress, succeeded, failed, retried, dead, cancelled,
    /// timed_out, expired or lost.
    pub event: String,
    /// The task id.
    pub id: String,
    /// The task name.
    pub task: String,
    /// The queue's wire name.
    pub queue: String,
    /// When it happened (ms since the epoch).
    pub at: u64,
    /// The node of a run event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The attempt of a run event, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// How long a finished run ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_ms: Option<u64>,
    /// When a retried task runs again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<u64>,
    /// A progress event's units done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<u64>,
    /// A progress event's units in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// The event name of a run in `state` (`running` is `started`, `retrying` is `retried`).
pub fn run_event(state: TaskState) -> &'static str {
    match state {
        TaskState::Running => "started",
        TaskState::Retrying => "retried",
        state => state.as_str(),
    }
}

impl Broker {
    /// Whether this broker writes events.
    pub fn writes_events(&self) -> bool {
        self.config().events
    }

    /// Adds to `pipe` the event `event` of `message` (published or discarded), now.
    pub(super) fn add_message_event(
        &self,
        pipe: &mut redis::Pipeline,
        event: &str,
        message: &Message,
    ) {
        let at = crate::now_ms().to_string();
        let fields = [
            ("event", event),
            ("id", &message.id),
            ("task", &message.task),
            ("queue", &message.queue),
            ("at", &at),
        ];
        self.add_event(pipe, &fields);
    }

    /// Adds to `pipe` the event of `run` in its current state (started, an outcome).
    pub fn add_run_event(&self, pipe: &mut redis::Pipeline, run: &RunRecord) {
        self.add_run_event_as(pipe, run_event(run.state), run);
    }

    /// Adds to `pipe` event `event` of `run` (`lost`: the reaper's verdict, whatever state the
    /// record then takes).
    pub fn add_run_event_as(&self, pipe: &mut redis::Pipeline, event: &str, run: &RunRecord) {
        let at = run
            .finished_at
            .or(run.started_at)
            .unwrap_or_else(crate::now_ms);
        let (at, attempt) = (at.to_string(), run.attempt.to_string());
        let runtime = (run.started_at.zip(run.finished_at)).map(|(s, f)| f.saturating_sub(s));
        let runtime = runtime.map(|r| r.to_string());
        let retry_at = run.retry_at.map(|r| r.to_string());
        let mut fields = vec![
            ("event", event),
            ("id", &run.id),
            ("task", &run.task),
            ("queue", &run.queue),
            ("at", &at),
            ("node", &run.node),
            ("attempt", &attempt),
        ];
        if let Some(runtime) = &runtime {
            fields.push(("runtime_ms", runtime));
        }
        if let Some(retry_at) = &retry_at {
            fields.push(("retry_at", retry_at));
        }
        self.add_event(pipe, &fields);
    }

    pub(super) fn add_event(&self, pipe: &mut redis::Pipeline, fields: &[(&str, &str)]) {
        pipe.cmd("XADD")
            .arg(self.keys().events())
            .arg("MAXLEN")
            .arg("~")
            .arg(EVENTS_CAP)
            .arg("*")
            .arg(fields)
            .ignore();
    }

    /// The newest `count` events, oldest first.
    pub async fn recent_events(&self, count: usize) -> Result<Vec<TaskEvent>> {
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(self.keys().events())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.commands())
            .await?;
        let mut events = parse(reply::entries(reply)?);
        events.reverse();
        Ok(events)
    }

    /// The events after entry `after` (`$`: only new ones), waiting up to `block` for one on
    /// `conn` (a dedicated connection: this blocks).
    pub async fn events_after(
        &self,
        conn: &mut Connection,
        after: &str,
        block: Duration,
    ) -> Result<Vec<TaskEvent>> {
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(self.keys().events())
            .arg(after)
            .query_async(conn)
            .await?;
        let entries = reply::streams(reply)?.into_iter().flat_map(|(_, e)| e);
        Ok(parse(entries))
    }
}

/// The events among `entries`; an entry that is not one (written by something else) is
/// skipped.
fn parse(entries: impl IntoIterator<Item = reply::StreamEntry>) -> Vec<TaskEvent> {
    entries.into_iter().filter_map(event_of).collect()
}

fn event_of(mut entry: reply::StreamEntry) -> Option<TaskEvent> {
    let mut text = |name: &str| String::from_utf8(entry.take(name)?).ok();
    fn number<T: std::str::FromStr>(value: Option<String>) -> Option<T> {
        value.and_then(|v| v.parse().ok())
    }
    Some(TaskEvent {
        event: text("event")?,
        id: text("id")?,
        task: text("task")?,
        queue: text("queue")?,
        at: number(text("at"))?,
        node: text("node"),
        attempt: number(text("attempt")),
        runtime_ms: number(text("runtime_ms")),
        retry_at: number(text("retry_at")),
        done: number(text("done")),
        total: number(text("total")),
        entry_id: entry.id,
    })
}
