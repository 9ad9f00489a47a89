//! `stevedore queue show QUEUE [--state ...] [--limit N] [--show-args] [--json]` (a queue's
//! tasks by state) and `stevedore queue purge QUEUE [--delayed] [--json]` (what waits, never
//! what runs).
//!
//! `show --json` prints an array of `{"state", "id", "task", "attempt", "published_at", "eta",
//! "entry", "consumer", "due_at", "reason"}` (`args` and `kwargs` too with `--show-args`);
//! `purge --json` prints `{"queue", "waiting", "delayed"}` (how many were deleted).

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use stevedore::admin::format::{printable, timestamp};
use stevedore::admin::Admin;
use stevedore::admin::Listed;

use super::format::value_to_json;

/// Which tasks `queue show` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum State {
    /// Not read by any worker yet.
    Waiting,
    /// Read by a worker and not settled.
    Running,
    /// Delayed, or waiting for a retry's backoff.
    Delayed,
    /// In the dead letters.
    Dead,
}

/// `queue show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The queue (`NAME` or `node:NAME`).
    queue: String,
    /// Only tasks in this state (default: every state).
    #[arg(long, value_enum)]
    state: Option<State>,
    /// Most tasks listed per state.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Show the arguments too (they may hold secrets).
    #[arg(long)]
    show_args: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `queue purge`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// The queue (`NAME` or `node:NAME`).
    queue: String,
    /// Also delete its delayed messages (and retries waiting for their backoff).
    #[arg(long)]
    delayed: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `queue show`.
pub async fn show(admin: &Admin, args: ShowArgs) -> anyhow::Result<ExitCode> {
    let queue = admin.listable_queue(&args.queue).await?;
    let states = match args.state {
        Some(state) => vec![state],
        None => vec![State::Running, State::Waiting, State::Delayed, State::Dead],
    };
    let mut rows = Vec::new();
    for state in states {
        let no_reason = |listed: Vec<Listed>| listed.into_iter().map(|l| (l, None)).collect();
        let listed: Vec<(Listed, Option<String>)> = match state {
            State::Waiting => no_reason(admin.waiting(&queue, None, args.limit).await?),
            State::Running => no_reason(admin.running(&queue, args.limit).await?),
            State::Delayed => no_reason(admin.delayed(&queue, 0, args.limit).await?),
            State::Dead => (admin.dead_tasks(&queue, args.limit).await?.into_iter())
                .map(|(listed, reason)| (listed, Some(reason)))
                .collect(),
        };
        rows.extend(
            listed
                .into_iter()
                .map(|(l, reason)| row(state, &l, reason, args.show_args)),
        );
    }
    if args.json {
        say!("{}", serde_json::Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "{:<8} {:<36} {:<28} {:>7} {:<24} ETA/DUE",
        "STATE",
        "ID",
        "TASK",
        "ATTEMPT",
        "PUBLISHED"
    );
    for r in &rows {
        let time = |v: &serde_json::Value| v.as_u64().map_or_else(|| "-".to_owned(), timestamp);
        let text = |v: &serde_json::Value| printable(v.as_str().unwrap_or("-")).into_owned();
        let attempt = r["attempt"]
            .as_u64()
            .map_or_else(|| "-".to_owned(), |a| a.to_string());
        let when = if r["due_at"].is_null() {
            &r["eta"]
        } else {
            &r["due_at"]
        };
        say!(
            "{:<8} {:<36} {:<28} {:>7} {:<24} {}",
            text(&r["state"]),
            text(&r["id"]),
            text(&r["task"]),
            attempt,
            time(&r["published_at"]),
            time(when)
        );
        if args.show_args {
            say!("         args {} kwargs {}", r["args"], r["kwargs"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn row(
    state: State,
    listed: &Listed,
    reason: Option<String>,
    show_args: bool,
) -> serde_json::Value {
    let m = listed.message.as_ref();
    let mut row = serde_json::json!({
        "state": format!("{state:?}").to_lowercase(),
        "id": m.map(|m| &m.id), "task": m.map(|m| &m.task), "attempt": m.map(|m| m.tried + 1),
        "published_at": m.map(|m| m.published_at), "eta": m.and_then(|m| m.eta),
        "entry": (!listed.entry_id.is_empty()).then_some(&listed.entry_id),
        "consumer": listed.consumer, "due_at": listed.due_ms, "reason": reason,
    });
    if let (true, Some(m)) = (show_args, m) {
        row["args"] = serde_json::from_str(&value_to_json(&rmpv::Value::Array(m.args.clone())))
            .unwrap_or_default();
        row["kwargs"] = serde_json::to_value(&m.kwargs).unwrap_or_default();
    }
    row
}

/// `queue purge`.
pub async fn purge(admin: &Admin, args: PurgeArgs) -> anyhow::Result<ExitCode> {
    let (waiting, delayed) = admin.purge_queue(&args.queue, args.delayed).await?;
    let queue = &args.queue;
    if args.json {
        say!(
            "{}",
            serde_json::json!({"queue": queue, "waiting": waiting, "delayed": delayed})
        );
    } else if args.delayed {
        say!("purged {waiting} waiting and {delayed} delayed task(s) of {queue}");
    } else {
        say!("purged {waiting} waiting task(s) of {queue}");
    }
    Ok(ExitCode::SUCCESS)
}
