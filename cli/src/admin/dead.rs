//! `stevedore dead list|show|requeue|delete|purge [--queue Q]`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use stevedore::broker::DeadLetter;
use stevedore::{Client, Destination, Message};

use super::format::timestamp;

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
pub async fn run(client: &Client, command: DeadCommand) -> anyhow::Result<ExitCode> {
    match command {
        DeadCommand::List(args) => list(client, args).await,
        DeadCommand::Show(args) => show(client, args).await,
        DeadCommand::Requeue(args) => requeue(client, args).await,
        DeadCommand::Delete(args) => delete(client, args).await,
        DeadCommand::Purge(args) => {
            let queue = Destination::from_wire_name(&args.queue.queue)?;
            let purged = client.broker().purge_dead(&queue).await?;
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

async fn list(client: &Client, args: ListArgs) -> anyhow::Result<ExitCode> {
    let queue = Destination::from_wire_name(&args.queue.queue)?;
    let letters = client.broker().dead_letters(&queue, args.limit).await?;
    if args.json {
        let rows: Vec<serde_json::Value> = letters.iter().map(letter_json).collect();
        say!("{}", serde_json::Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    for letter in &letters {
        say!(
            "{}  {}  {}  {}  attempts={}  {}",
            letter.entry_id,
            timestamp(letter.dead_at),
            letter.id.as_deref().unwrap_or("-"),
            letter.task.as_deref().unwrap_or("-"),
            letter
                .attempts
                .map_or_else(|| "-".into(), |a| a.to_string()),
            first_line(&letter.reason)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(client: &Client, args: EntryArgs) -> anyhow::Result<ExitCode> {
    let queue = Destination::from_wire_name(&args.queue.queue)?;
    let Some(letter) = client
        .broker()
        .find_dead_letter(&queue, &args.entry)
        .await?
    else {
        anyhow::bail!("no dead letter {} in queue {queue}", args.entry);
    };
    let json = letter_json(&letter);
    if args.json {
        say!("{json}");
    } else {
        say!("{}", serde_json::to_string_pretty(&json)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Dead letters read per round trip by `requeue --all`.
const PAGE: usize = 100;

/// What `requeue` did, letter by letter.
#[derive(Default)]
struct Requeued {
    json: bool,
    requeued: Vec<String>,
    failed: Vec<(String, String)>,
}

impl Requeued {
    fn report(self, queue: &Destination) -> anyhow::Result<ExitCode> {
        if self.json {
            let failed: Vec<_> = (self.failed.iter())
                .map(|(entry, error)| serde_json::json!({"entry": entry, "error": error}))
                .collect();
            let body = serde_json::json!({"queue": queue.wire_name(),
                "requeued": self.requeued, "failed": failed});
            say!("{body}");
        }
        Ok(exit_code(self.failed.len()))
    }
}

async fn requeue(client: &Client, args: RequeueArgs) -> anyhow::Result<ExitCode> {
    let queue = Destination::from_wire_name(&args.queue.queue)?;
    let mut done = Requeued {
        json: args.json,
        ..Requeued::default()
    };
    if !args.all {
        for entry in &args.entries {
            requeue_one(client, &queue, entry, &mut done).await?;
        }
        return done.report(&queue);
    }
    // Only the letters there now: a requeued task that dies again is not requeued again.
    let Some(newest) = client.broker().newest_dead_letter(&queue).await? else {
        return done.report(&queue);
    };
    let mut after: Option<String> = None;
    'pages: loop {
        let page = (client.broker())
            .dead_letters_after(&queue, after.as_deref(), PAGE)
            .await?;
        for letter in &page {
            if stream_id(&letter.entry_id) > stream_id(&newest) {
                break 'pages;
            }
            requeue_one(client, &queue, &letter.entry_id, &mut done).await?;
        }
        match page.last() {
            Some(last) => after = Some(last.entry_id.clone()),
            None => break,
        }
    }
    done.report(&queue)
}

/// Requeues one dead letter; one that is gone or whose bytes do not open is said on stderr
/// and counted as failed.
async fn requeue_one(
    client: &Client,
    queue: &Destination,
    entry: &str,
    done: &mut Requeued,
) -> anyhow::Result<()> {
    let failure = match client.broker().requeue_dead(queue, entry).await {
        Ok(true) => {
            if !done.json {
                say!("requeued {entry}");
            }
            done.requeued.push(entry.to_owned());
            return Ok(());
        }
        Ok(false) => format!("no dead letter {entry} in queue {queue}"),
        Err(error @ (stevedore::Error::Decode { .. } | stevedore::Error::Signature(_))) => {
            format!("cannot requeue {entry}: {error}; it stays (see `dead show`, `dead delete`)")
        }
        Err(error) => return Err(error.into()),
    };
    eprintln!("{failure}");
    done.failed.push((entry.to_owned(), failure));
    Ok(())
}

async fn delete(client: &Client, args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let queue = Destination::from_wire_name(&args.queue.queue)?;
    let (mut deleted, mut missing) = (Vec::new(), Vec::new());
    for entry in &args.entries {
        if client.broker().delete_dead(&queue, entry).await? {
            if !args.json {
                say!("deleted {entry}");
            }
            deleted.push(entry);
        } else {
            eprintln!("no dead letter {entry} in queue {queue}");
            missing.push(entry);
        }
    }
    if args.json {
        let body =
            serde_json::json!({"queue": queue.wire_name(), "deleted": deleted, "missing": missing});
        say!("{body}");
    }
    Ok(exit_code(missing.len()))
}

/// A stream entry id (`MS-SEQ`) as comparable numbers.
fn stream_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

fn exit_code(failures: usize) -> ExitCode {
    match failures {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

fn letter_json(letter: &DeadLetter) -> serde_json::Value {
    let message = stevedore::signing::unwrap_unchecked(&letter.raw)
        .ok()
        .and_then(|raw| Message::decode(&raw).ok())
        .map(|m| {
            serde_json::json!({"id": m.id, "task": m.task, "queue": m.queue, "tried": m.tried,
            "args": m.args, "kwargs": m.kwargs, "published_at": m.published_at})
        });
    serde_json::json!({
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

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}
