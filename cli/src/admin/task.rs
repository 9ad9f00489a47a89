//! `stevedore task ID [--json]`: everything known about a task: its runs (one per node for a
//! broadcast), every earlier attempt and every late run; without a record, where it is
//! (waiting, delayed, rejected into the dead letters) or that it is unknown (exit 3).

use std::process::ExitCode;

use clap::Args;
use stevedore::broker::Whereabouts;
use stevedore::{Client, RunRecord, TaskRecord};

use super::format::{timestamp, value_to_json};

#[derive(Debug, Args)]
pub struct TaskArgs {
    /// The task id (a UUID).
    id: String,
    /// Print JSON: `id`, `state`, `runs`, `attempts` and `late` (lists of runs), and `where`
    /// for a task without a record (`{"queue", "as": "waiting"|"delayed"|"rejected", ...}`).
    #[arg(long)]
    json: bool,
}

/// The exit code of `task` for an id nobody knows.
const UNKNOWN: u8 = 3;

pub async fn run(client: &Client, args: TaskArgs) -> anyhow::Result<ExitCode> {
    let id = uuid::Uuid::parse_str(&args.id)
        .map_err(|_| anyhow::anyhow!("`{}` is not a task id (a UUID)", args.id.escape_debug()))?
        .hyphenated()
        .to_string();
    let record = client.task(&id).await?;
    let found = match record.runs.is_empty() && record.attempts.is_empty() {
        true => client.broker().find_task(&id).await?,
        false => None,
    };
    let state = state_of(&record, found.as_ref());
    if args.json {
        say!("{}", record_json(&id, state, &record, found.as_ref()));
    } else {
        print_record(&id, state, &record, found.as_ref())?;
    }
    Ok(match state {
        "unknown" => ExitCode::from(UNKNOWN),
        _ => ExitCode::SUCCESS,
    })
}

/// The task's state: its record's, else where it was found, else `unknown`.
fn state_of(record: &TaskRecord, found: Option<&Whereabouts>) -> &'static str {
    if !record.runs.is_empty() || !record.attempts.is_empty() {
        return record.state().as_str();
    }
    match found {
        Some(Whereabouts::Waiting(_) | Whereabouts::Delayed(..)) => "pending",
        Some(Whereabouts::Rejected(..)) => "rejected",
        None => "unknown",
    }
}

fn where_json(found: &Whereabouts) -> serde_json::Value {
    match found {
        Whereabouts::Waiting(q) => serde_json::json!({"queue": q.wire_name(), "as": "waiting"}),
        Whereabouts::Delayed(q, due) => {
            serde_json::json!({"queue": q.wire_name(), "as": "delayed", "due_at": due})
        }
        Whereabouts::Rejected(q, reason) => {
            serde_json::json!({"queue": q.wire_name(), "as": "rejected", "reason": reason})
        }
    }
}

fn record_json(
    id: &str,
    state: &str,
    record: &TaskRecord,
    found: Option<&Whereabouts>,
) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "state": state,
        "runs": record.runs.values().collect::<Vec<_>>(),
        "attempts": record.attempts.values().collect::<Vec<_>>(),
        "late": record.late.values().collect::<Vec<_>>(),
        "where": found.map(where_json),
    })
}

fn print_record(
    id: &str,
    state: &str,
    record: &TaskRecord,
    found: Option<&Whereabouts>,
) -> std::io::Result<()> {
    say!("id:        {id}");
    say!("state:     {state}");
    match found {
        Some(Whereabouts::Waiting(q)) => say!("           waiting in queue {q}, not started"),
        Some(Whereabouts::Delayed(q, due)) => {
            say!("           delayed in queue {q} until {}", timestamp(*due))
        }
        Some(Whereabouts::Rejected(q, reason)) => {
            say!("           dead-lettered on arrival in queue {q}: {reason}")
        }
        None if state == "unknown" => {
            say!("           no record, and not in any queue, delayed set or dead letters")
        }
        None => {}
    }
    for run in record.runs.values() {
        print_run("", run)?;
    }
    let current: Vec<u32> = record.runs.values().map(|r| r.attempt).collect();
    for run in (record.attempts.values()).filter(|r| !current.contains(&r.attempt)) {
        print_run("earlier ", run)?;
    }
    for run in record.late.values() {
        print_run("late ", run)?;
    }
    Ok(())
}

fn print_run(kind: &str, run: &RunRecord) -> std::io::Result<()> {
    let time = |t: Option<u64>| t.map(timestamp).unwrap_or_else(|| "-".into());
    say!("");
    say!("task:      {}", run.task);
    say!("queue:     {}", run.queue);
    say!("node:      {}", run.node);
    say!(
        "run:       {kind}{} (attempt {})",
        run.state.as_str(),
        run.attempt
    );
    say!("published: {}", timestamp(run.published_at));
    say!("started:   {}", time(run.started_at));
    say!("finished:  {}", time(run.finished_at));
    if let Some(result) = &run.result {
        say!("result:    {}", value_to_json(result));
    }
    if let Some(error) = &run.error {
        say!("error:     {error}");
    }
    Ok(())
}
