//! The benchmark's command line and how much work each measurement does.

use std::time::Duration;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Measures stevedore against the raw Redis limit")]
pub struct Args {
    /// A small, fast run (CI's smoke test): numbers are not meaningful.
    #[arg(long)]
    pub quick: bool,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Measure only what limits cost a task (none, a rate, a concurrency), and print it as JSON.
    #[arg(long)]
    pub limits_only: bool,
    /// Measure only what observing costs (metrics off and on, events), and print it as JSON.
    #[arg(long)]
    pub observing_only: bool,
    /// Measure only how fast the dashboard's overview renders, and print it as JSON.
    #[arg(long)]
    pub web_only: bool,
    /// Measure only what a chord costs next to plain tasks, and print it as JSON.
    #[arg(long)]
    pub workflows_only: bool,
    /// Measure only what one task costs (Redis CPU and commands against the raw cycle, worker
    /// and publisher CPU, the stock worker's backlog drain), and print it as JSON.
    #[arg(long)]
    pub per_task_only: bool,
    /// Measure only the core figures (raw cycle, publish, end to end, latency) without
    /// persistence and print them as JSON: the side-by-side of servers.
    #[arg(long)]
    pub core_only: bool,
    /// Measure only how the control plane's costs grow with simulated nodes and queues per
    /// worker, and print it as JSON.
    #[arg(long)]
    pub scale_only: bool,
    /// The server to start and measure (a name on the PATH or a path): redis-server, or
    /// valkey-server (its `-cli` beside it). Same as STEVEDORE_TEST_SERVER.
    #[arg(long, env = "STEVEDORE_TEST_SERVER")]
    pub server: Option<String>,
}

/// How much work each measurement does.
pub struct Sizes {
    pub raw: usize,
    pub publish_batched: usize,
    pub publish_single: usize,
    pub e2e: usize,
    pub latency: usize,
    pub queued: usize,
    pub flat: usize,
    pub schedules: usize,
    pub beat_window: Duration,
    pub observe_rounds: usize,
    pub scale_nodes: Vec<usize>,
    pub scale_queues: Vec<usize>,
    pub scale_tasks: usize,
    pub scale_delayed: usize,
}

impl Sizes {
    /// The sizes of a quick (smoke test) or a full run.
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                // Every part runs, on a few thousand tasks at most: CI runs this in a debug
                // build inside the test suite's time.
                raw: 2_000,
                publish_batched: 2_000,
                publish_single: 200,
                e2e: 2_000,
                latency: 50,
                queued: 2_000,
                flat: 2_000,
                schedules: 200,
                beat_window: Duration::from_secs(2),
                observe_rounds: 1,
                scale_nodes: vec![10],
                scale_queues: vec![10],
                scale_tasks: 1_000,
                scale_delayed: 2_000,
            }
        } else {
            Self {
                raw: 200_000,
                publish_batched: 200_000,
                publish_single: 10_000,
                e2e: 100_000,
                latency: 2_000,
                queued: 100_000,
                flat: 1_000_000,
                schedules: 10_000,
                beat_window: Duration::from_secs(25),
                observe_rounds: 5,
                scale_nodes: vec![10, 100, 1_000],
                scale_queues: vec![10, 100, 1_000],
                scale_tasks: 20_000,
                scale_delayed: 1_000_000,
            }
        }
    }
}
