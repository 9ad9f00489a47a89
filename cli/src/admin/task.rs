//! `stevedore task ID [--json]`.

use std::process::ExitCode;

use clap::Args;
use stevedore::{Client, RunRecord, TaskRecord};

use super::format::{timestamp, value_to_json};

#[derive(Debug, Args)]
pub struct TaskArgs {
    /// The task id.
    id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(client: &Client, args: TaskArgs) -> anyhow::Result<ExitCode> {
    let record = client.task(&args.id).await?;
    if args.json {
        say!("{}", record_json(&args.id, &record));
    } else {
        print_record(&args.id, &record)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn record_json(id: &str, record: &TaskRecord) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "state": record.state().as_str(),
        "runs": record.runs.values().collect::<Vec<_>>(),
    })
}

fn print_record(id: &str, record: &TaskRecord) -> std::io::Result<()> {
    say!("id:        {id}");
    say!("state:     {}", record.state().as_str());
    if record.runs.is_empty() {
        say!("           (no record: queued and not started yet, unknown, or expired)");
    }
    for run in record.runs.values() {
        print_run(run)?;
    }
    Ok(())
}

fn print_run(run: &RunRecord) -> std::io::Result<()> {
    let time = |t: Option<u64>| t.map(timestamp).unwrap_or_else(|| "-".into());
    say!("");
    say!("task:      {}", run.task);
    say!("queue:     {}", run.queue);
    say!("node:      {}", run.node);
    say!(
        "run:       {} (attempt {})",
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
