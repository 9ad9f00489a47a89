//! `stevedore events [--follow] [--json] [--queue Q] [--task NAME] [--last N]`: the task
//! events workers started with `--events` (and producers with `STEVEDORE_EVENTS=1`) write.
//!
//! 1. Prints the newest events (oldest first), then exits; with `--follow` keeps printing new
//!    ones until SIGINT/SIGTERM, resuming after the last entry it printed so none is missed
//!    or printed twice, and reconnecting with backoff if Redis goes away.
//! 2. Filters by queue and task name; text for people (names escaped: a foreign producer's
//!    names must not forge lines) or one JSON object per line.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use stevedore::admin::format::timestamp;
use stevedore::admin::{Admin, TaskEvent};
use stevedore_runtime::Backoff;

/// How long one read waits for new events before looking at the signals again.
const BLOCK: Duration = Duration::from_secs(1);

/// `stevedore events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing new events until interrupted.
    #[arg(long, short)]
    follow: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Only the events of this queue (NAME, node:NAME or broadcast).
    #[arg(long)]
    queue: Option<String>,
    /// Only the events of this task name.
    #[arg(long)]
    task: Option<String>,
    /// How many of the newest events to look at first.
    #[arg(long, default_value_t = 100)]
    last: usize,
}

/// Prints the recent events, and with `--follow` the new ones until a signal.
pub async fn run(admin: &Admin, args: EventsArgs) -> anyhow::Result<ExitCode> {
    let recent = admin.recent_events(args.last.max(1)).await?;
    // Resume after the newest entry, printed or not (an empty stream: from its start).
    let after = (recent.last()).map_or_else(|| "0-0".to_owned(), |e| e.entry_id.clone());
    let skip = recent.len().saturating_sub(args.last);
    print(&args, &recent[skip..])?;
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut follower = admin.follow_events(after);
    loop {
        let events = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = terminate.recv() => return Ok(ExitCode::SUCCESS),
            events = follower.next(BLOCK) => events,
        };
        match events {
            Ok(events) => {
                backoff.reset();
                print(&args, &events)?;
            }
            Err(error) => {
                eprintln!("warning: reading events: {error}; reconnecting");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// Prints the events that pass the filters.
fn print(args: &EventsArgs, events: &[TaskEvent]) -> anyhow::Result<()> {
    let wanted = |e: &&TaskEvent| {
        args.queue.as_ref().is_none_or(|q| *q == e.queue)
            && args.task.as_ref().is_none_or(|t| *t == e.task)
    };
    for event in events.iter().filter(wanted) {
        if args.json {
            say!("{}", serde_json::to_string(event)?);
        } else {
            say!("{}", line(event));
        }
    }
    Ok(())
}

/// `TIME EVENT TASK ID queue=Q [node=N attempt=A runtime=Rms retry_at=TIME]`.
fn line(event: &TaskEvent) -> String {
    let mut line = format!(
        "{} {:<10} {} {} queue={}",
        timestamp(event.at),
        event.event.escape_debug(),
        event.task.escape_debug(),
        event.id.escape_debug(),
        event.queue.escape_debug()
    );
    if let Some(node) = &event.node {
        line += &format!(" node={}", node.escape_debug());
    }
    if let Some(attempt) = event.attempt {
        line += &format!(" attempt={attempt}");
    }
    if let Some(runtime) = event.runtime_ms {
        line += &format!(" runtime={runtime}ms");
    }
    if let Some(at) = event.retry_at {
        line += &format!(" retry_at={}", timestamp(at));
    }
    line
}
