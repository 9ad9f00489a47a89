//! Remote control from the shell: `stevedore status|running|reload|cancel`, `stevedore queue
//! pause|resume`, and the same through `worker --status|--running|--reload|--cancel`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use stevedore::control::{Answer, CancelSelector, Command, NodeAnswer, NodeStatus, Target};
use stevedore::{Client, Destination};

use super::format::{parse_args, timestamp};
use crate::parse_duration;

/// Which nodes to ask, and how long to wait.
#[derive(Debug, Args)]
pub struct Ask {
    /// Ask this node (default: this host's name).
    #[arg(long, conflicts_with = "all")]
    node: Option<String>,
    /// Ask every node.
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

/// Sends `command` as `ask` says and prints the answers.
pub async fn ask(client: &Client, command: Command, ask: Ask) -> anyhow::Result<ExitCode> {
    let target = target(ask.node.as_deref(), ask.all)?;
    let answers = client.control(target, command, ask.timeout).await?;
    print_answers(&answers, ask.json)
}

/// `stevedore cancel`.
pub async fn cancel(client: &Client, args: CancelArgs) -> anyhow::Result<ExitCode> {
    let selector_args = args.args.as_deref().map(parse_args).transpose()?;
    let selector = CancelSelector {
        ids: args.ids,
        task: args.task,
        args: selector_args,
    };
    let answers = client.cancel(selector, args.timeout).await?;
    print_answers(&answers, args.json)
}

/// `stevedore queue pause|resume`.
pub async fn queue(client: &Client, command: QueueCommand) -> anyhow::Result<ExitCode> {
    let (args, paused) = match command {
        QueueCommand::Pause(args) => (args, true),
        QueueCommand::Resume(args) => (args, false),
        QueueCommand::Show(args) => return super::queue_tasks::show(client, args).await,
        QueueCommand::Purge(args) => return super::queue_tasks::purge(client, args).await,
    };
    let queue = Destination::queue(&args.queue)?;
    let lost_after = client.broker().config().lost_after;
    let read = (client.nodes(lost_after).await?.iter())
        .any(|n| !n.lost && n.beat.queues.contains(&args.queue));
    if paused && !read {
        eprintln!(
            "warning: no live node reads queue {queue}; the pause holds for the nodes that will"
        );
    }
    let answers = client.pause_queue(&queue, paused, args.timeout).await?;
    print_answers(&answers, args.json)
}

/// `worker --status|--running|--reload|--cancel`.
pub fn control_from_worker(
    global: &crate::GlobalArgs,
    node: Option<String>,
    control: crate::ControlArgs,
) -> ExitCode {
    let command = if control.status {
        Command::Status
    } else if control.running {
        Command::Running
    } else if control.reload {
        Command::Reload
    } else {
        Command::Cancel(CancelSelector::ids(control.cancel.clone()))
    };
    let ask_args = Ask {
        node,
        all: control.all || matches!(command, Command::Cancel(_)),
        json: control.json,
        timeout: control.control_timeout,
    };
    let lost_after = stevedore::nodes::DEFAULT_LOST_AFTER;
    super::run_with_client(global, lost_after, |client| async move {
        match command {
            Command::Cancel(selector) => {
                let answers = client.cancel(selector, ask_args.timeout).await?;
                print_answers(&answers, ask_args.json)
            }
            command => ask(&client, command, ask_args).await,
        }
    })
}

fn target(node: Option<&str>, all: bool) -> anyhow::Result<Target> {
    if all {
        return Ok(Target::All);
    }
    match node {
        Some(node) => Ok(Target::Node(node.to_owned())),
        None => Ok(Target::Node(crate::node_name(None)?)),
    }
}

/// Prints the answers; exits non-zero when a live node did not answer (a lost node is reported,
/// and does not change the exit code: it was not asked).
fn print_answers(answers: &[NodeAnswer], json: bool) -> anyhow::Result<ExitCode> {
    if json {
        let rows: Vec<serde_json::Value> = answers.iter().map(answer_json).collect();
        say!("{}", serde_json::Value::Array(rows));
    } else {
        for answer in answers {
            print_answer(answer)?;
        }
    }
    let silent = answers
        .iter()
        .any(|a| matches!(a, NodeAnswer::NotAnswering(_)));
    Ok(if silent {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn answer_json(answer: &NodeAnswer) -> serde_json::Value {
    let reply = match answer {
        NodeAnswer::NotAnswering(node) => {
            return serde_json::json!({"node": node, "answering": false})
        }
        NodeAnswer::Lost(node) => {
            return serde_json::json!({"node": node, "answering": false, "lost": true})
        }
        NodeAnswer::Answered(reply) => reply,
    };
    let body = match &reply.answer {
        Answer::Status(status) => serde_json::json!({"status": status}),
        Answer::Running { running, queued } => {
            serde_json::json!({"running": running, "queued": queued})
        }
        Answer::Reloaded { workers } => serde_json::json!({"reloaded": workers}),
        Answer::Registered { tasks } => serde_json::json!({"registered": tasks}),
        Answer::Cancelled { ids } => serde_json::json!({"cancelled": ids}),
        Answer::Refreshed => serde_json::json!({}),
    };
    let mut row = serde_json::json!({"node": reply.node, "answering": true});
    if let (Some(row), serde_json::Value::Object(body)) = (row.as_object_mut(), body) {
        row.extend(body);
    }
    row
}

fn print_answer(answer: &NodeAnswer) -> std::io::Result<()> {
    let reply = match answer {
        NodeAnswer::NotAnswering(node) => {
            say!("{node}: not answering");
            return Ok(());
        }
        NodeAnswer::Lost(node) => {
            say!("{node}: lost (no heartbeat; not asked)");
            return Ok(());
        }
        NodeAnswer::Answered(reply) => reply,
    };
    let node = &reply.node;
    match &reply.answer {
        Answer::Status(status) => print_status(status)?,
        Answer::Running { running, queued } => {
            for id in running {
                say!("{node} running {id}");
            }
            for id in queued {
                say!("{node} queued  {id}");
            }
        }
        Answer::Reloaded { workers } => say!("{node}: reloading {workers} worker(s)"),
        Answer::Registered { tasks } => {
            for task in tasks {
                say!("{node} {task}");
            }
        }
        Answer::Cancelled { ids } if ids.is_empty() => say!("{node}: nothing running to stop"),
        Answer::Cancelled { ids } => {
            for id in ids {
                say!("{node} stopped {id}");
            }
        }
        Answer::Refreshed => say!("{node}: ok"),
    }
    Ok(())
}

/// AWX's layout: a header per node, then a line per worker.
fn print_status(status: &NodeStatus) -> std::io::Result<()> {
    say!(
        "{}[pid:{}] workers total={} min={} max={} queued={} pool={} units={}/{}",
        status.node,
        status.pid,
        status.workers.len(),
        status.min_workers,
        status.max_workers,
        status.queued,
        status.pool,
        status.units_in_use,
        status.max_workers
    );
    let paused: Vec<&str> = status
        .queues
        .iter()
        .filter(|(_, p)| **p)
        .map(|(q, _)| q.as_str())
        .collect();
    if !paused.is_empty() {
        say!("  paused queues: {}", paused.join(", "));
    }
    match &status.exclusive {
        Some(run) if run.running => say!("  exclusive: running {} {}", run.task, run.id),
        Some(run) => say!("  exclusive: draining for {} {}", run.task, run.id),
        None => {}
    }
    for worker in &status.workers {
        let who = match worker.pid {
            Some(pid) => format!("pid:{pid}"),
            None => format!("id:{}", worker.id),
        };
        let rss = worker.rss_bytes.map_or_else(
            || "-".to_owned(),
            |b| format!("{:.3}MB", b as f64 / 1_000_000.0),
        );
        let line = format!(
            ". worker[{who}] sent={} finished={} qsize={} rss={rss}",
            worker.sent, worker.finished, worker.queued
        );
        match &worker.current {
            None => say!("{line} [IDLE]"),
            Some(current) => {
                say!("{line}");
                say!(
                    "  - running {} {} since {}",
                    current.id,
                    current.shape,
                    timestamp(current.since_ms)
                );
            }
        }
    }
    Ok(())
}
