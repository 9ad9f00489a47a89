//! `stevedore queues [--json]`: per queue, what waits, runs, is delayed (or waiting to retry)
//! and is dead-lettered, whether it is paused, its consumers, and how long its oldest waiting
//! task has waited.

use std::process::ExitCode;

use clap::Args;
use stevedore::{Client, QueueStats};

#[derive(Debug, Args)]
pub struct QueuesArgs {
    /// Print JSON: one object per queue with `queue`, `waiting`, `running`, `delayed`,
    /// `dead`, `paused`, `consumers`, `length`, `oldest_waiting_at` (ms or null) and
    /// `oldest_waiting_age_ms` (or null).
    #[arg(long)]
    json: bool,
}

pub async fn run(client: &Client, args: QueuesArgs) -> anyhow::Result<ExitCode> {
    let queues = client.queues().await?;
    let paused = client.broker().paused_queues().await?;
    let is_paused = |q: &QueueStats| paused.contains(&q.destination.wire_name());
    let now = stevedore::now_ms();
    let age = |q: &QueueStats| q.oldest_waiting_at.map(|at| now.saturating_sub(at));
    if args.json {
        let rows: Vec<_> = queues
            .iter()
            .map(|q| {
                serde_json::json!({
                    "queue": q.destination.wire_name(),
                    "waiting": q.waiting,
                    "running": q.running,
                    "delayed": q.delayed,
                    "dead": q.dead,
                    "paused": is_paused(q),
                    "consumers": q.consumers,
                    "length": q.length,
                    "oldest_waiting_at": q.oldest_waiting_at,
                    "oldest_waiting_age_ms": age(q),
                })
            })
            .collect();
        say!("{}", serde_json::Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    let width = (queues.iter())
        .map(|q| q.destination.wire_name().len())
        .max()
        .unwrap_or(0)
        .max("QUEUE".len());
    say!(
        "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>6}  {:>9}  {:>10}",
        "QUEUE",
        "WAITING",
        "RUNNING",
        "DELAYED",
        "DEAD",
        "PAUSED",
        "CONSUMERS",
        "OLDEST"
    );
    for q in &queues {
        say!(
            "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>6}  {:>9}  {:>10}",
            q.destination.wire_name(),
            q.waiting,
            q.running,
            q.delayed,
            q.dead,
            if is_paused(q) { "yes" } else { "no" },
            q.consumers,
            age(q).map_or_else(|| "-".to_owned(), short_age)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `850ms`, `12s`, `5m`, `3h`, `2d`: how long, at a glance.
fn short_age(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{}s", ms / 1_000),
        60_000..3_600_000 => format!("{}m", ms / 60_000),
        3_600_000..86_400_000 => format!("{}h", ms / 3_600_000),
        _ => format!("{}d", ms / 86_400_000),
    }
}
