//! `beat`: the singleton scheduler. Every beat process may run; exactly one leads (a lease in
//! Redis with a fencing token) and fires due schedules; the others wait as hot standbys.
//!
//! ```text
//!  standby ── lease free (leader dead or paused past its lease) ──► leader (new token)
//!     ▲                                                                 │
//!     └──────── renewal refused (another beat took the lease) ◄─────────┘
//! ```
//!
//! Firing a run and storing the schedule's next time are one script that checks the caller's
//! token against the lease and the schedule's due time against what the caller read; each run's
//! task id is derived from (schedule, fire time). So a beat that lost its lease fires nothing,
//! and two beats that both believe they lead cannot publish one run twice.

mod config;
mod elector;
mod scheduler;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser};
use stevedore::schedule::Schedule;
use stevedore::ClientConfig;
use tokio_util::sync::CancellationToken;

pub use config::load_config;

/// Options of a beat.
#[derive(Debug, Clone, Args)]
pub struct BeatArgs {
    /// Redis and namespace.
    #[command(flatten)]
    pub global: stevedore_runtime::GlobalArgs,
    /// Static schedules to keep in Redis (TOML), besides the user-defined ones.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// How long the leader's lease lasts without renewal: a standby takes over about this long
    /// after the leader dies.
    #[arg(long, default_value = "3s", value_parser = stevedore_runtime::parse_period)]
    pub lease: Duration,
}

#[derive(Debug, Parser)]
#[command(
    name = "beat",
    version,
    about = "Fires stevedore schedules; one beat leads, others stand by"
)]
struct BeatCli {
    #[command(flatten)]
    args: BeatArgs,
}

/// The `beat` command line: runs until SIGINT/SIGTERM (a second signal exits at once).
pub fn main() -> ExitCode {
    let cli = BeatCli::parse();
    let _telemetry = stevedore_runtime::init_logging("info", cli.args.global.log_format);
    stevedore_runtime::run_until_signalled(|stop| run(cli.args, stop))
}

/// Runs a beat until `stop`.
pub async fn run(args: BeatArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let config = ClientConfig::new(&args.global.redis_url, &args.global.namespace);
    let Some(client) = stevedore_runtime::connect_waiting(config, &stop).await? else {
        return Ok(());
    };
    if let Some(path) = &args.config {
        reconcile(&client, path).await?;
    }
    let id = format!(
        "{}:{}:{}",
        hostname(),
        std::process::id(),
        stevedore::now_ms()
    );
    let (leadership, elector) =
        elector::Elector::new(client.broker().clone(), id.clone(), args.lease);
    let elector = tokio::spawn(elector.run(stop.clone()));
    let scheduler = scheduler::Scheduler::new(client, id, leadership);
    tracing::info!("beat started");
    scheduler.run(stop).await;
    elector.await.context("the elector panicked")?;
    tracing::info!("beat stopped");
    Ok(())
}

/// Makes the stored schedules match the file at `path`: each entry is added, or replaced when
/// any of its settings changed (a schedule left as it is keeps its next fire time); a schedule
/// that came from the file and is no longer in it is removed. Schedules added at run time are
/// never touched, unless the file names one.
async fn reconcile(client: &stevedore::Client, path: &std::path::Path) -> anyhow::Result<()> {
    let wanted = load_config(path)?;
    for schedule in &wanted {
        let unchanged = matches!(client.schedule(&schedule.name).await?,
            Some((stored, _)) if same_settings(&stored, schedule));
        if !unchanged {
            client
                .put_schedule(schedule)
                .await
                .with_context(|| format!("schedule `{}` in {}", schedule.name, path.display()))?;
            tracing::info!(schedule = %schedule.name, "schedule from the config file stored");
        }
    }
    for (stored, _) in client.schedules().await? {
        if stored.from_config && !wanted.iter().any(|w| w.name == stored.name) {
            client.remove_schedule(&stored.name).await?;
            tracing::info!(schedule = %stored.name, "schedule left the config file: removed");
        }
    }
    Ok(())
}

/// Whether two schedules say the same thing (what, where, when, missed runs, origin).
fn same_settings(a: &Schedule, b: &Schedule) -> bool {
    (a.task == b.task && a.args == b.args && a.kwargs == b.kwargs && a.queue == b.queue)
        && (a.timing == b.timing && a.missed == b.missed && a.from_config == b.from_config)
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "beat".into())
}
