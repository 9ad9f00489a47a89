//! The node side of stevedore: the `worker` that runs tasks (the `stevedore` admin CLI lives in
//! `stevedore-cli`).
//!
//! An app with its own tasks gets the stock worker's command line in its own binary:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     // my_app::tasks::link(); // reference the crate that holds your #[task]s
//!     stevedore_worker::main()
//! }
//! ```

mod activity;
mod admission;
mod args;
mod assembly;
mod builtin;
mod cancels;
mod capacity;
mod controller;
mod executor;
mod fetcher;
mod forwarder;
mod heartbeat;
mod hooks;
mod http;
mod in_flight;
mod observe;
mod pause;
mod persist;
mod pool;
mod priority;
mod reaper;
mod recorder;
mod retry;
mod running;
mod stop;
mod task_log;
mod task_table;
mod worker;

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

pub use args::{WorkerArgs, WorkerCount};
pub use hooks::{Hooks, NodeInfo, RunInfo};
pub use pool::PoolKind;
use std::future::Future;
use std::sync::Arc;
pub use stevedore_runtime::{parse_duration, ControlArgs, GlobalArgs};
pub use task_table::TaskTable;

/// The `worker` command line.
#[derive(Debug, Parser)]
#[command(
    name = "worker",
    version,
    about = "Runs stevedore tasks from Redis queues"
)]
struct WorkerCli {
    #[command(flatten)]
    args: WorkerArgs,
    #[command(flatten)]
    control: ControlArgs,
}

/// Runs the stock worker's command line (see [`Worker::main`]).
pub fn main() -> ExitCode {
    Worker::new().main()
}

/// A worker binary: the stock command line plus the app's hooks.
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     stevedore_worker::Worker::new()
///         .on_start(|node| async move { println!("{} is up", node.node) })
///         .main()
/// }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Worker {
    hooks: Hooks,
}

impl Worker {
    /// A worker without hooks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `hook` when the node has started, before the start-up tasks are published.
    pub fn on_start<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(NodeInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks
            .on_start
            .push(Arc::new(move |info| Box::pin(hook(info))));
        self
    }

    /// Runs `hook` when the node stops, after its running tasks are drained.
    pub fn on_shutdown<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(NodeInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks
            .on_shutdown
            .push(Arc::new(move |info| Box::pin(hook(info))));
        self
    }

    /// Runs `hook` before each task (in the dispatcher, not in a process-pool child).
    pub fn before_task<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(RunInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks
            .before_task
            .push(Arc::new(move |info| Box::pin(hook(info))));
        self
    }

    /// Runs `hook` after each task, with how it ended.
    pub fn after_task<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(RunInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks
            .after_task
            .push(Arc::new(move |info| Box::pin(hook(info))));
        self
    }

    /// Publishes the message `make` builds (given the node's name) once at each node's start.
    pub fn publish_on_start<F>(mut self, make: F) -> Self
    where
        F: Fn(&str) -> stevedore::Result<stevedore::Message> + Send + Sync + 'static,
    {
        self.hooks.start_tasks.push(Arc::new(make));
        self
    }

    /// Runs a node with these hooks until `stop` is cancelled.
    pub async fn run(self, args: WorkerArgs, stop: CancellationToken) -> anyhow::Result<()> {
        worker::run(args, self.hooks, stop).await
    }

    /// The command line: parses the arguments, logs to stderr, runs until SIGINT/SIGTERM. With
    /// `--status`, `--running`, `--reload` or `--cancel` it asks running nodes instead. Run as
    /// a process-pool child (by its parent), it serves its parent. Returns the exit code.
    pub fn main(self) -> ExitCode {
        if let Ok(socket) = std::env::var(pool::CHILD_SOCKET_ENV) {
            let _telemetry =
                stevedore_runtime::init_logging("info", stevedore_runtime::LogFormat::from_env());
            return pool::child_main(socket);
        }
        let cli = WorkerCli::parse();
        let format = cli.args.global.log_format;
        if cli.control.requested() {
            let _telemetry = stevedore_runtime::init_logging("warn", format);
            let WorkerArgs { global, node, .. } = cli.args;
            return stevedore_runtime::control::control_from_worker(&global, node, cli.control);
        }
        if format == stevedore_runtime::LogFormat::Json {
            // Process-pool children log as their parent does (one threadless moment: no
            // thread has started yet).
            std::env::set_var("STEVEDORE_LOG_FORMAT", "json");
        }
        let capture = vec![task_log::layer()];
        let _telemetry = stevedore_runtime::init_logging_with("info", format, capture);
        stevedore_runtime::run_until_signalled(|stop| self.run(cli.args, stop))
    }
}
