//! `stevedore limit set|list|show|remove`: the named cluster-wide limits (see
//! `stevedore::limits`), and the placement options of `enqueue`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use stevedore::admin::{Admin, LimitInfo};
use stevedore::limits::{LimitSpec, Rate};
use stevedore::PublishOptions;

/// `stevedore limit ...`.
#[derive(Debug, Subcommand)]
pub enum LimitCommand {
    /// Defines (or redefines) a limit: a rate (`100/s`, `20/m`, `5/h`), a concurrency, or both.
    Set(SetArgs),
    /// Lists the limits with their permits held and runs waiting.
    List(JsonArg),
    /// Shows one limit.
    Show(NameArgs),
    /// Removes a limit; tasks that name it then run unlimited.
    Remove(NameArgs),
}

/// `stevedore limit set NAME [RATE] [--burst N] [--concurrency N]`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The limit's name (ASCII letters, digits, `_`, `-`, `.`).
    name: String,
    /// Starts allowed across the cluster: COUNT/UNIT, as in 100/s, 20/m or 5/h.
    rate: Option<String>,
    /// Starts allowed at once after a quiet spell (with a rate; default 1).
    #[arg(long, requires = "rate", value_parser = clap::value_parser!(u32).range(1..))]
    burst: Option<u32>,
    /// Runs allowed at once across the cluster.
    #[arg(long)]
    concurrency: Option<u32>,
    /// Print JSON: the limit as `limit list --json` prints it.
    #[arg(long)]
    json: bool,
}

/// `--json`.
#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// A limit's name, and `--json`.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The limit's name.
    name: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs a `limit` command.
pub async fn run(admin: &Admin, command: LimitCommand) -> anyhow::Result<ExitCode> {
    match command {
        LimitCommand::Set(args) => {
            let rate = args.rate.as_deref().map(Rate::parse).transpose()?;
            let spec = LimitSpec {
                rate: rate.map(|r| r.with_burst(args.burst.unwrap_or(1))),
                concurrency: args.concurrency,
            };
            admin.set_limit(&args.name, &spec).await?;
            match args.json {
                true => say!(
                    "{}",
                    stevedore::admin::json::limit(&admin.limit(&args.name).await?)
                ),
                false => say!("limit {}: {spec}", args.name),
            }
        }
        LimitCommand::List(args) => return list(admin, args.json).await,
        LimitCommand::Show(args) => {
            let info = admin.limit(&args.name).await?;
            if args.json {
                say!("{}", stevedore::admin::json::limit(&info));
            } else {
                say!("limit {}: {}", info.name, info.spec);
                say!(
                    "permits held: {}, runs waiting for one: {}",
                    info.held,
                    info.waiting
                );
            }
        }
        LimitCommand::Remove(args) => {
            admin.remove_limit(&args.name).await?;
            if args.json {
                say!("{}", serde_json::json!({"removed": args.name}));
            } else {
                say!(
                    "limit {} removed; tasks naming it now run unlimited",
                    args.name
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `limit list`: every limit; one whose definition does not read is named on stderr (it hides
/// none of the others) and the exit code says so.
async fn list(admin: &Admin, json: bool) -> anyhow::Result<ExitCode> {
    let (limits, unreadable) = admin.limits().await?;
    for (name, error) in &unreadable {
        eprintln!(
            "limit {name:?} cannot be read: {error}; `stevedore limit set` it again or `limit remove` it"
        );
    }
    if json {
        let rows: Vec<_> = limits.iter().map(stevedore::admin::json::limit).collect();
        say!("{}", serde_json::Value::Array(rows));
    } else if limits.is_empty() && unreadable.is_empty() {
        say!("no limits (define one with `stevedore limit set NAME 100/s`)");
    } else {
        say!(
            "{:<24} {:<12} {:>5} {:>11} {:>5} {:>7}",
            "LIMIT",
            "RATE",
            "BURST",
            "CONCURRENCY",
            "HELD",
            "WAITING"
        );
        for info in &limits {
            say!("{}", row(info));
        }
    }
    Ok(match unreadable.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}

fn row(info: &LimitInfo) -> String {
    let rate = info.spec.rate;
    let dash = || "-".to_owned();
    format!(
        "{:<24} {:<12} {:>5} {:>11} {:>5} {:>7}",
        info.name,
        rate.map_or_else(dash, |r| r.to_string()),
        rate.map_or_else(dash, |r| r.burst.to_string()),
        info.spec.concurrency.map_or_else(dash, |c| c.to_string()),
        info.held,
        info.waiting
    )
}

/// `enqueue`'s placement options.
#[derive(Debug, Args, Clone, Default)]
pub struct PlacementArgs {
    /// Units of a node's capacity (its --max-workers) one run takes.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub impact: Option<u32>,
    /// Run it alone on its node: the node lets its running tasks finish first.
    #[arg(long)]
    pub exclusive: bool,
    /// Run it under this named limit (`stevedore limit set`).
    #[arg(long)]
    pub limit: Option<String>,
}

impl PlacementArgs {
    /// Adds the options to `options`; refuses a limit that is not defined.
    pub async fn apply(
        &self,
        admin: &Admin,
        mut options: PublishOptions,
    ) -> anyhow::Result<PublishOptions> {
        if let Some(units) = self.impact {
            // Refused when it fits on no live node; allowed when none is live yet (nodes of
            // the needed size may come).
            let nodes = admin.nodes().await?;
            let live = nodes.iter().filter(|n| !n.is_lost());
            if let Some(largest) = live.map(|n| n.beat.max_workers).max() {
                anyhow::ensure!(
                    units as usize <= largest,
                    "an impact of {units} units exceeds every live node's capacity (the largest has {largest}); lower --impact or start a node with --max-workers {units} or more"
                );
            }
            options = options.impact(units);
        }
        if self.exclusive {
            options = options.exclusive(true);
        }
        if let Some(name) = &self.limit {
            admin.limit(name).await?;
            options = options.limit(name);
        }
        Ok(options)
    }
}
