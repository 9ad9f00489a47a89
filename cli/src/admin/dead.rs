//! `stevedore dead list|show|requeue|delete|purge [--queue Q]`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use stevedore::admin::format::{printable, timestamp};
use stevedore::admin::{Admin, DeadLetter, RequeueReport};
use stevedore::{Destination, Error};

/// Dead-letter commands.
#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// Lists a queue's dead letters, oldest first.
    List(ListArgs),
    /// Shows one dead letter, with its message.
    Show(EntryArgs),
    /// Puts dead letters back on their queue, with a fresh retry budget; goes on past those
    /// that cannot be (reported), and exits non-zero if there was one.
    Requeue(RequeueArgs),
    /// Deletes dead letters by entry id.
    Delete(DeleteArgs),
    /// Deletes every dead letter of a queue.
    Purge(PurgeArgs),
}

/// `dead purge`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    queue: QueueArg,
    /// Print JSON: `{"queue", "purged"}`.
    #[arg(long)]
    json: bool,
}

/// The queue.
#[derive(Debug, Args)]
pub struct QueueArg {
    /// The queue (`NAME`, `node:NAME` or `broadcast`).
    #[arg(long, default_value = "default")]
    queue: String,
}

/// `dead list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    queue: QueueArg,
    /// Most to list.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `dead show`.
#[derive(Debug, Args)]
pub struct EntryArgs {
    /// The dead letter's entry id (from `dead list`).
    entry: String,
    #[command(flatten)]
    queue: QueueArg,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `dead requeue`.
#[derive(Debug, Args)]
pub struct RequeueArgs {
    /// Dead letter entry ids.
    #[arg(required_unless_present = "all")]
    entries: Vec<String>,
    /// Every dead letter of the queue.
    #[arg(long, conflicts_with = "entries")]
    all: bool,
    /// Print JSON: `{"queue", "requeued": [entry ids], "failed": [{"entry", "error"}]}`.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    queue: QueueArg,
}

/// `dead delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Dead letter entry ids.
    #[arg(required = true)]
    entries: Vec<String>,
    #[command(flatten)]
    queue: QueueArg,
    /// Print JSON: `{"queue", "deleted": [entry ids], "missing": [entry ids]}`.
    #[arg(long)]
    json: bool,
}

/// Runs a dead-letter command.
pub async fn run(admin: &Admin, command: DeadCommand) -> anyhow::Result<ExitCode> {
    match command {
        DeadCommand::List(args) => list(admin, args).await,
        DeadCommand::Show(args) => show(admin, args).await,
        DeadCommand::Requeue(args) => requeue(admin, args).await,
        DeadCommand::Delete(args) => delete(admin, args).await,
        DeadCommand::Purge(args) => {
            let queue = Destination::from_wire_name(&args.queue.queue)?;
            let purged = admin.purge_dead(&queue).await?;
            match args.json {
                true => say!(
                    "{}",
                    serde_json::json!({"queue": queue.wire_name(), "purged": purged})
                ),
                false => say!("purged {purged} dead letter(s) of {queue}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Dead letters read per round trip by `dead list`: a letter may hold a megabyte, so only a
/// page of them is in memory at once, printed as it comes.
const LIST_PAGE: usize = 10;

async fn list(admin: &Admin, args: ListArgs) -> anyhow::Result<ExitCode> {
    let queue = Destination::from_wire_name(&args.queue.queue)?;
    let (mut after, mut listed) = (None::<String>, 0);
    if args.json {
        say!("[");
    }
    while listed < args.limit {
        let want = LIST_PAGE.min(args.limit - listed);
        let page = admin.dead_letters(&queue, after.as_deref(), want).await?;
        for letter in &page {
            match args.json {
                true => say!(
                    "{}{}",
                    if listed > 0 { "," } else { "" },
                    stevedore::admin::json::dead_letter(letter)
                ),
                false => say!("{}", letter_line(letter)),
            }
            listed += 1;
        }
        match page.last() {
            Some(last) if page.len() == want => after = Some(last.entry_id.clone()),
            _ => break,
        }
    }
    if args.json {
        say!("]");
    }
    Ok(ExitCode::SUCCESS)
}

/// One letter of `dead list`: entry, time, id, task, attempts, the reason's first line.
fn letter_line(letter: &DeadLetter) -> String {
    format!(
        "{}  {}  {}  {}  attempts={}  {}",
        letter.entry_id,
        timestamp(letter.dead_at),
        printable(letter.id.as_deref().unwrap_or("-")),
        printable(letter.task.as_deref().unwrap_or("-")),
        (letter.attempts).map_or_else(|| "-".into(), |a| a.to_string()),
        printable(first_line(&letter.reason))
    )
}

async fn show(admin: &Admin, args: EntryArgs) -> anyhow::Result<ExitCode> {
    let queue = Destination::from_wire_name(&args.queue.queue)?;
    let json = stevedore::admin::json::dead_letter(&admin.dead_letter(&queue, &args.entry).await?);
    match args.json {
        true => say!("{json}"),
        false => say!("{}", serde_json::to_string_pretty(&json)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// `dead requeue`: the named letters, or with `--all` every letter there now (one that dies
/// again meanwhile is left); each that cannot be is said on stderr, and the exit code says so.
async fn requeue(admin: &Admin, args: RequeueArgs) -> anyhow::Result<ExitCode> {
    let queue = Destination::from_wire_name(&args.queue.queue)?;
    let report: RequeueReport = match args.all {
        true => admin.requeue_all_dead(&queue).await?,
        false => admin.requeue_dead_entries(&queue, &args.entries).await?,
    };
    for (_, why) in &report.failed {
        eprintln!("{why}");
    }
    if args.json {
        let failed: Vec<_> = (report.failed.iter())
            .map(|(entry, error)| serde_json::json!({"entry": entry, "error": error}))
            .collect();
        let body = serde_json::json!({"queue": queue.wire_name(),
            "requeued": report.requeued, "failed": failed});
        say!("{body}");
    } else {
        for entry in &report.requeued {
            say!("requeued {entry}");
        }
    }
    Ok(exit_code(report.failed.len()))
}

async fn delete(admin: &Admin, args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let queue = Destination::from_wire_name(&args.queue.queue)?;
    let (mut deleted, mut missing) = (Vec::new(), Vec::new());
    for entry in &args.entries {
        match admin.delete_dead(&queue, entry).await {
            Ok(()) => {
                if !args.json {
                    say!("deleted {entry}");
                }
                deleted.push(entry);
            }
            Err(error @ Error::NotFound { .. }) => {
                eprintln!("{error}");
                missing.push(entry);
            }
            Err(error) => return Err(error.into()),
        }
    }
    if args.json {
        let body =
            serde_json::json!({"queue": queue.wire_name(), "deleted": deleted, "missing": missing});
        say!("{body}");
    }
    Ok(exit_code(missing.len()))
}

fn exit_code(failures: usize) -> ExitCode {
    match failures {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}
