//! The JSON shapes of the operator API (docs/protocol.md, section 11), built in one place:
//! the command line's `--json` and the dashboard's `/api/...` print the same objects.

use serde_json::{json, Value};

use super::{DeadLetter, LimitInfo, QueueView, TaskMinutes, TaskPage, TaskView, Whereabouts};
use crate::Message;

/// A queue (`queues --json` row, `/api/queues`).
pub fn queue(q: &QueueView, now: u64) -> Value {
    let s = &q.stats;
    json!({
        "queue": q.name(), "waiting": s.waiting, "running": s.running, "delayed": s.delayed,
        "dead": s.dead, "paused": q.paused, "consumers": s.consumers, "length": s.length,
        "oldest_waiting_at": s.oldest_waiting_at, "oldest_waiting_age_ms": q.oldest_age_ms(now),
    })
}

/// A task (`task --json`, `/api/tasks/ID`).
pub fn task(task: &TaskView) -> Value {
    let record = &task.record;
    json!({
        "id": task.id,
        "state": task.state,
        "runs": record.runs.values().collect::<Vec<_>>(),
        "attempts": record.attempts.values().collect::<Vec<_>>(),
        "late": record.late.values().collect::<Vec<_>>(),
        "where": task.whereabouts.as_ref().map(whereabouts),
        "unreadable": record.unreadable,
        "progress": task.progress,
        "log": task.log,
        "workflow": record.workflow,
    })
}

/// Where a task without a record is.
fn whereabouts(found: &Whereabouts) -> Value {
    match found {
        Whereabouts::Waiting(q) => json!({"queue": q.wire_name(), "as": "waiting"}),
        Whereabouts::Delayed(q, due) => {
            json!({"queue": q.wire_name(), "as": "delayed", "due_at": due})
        }
        Whereabouts::Rejected(q, reason) => {
            json!({"queue": q.wire_name(), "as": "rejected", "reason": reason})
        }
    }
}

/// A limit (`limit list|show --json` row, `/api/limits`).
pub fn limit(info: &LimitInfo) -> Value {
    let rate = info.spec.rate;
    json!({
        "name": info.name,
        "rate": rate.map(|r| r.to_string()),
        "count": rate.map(|r| r.count), "per_ms": rate.map(|r| r.per_ms),
        "burst": rate.map(|r| r.burst),
        "concurrency": info.spec.concurrency,
        "held": info.held, "waiting": info.waiting,
    })
}

/// A dead letter (`dead list|show --json`).
pub fn dead_letter(letter: &DeadLetter) -> Value {
    let message = crate::signing::unwrap_unchecked(&letter.raw)
        .ok()
        .and_then(|raw| Message::decode(&raw).ok())
        .map(|m| {
            json!({"id": m.id, "task": m.task, "queue": m.queue, "tried": m.tried,
            "args": m.args, "kwargs": m.kwargs, "published_at": m.published_at})
        });
    json!({
        "entry": letter.entry_id,
        "queue": letter.destination.wire_name(),
        "dead_at": letter.dead_at,
        "reason": letter.reason,
        "id": letter.id,
        "task": letter.task,
        "attempts": letter.attempts,
        "message": message,
        "raw_bytes": letter.raw.len(),
    })
}

/// A page of finished tasks (`tasks --json`, `/api/tasks`): `{"tasks": [{"id", "task",
/// "queue", "node", "state", "attempt", "published_at", "started_at", "finished_at",
/// "error"}], "expired", "next"}`.
pub fn task_page(page: &TaskPage) -> Value {
    let rows: Vec<Value> = (page.rows.iter())
        .map(|row| {
            let run = &row.run;
            json!({
                "id": run.id, "task": run.task, "queue": run.queue, "node": run.node,
                "state": run.state.as_str(), "attempt": run.attempt,
                "published_at": run.published_at, "started_at": run.started_at,
                "finished_at": row.finished_at, "error": run.error,
            })
        })
        .collect();
    json!({"tasks": rows, "expired": page.expired, "next": page.next})
}

/// Each task's runs over the last minutes (`/api/metrics/tasks`): `{"minutes", "tasks":
/// [{"task", "runs", "failed", "p50_ms", "p95_ms"}]}`, p50/p95 as the upper bound of their
/// run-time bucket (null without runs; a run past the last bucket is 3600001).
pub fn task_minutes(minutes: &TaskMinutes) -> Value {
    let rows: Vec<Value> = (minutes.total.iter())
        .map(|(name, counts)| {
            let quantile = |q| counts.quantile_ms(q).map(|ms| ms.min(3_600_001));
            json!({
                "task": name, "runs": counts.runs, "failed": counts.failed,
                "p50_ms": quantile(0.5), "p95_ms": quantile(0.95),
            })
        })
        .collect();
    json!({"minutes": minutes.per_minute.len(), "tasks": rows})
}

/// The cluster at a glance (`/api/overview`): `{"queues": [QUEUE], "nodes": [NODE],
/// "beat_leader", "throughput": [{"minute", "runs"}], "schedule_runs": {"fired", "missed",
/// "failed"}}`, QUEUE and NODE as in `queues --json` and `nodes --json`.
pub fn overview(overview: &super::Overview, now: u64) -> Value {
    let queues: Vec<Value> = overview.queues.iter().map(|q| queue(q, now)).collect();
    let throughput: Vec<Value> = (overview.throughput.iter())
        .map(|(minute, runs)| json!({"minute": minute, "runs": runs}))
        .collect();
    let runs: serde_json::Map<String, Value> = (overview.schedule_runs.iter())
        .map(|(name, n)| ((*name).to_owned(), json!(n)))
        .collect();
    json!({
        "queues": queues,
        "nodes": overview.nodes,
        "beat_leader": overview.beat_leader,
        "throughput": throughput,
        "schedule_runs": runs,
    })
}

/// Each queue's depth per minute (`/api/metrics/queues`): `{"minutes": [{"minute",
/// "queues": {QUEUE: {"waiting", "oldest_age_ms"}}}]}`, oldest minute first.
pub fn queue_minutes(minutes: &[super::QueueMinutes]) -> Value {
    let rows: Vec<Value> = (minutes.iter())
        .map(|(minute, queues)| {
            let queues: serde_json::Map<String, Value> = (queues.iter())
                .map(|(name, s)| {
                    let sample = json!({"waiting": s.waiting, "oldest_age_ms": s.oldest_age_ms});
                    (name.clone(), sample)
                })
                .collect();
            json!({"minute": minute, "queues": queues})
        })
        .collect();
    json!({ "minutes": rows })
}
