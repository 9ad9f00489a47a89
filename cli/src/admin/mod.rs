//! The `stevedore` admin command line: views over the operator API ([`Admin`]), which the
//! dashboard reads through too. An unknown name is one line on stderr and a non-zero exit.
//!
//! Commands: `enqueue`, `task`, `tasks`, `retry`, `queues`, `status`, `running`, `reload`, `cancel`, `queue
//! pause|resume`, `schedule add|list|show|remove|pause|resume`, `limit set|list|show|remove`,
//! `nodes`, `dead list|show|requeue|purge`, `metrics`, `events`, `web`, `workflow
//! submit|show|cancel`. Output for people is aligned and short; `--json` (on every command
//! that prints) is for programs, its shapes written in docs/protocol.md.

/// `println!` that returns an error instead of panicking when stdout is closed (`| head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?;
    }};
}

mod control;
mod dead;
mod enqueue;
mod events;
mod format;
mod limit;
mod metrics;
mod nodes;
mod queue_tasks;
mod queues;
mod retry;
mod schedule;
mod schedule_json;
mod task;
mod tasks;
mod waiting;
mod web;
mod workflow;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stevedore::admin::Admin;
use stevedore_runtime::GlobalArgs;

/// The `stevedore` command line.
#[derive(Debug, Parser)]
#[command(
    name = "stevedore",
    version,
    about = "Publishes and inspects stevedore tasks"
)]
struct AdminCli {
    #[command(flatten)]
    global: GlobalArgs,
    /// A worker process whose heartbeat is older than this is lost (set it to the workers'
    /// --lost-after): `nodes` marks it, and `--all` does not wait for it.
    #[arg(long, env = "STEVEDORE_LOST_AFTER", default_value = "15s", value_parser = stevedore_runtime::parse_period, global = true)]
    lost_after: std::time::Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publishes a task and prints its id (with --wait, also its result as JSON).
    Enqueue(Box<enqueue::EnqueueArgs>),
    /// Shows what is recorded about a task.
    Task(task::TaskArgs),
    /// Finds finished tasks by state, queue, name, age and error text, newest first.
    Tasks(tasks::TasksArgs),
    /// Publishes failed tasks again with their own options (a fresh retry budget).
    Retry(retry::RetryArgs),
    /// Lists queues with their waiting, running and dead-lettered counts.
    Queues(queues::QueuesArgs),
    /// Shows nodes' pools: every worker with its counters and current task.
    Status(control::Ask),
    /// Shows the ids of running and queued tasks on nodes.
    Running(control::Ask),
    /// Recycles every worker of nodes; each finishes its current task first.
    Reload(control::Ask),
    /// Lists the tasks nodes can run (Celery's inspect registered).
    Registered(control::Ask),
    /// Cancels tasks by id or by name, wherever they are.
    Cancel(control::CancelArgs),
    /// Pauses or resumes a queue for the whole cluster.
    #[command(subcommand)]
    Queue(control::QueueCommand),
    /// Adds, lists, shows, removes, pauses or resumes schedules (fired by `beat`).
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Defines, lists, shows or removes cluster-wide limits (rate, concurrency).
    #[command(subcommand)]
    Limit(limit::LimitCommand),
    /// Lists worker processes with their heartbeat and capacity; lost ones are marked.
    Nodes(nodes::NodesArgs),
    /// Lists, shows, requeues or purges dead letters.
    #[command(subcommand)]
    Dead(dead::DeadCommand),
    /// Serves the dashboard (pages for queues, tasks, nodes, dead letters and schedules, with
    /// their actions).
    Web(web::WebArgs),
    /// Prints recent task events (workers started with --events write them); --follow keeps
    /// printing new ones.
    Events(events::EventsArgs),
    /// Serves the cluster-wide queue, node and beat gauges for Prometheus (read from Redis at
    /// each scrape).
    Metrics(metrics::MetricsArgs),
    /// Submits, shows or cancels workflows (chains, groups, chords described in JSON).
    #[command(subcommand)]
    Workflow(workflow::WorkflowCommand),
}

/// Runs the admin command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = AdminCli::parse();
    let _telemetry = stevedore_runtime::init_logging("warn", cli.global.log_format);
    run_with_admin(&cli.global, cli.lost_after, |admin| async move {
        use stevedore::control::Command as Ask;
        match cli.command {
            Command::Enqueue(args) => enqueue::run(&admin, *args).await,
            Command::Task(args) => task::run(&admin, args).await,
            Command::Tasks(args) => tasks::run(&admin, args).await,
            Command::Queues(args) => queues::run(&admin, args).await,
            Command::Retry(args) => retry::run(&admin, args).await,
            Command::Status(ask) => control::ask(&admin, Ask::Status, ask).await,
            Command::Running(ask) => control::ask(&admin, Ask::Running, ask).await,
            Command::Reload(ask) => control::ask(&admin, Ask::Reload, ask).await,
            Command::Registered(ask) => control::ask(&admin, Ask::Registered, ask).await,
            Command::Cancel(args) => control::cancel(&admin, args).await,
            Command::Queue(command) => control::queue(&admin, command).await,
            Command::Dead(command) => dead::run(&admin, command).await,
            Command::Nodes(args) => nodes::run(&admin, args).await,
            Command::Schedule(command) => schedule::run(&admin, command).await,
            Command::Limit(command) => limit::run(&admin, command).await,
            Command::Metrics(args) => metrics::run(&admin, args).await,
            Command::Events(args) => events::run(&admin, args).await,
            Command::Web(args) => web::run(&admin, args).await,
            Command::Workflow(command) => workflow::run(&admin, command).await,
        }
    })
}

/// Connects, runs `body` on a small runtime, and turns its outcome into an exit code with
/// errors printed on one line.
fn run_with_admin<F, Fut>(global: &GlobalArgs, lost_after: std::time::Duration, body: F) -> ExitCode
where
    F: FnOnce(Admin) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let mut config = stevedore::ClientConfig::new(&global.redis_url, &global.namespace);
        config.lost_after = lost_after;
        let admin = stevedore::Client::with_config(config).await?.admin();
        body(admin).await
    });
    match outcome {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", stevedore_runtime::one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// Whether the reader of our stdout went away (`stevedore enqueue ... | head -1`).
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
