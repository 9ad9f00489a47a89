//! `stevedore queues [--json]`: per queue, what waits, runs, is delayed (or waiting to retry)
//! and is dead-lettered, whether it is paused, its consumers, and how long its oldest waiting
//! task has waited.

use std::process::ExitCode;

use clap::Args;
use stevedore::admin::format::short_age;
use stevedore::admin::Admin;

#[derive(Debug, Args)]
pub struct QueuesArgs {
    /// Print JSON: one object per queue with `queue`, `waiting`, `running`, `delayed`,
    /// `dead`, `paused`, `consumers`, `length`, `oldest_waiting_at` (ms or null) and
    /// `oldest_waiting_age_ms` (or null).
    #[arg(long)]
    json: bool,
}

pub async fn run(admin: &Admin, args: QueuesArgs) -> anyhow::Result<ExitCode> {
    let queues = admin.queues().await?;
    let now = stevedore::now_ms();
    if args.json {
        let rows: Vec<_> = queues
            .iter()
            .map(|q| stevedore::admin::json::queue(q, now))
            .collect();
        say!("{}", serde_json::Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    let width = (queues.iter().map(|q| q.name().len()))
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
        let s = &q.stats;
        say!(
            "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>6}  {:>9}  {:>10}",
            q.name(),
            s.waiting,
            s.running,
            s.delayed,
            s.dead,
            if q.paused { "yes" } else { "no" },
            s.consumers,
            q.oldest_age_ms(now)
                .map_or_else(|| "-".to_owned(), short_age)
        );
    }
    Ok(ExitCode::SUCCESS)
}
