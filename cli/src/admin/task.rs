//! `stevedore task ID [--json]`: everything known about a task: its runs (one per node for a
//! broadcast), every earlier attempt and every late run; without a record, where it is
//! (waiting, delayed, rejected into the dead letters) or that it is unknown (one line on
//! stderr, exit 3; with `--json`, `{"id", "state": "unknown"}` on stdout too).

use std::process::ExitCode;

use clap::Args;
use stevedore::admin::format::{printable, timestamp};
use stevedore::admin::{Admin, TaskView, Whereabouts};
use stevedore::{Error, RunRecord};

use super::format::value_to_json;

#[derive(Debug, Args)]
pub struct TaskArgs {
    /// The task id (any string a producer gave; a UUID is matched in any case).
    id: String,
    /// Print JSON: `id`, `state`, `runs`, `attempts` and `late` (lists of runs), and `where`
    /// for a task without a record (`{"queue", "as": "waiting"|"delayed"|"rejected", ...}`).
    #[arg(long)]
    json: bool,
}

/// The exit code of `task` for an id nobody knows.
const UNKNOWN: u8 = 3;

pub async fn run(admin: &Admin, args: TaskArgs) -> anyhow::Result<ExitCode> {
    let task = match admin.task(&args.id).await {
        Ok(task) => task,
        Err(error @ Error::NotFound { .. }) => {
            if args.json {
                say!("{}", serde_json::json!({"id": args.id, "state": "unknown"}));
            }
            eprintln!("error: {error}");
            return Ok(ExitCode::from(UNKNOWN));
        }
        Err(error) => return Err(error.into()),
    };
    match args.json {
        true => say!("{}", stevedore::admin::json::task(&task)),
        false => print_record(&task)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_record(task: &TaskView) -> std::io::Result<()> {
    say!("id:        {}", printable(&task.id));
    say!("state:     {}", task.state);
    if let Some(workflow) = &task.record.workflow {
        say!("workflow:  {}", printable(workflow));
    }
    if let Some(p) = &task.progress {
        let percent = p.percent().map(|p| format!(" ({p}%)")).unwrap_or_default();
        say!(
            "progress:  {}/{}{percent} {} ({})",
            p.done,
            p.total,
            printable(&p.message),
            timestamp(p.at)
        );
    }
    match &task.whereabouts {
        Some(Whereabouts::Waiting(q)) => say!("           waiting in queue {q}, not started"),
        Some(Whereabouts::Delayed(q, due)) => {
            say!("           delayed in queue {q} until {}", timestamp(*due))
        }
        Some(Whereabouts::Rejected(q, reason)) => {
            say!(
                "           dead-lettered on arrival in queue {q}: {}",
                printable(reason)
            )
        }
        None => {}
    }
    let record = &task.record;
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
    if !task.log.is_empty() {
        say!("");
        say!("log:");
        for line in &task.log {
            say!("  {}", printable(line));
        }
    }
    for (field, why) in &record.unreadable {
        say!("");
        say!("unreadable field {}: {}", printable(field), printable(why));
    }
    Ok(())
}

fn print_run(kind: &str, run: &RunRecord) -> std::io::Result<()> {
    let time = |t: Option<u64>| t.map(timestamp).unwrap_or_else(|| "-".into());
    say!("");
    say!("task:      {}", printable(&run.task));
    say!("queue:     {}", printable(&run.queue));
    say!("node:      {}", printable(&run.node));
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
        say!("error:     {}", printable(error));
    }
    Ok(())
}
