//! Remote control from the shell: `stevedore status|running|reload|registered|cancel`,
//! `stevedore queue pause|resume`; answers print as `worker --status` prints them
//! (`stevedore_runtime::control`).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use stevedore::admin::Admin;
use stevedore::control::{CancelSelector, Command, Target};
use stevedore_runtime::control::print_answers;

use super::format::parse_args;
use stevedore_runtime::parse_duration;

/// Which nodes to ask, and how long to wait.
#[derive(Debug, Args)]
pub struct Ask {
    /// Ask this node only (default: every node; a lost one is reported, not asked).
    #[arg(long, conflicts_with = "all")]
    node: Option<String>,
    /// Ask every node (the default; kept for scripts that pass it).
    #[arg(long)]
    all: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// How long to wait for answers.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
}

/// `stevedore cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Task ids to cancel.
    ids: Vec<String>,
    /// Cancel every task of this name published before now.
    #[arg(long)]
    task: Option<String>,
    /// With --task: only calls with exactly these positional arguments (a JSON array).
    #[arg(long, requires = "task")]
    args: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// How long to wait for the nodes' answers.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
}

/// `stevedore queue pause|resume QUEUE`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Stop every node from reading the queue (what is running goes on).
    Pause(QueueArgs),
    /// Let the nodes read the queue again.
    Resume(QueueArgs),
    /// Lists a queue's tasks: running, waiting, delayed and dead (or one state).
    Show(super::queue_tasks::ShowArgs),
    /// Deletes the tasks waiting in a queue (never those running); --delayed: the delayed too.
    Purge(super::queue_tasks::PurgeArgs),
}

/// The queue to pause or resume.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// The shared queue.
    queue: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// How long to wait for the nodes to take it in.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
}

/// Sends `command` as `ask` says and prints the answers. A node that is named and has never
/// beaten within the retention is an error, not a five-second wait.
pub async fn ask(admin: &Admin, command: Command, ask: Ask) -> anyhow::Result<ExitCode> {
    let target = match (ask.all, ask.node) {
        (false, Some(node)) => {
            stevedore::Destination::node(&node)?;
            if !admin.node_seen(&node).await? {
                anyhow::bail!("no node `{}`: no process of it beats or was seen within the retention (see `stevedore nodes`)", node.escape_debug());
            }
            Target::Node(node)
        }
        _ => Target::All,
    };
    let answers = admin.ask(target, command, ask.timeout).await?;
    print_answers(&answers, ask.json)
}

/// `stevedore cancel`.
pub async fn cancel(admin: &Admin, args: CancelArgs) -> anyhow::Result<ExitCode> {
    let selector_args = args.args.as_deref().map(parse_args).transpose()?;
    let selector = CancelSelector {
        ids: args.ids,
        task: args.task,
        args: selector_args,
    };
    let answers = admin.cancel(selector, args.timeout).await?;
    print_answers(&answers, args.json)
}

/// `stevedore queue pause|resume|show|purge`.
pub async fn queue(admin: &Admin, command: QueueCommand) -> anyhow::Result<ExitCode> {
    let (args, paused) = match command {
        QueueCommand::Pause(args) => (args, true),
        QueueCommand::Resume(args) => (args, false),
        QueueCommand::Show(args) => return super::queue_tasks::show(admin, args).await,
        QueueCommand::Purge(args) => return super::queue_tasks::purge(admin, args).await,
    };
    if paused && !admin.queue_read(&args.queue).await? {
        eprintln!(
            "warning: no live node reads queue {}; the pause holds for the nodes that will",
            args.queue
        );
    }
    let answers = admin.pause_queue(&args.queue, paused, args.timeout).await?;
    print_answers(&answers, args.json)
}
