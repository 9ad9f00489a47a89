//! The `stevedore` admin command line: a thin layer over the client API.
//!
//! `stevedore enqueue`, `stevedore task`, `stevedore queues`. Output for people is aligned and
//! short; `--json` output is for programs.

/// `println!` that returns an error instead of panicking when stdout is closed (`| head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?;
    }};
}

mod enqueue;
mod format;
mod queues;
mod task;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stevedore::Client;

use crate::GlobalArgs;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publishes a task and prints its id (with --wait, also its result as JSON).
    Enqueue(enqueue::EnqueueArgs),
    /// Shows what is recorded about a task.
    Task(task::TaskArgs),
    /// Lists queues with their waiting, running and dead-lettered counts.
    Queues(queues::QueuesArgs),
}

/// Runs the admin command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = AdminCli::parse();
    crate::init_logging_quiet();
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
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: AdminCli) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&cli.global.redis_url, &cli.global.namespace).await?;
    match cli.command {
        Command::Enqueue(args) => enqueue::run(&client, args).await,
        Command::Task(args) => task::run(&client, args).await,
        Command::Queues(args) => queues::run(&client, args).await,
    }
}

/// Whether the reader of our stdout went away (`stevedore enqueue ... | head -1`).
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
