//! `stevedore queues [--json]`.

use std::process::ExitCode;

use clap::Args;
use stevedore::Client;

#[derive(Debug, Args)]
pub struct QueuesArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(client: &Client, args: QueuesArgs) -> anyhow::Result<ExitCode> {
    let queues = client.queues().await?;
    if args.json {
        let rows: Vec<_> = queues
            .iter()
            .map(|q| {
                serde_json::json!({
                    "queue": q.destination.wire_name(),
                    "waiting": q.waiting,
                    "running": q.running,
                    "dead": q.dead,
                    "consumers": q.consumers,
                    "length": q.length,
                })
            })
            .collect();
        say!("{}", serde_json::Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    let width = queues
        .iter()
        .map(|q| q.destination.wire_name().len())
        .max()
        .unwrap_or(0)
        .max("QUEUE".len());
    say!(
        "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}",
        "QUEUE",
        "WAITING",
        "RUNNING",
        "DEAD",
        "CONSUMERS"
    );
    for q in &queues {
        say!(
            "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}",
            q.destination.wire_name(),
            q.waiting,
            q.running,
            q.dead,
            q.consumers
        );
    }
    Ok(ExitCode::SUCCESS)
}
