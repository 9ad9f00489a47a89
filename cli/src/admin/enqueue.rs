//! `stevedore enqueue TASK [--args JSON] [--kwargs JSON] [--queue Q | --node N | --broadcast]
//! [--count N] [--id UUID] [--retries N] [--backoff DUR] [--max-backoff DUR] [--time-limit DUR]
//! [--hard-time-limit DUR] [--expires DUR|TIME] [--impact N] [--exclusive] [--limit NAME]
//! [--record all|failures|none] [--wait [--wait-timeout DUR]]`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use stevedore::admin::Admin;
use stevedore::{Client, PublishOptions};

use super::format::{parse_args, parse_kwargs};
use super::waiting;
use stevedore::admin::format::parse_time;
use stevedore_runtime::{parse_duration, parse_period, CallArgs};

/// Messages published per pipelined round trip.
const PUBLISH_BATCH: usize = 1000;

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The task, its arguments and where it goes.
    #[command(flatten)]
    call: CallArgs,
    #[command(flatten)]
    placement: super::limit::PlacementArgs,
    /// Run it no sooner than this from now (e.g. 30s, 5m).
    #[arg(long, value_parser = parse_duration, conflicts_with = "eta")]
    delay: Option<Duration>,
    /// Run it no sooner than this time: 2026-01-01T09:00:00Z (UTC) or Unix seconds.
    #[arg(long, value_parser = parse_time)]
    eta: Option<u64>,
    /// What to do if the same task with the same arguments is queued or running: parallel,
    /// discard, serial or queue_one.
    #[arg(long, value_parser = |s: &str| s.parse::<stevedore::OnDuplicate>().map_err(|e| e.to_string()))]
    on_duplicate: Option<stevedore::OnDuplicate>,
    /// Publish this many copies, each with its own id.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// The task id (a UUID); with --count 1 only.
    #[arg(long)]
    id: Option<String>,
    /// Retries after a failed attempt (default: the task's own).
    #[arg(long)]
    retries: Option<u32>,
    /// First retry delay, doubling each retry (default: the task's own).
    #[arg(long, value_parser = parse_duration)]
    backoff: Option<Duration>,
    /// Longest retry delay (default: the task's own).
    #[arg(long, value_parser = parse_duration)]
    max_backoff: Option<Duration>,
    /// Soft time limit of one run: the task is told to stop, and recorded timed_out.
    #[arg(long, value_parser = parse_period)]
    time_limit: Option<Duration>,
    /// Hard time limit of one run: the run is aborted (default: the soft one plus a grace).
    #[arg(long, value_parser = parse_period)]
    hard_time_limit: Option<Duration>,
    /// Not started by then: a duration from now (10m; a bare number is seconds, as in Celery)
    /// or a time (2026-01-01T09:00:00Z): recorded expired, never run.
    #[arg(long, value_parser = parse_expiry)]
    expires: Option<Expiry>,
    /// Which runs leave a record: all, failures (none of a success) or none (default: the
    /// task's own); only `all` can go with --wait.
    #[arg(long, value_parser = |s: &str| s.parse::<stevedore::RecordPolicy>().map_err(|e| e.to_string()))]
    record: Option<stevedore::RecordPolicy>,
    /// Wait for each task to end and print its result as JSON; exit non-zero if one failed.
    #[arg(long)]
    wait: bool,
    /// Print JSON, one object per task and line: `{"id", "discarded"}`; with --wait, once the
    /// task ended, also `state`, `result`, `error` (and `nodes` for a broadcast).
    #[arg(long)]
    json: bool,
    /// How long --wait waits for each task.
    #[arg(long, default_value = "30s", value_parser = parse_duration, requires = "wait")]
    wait_timeout: Duration,
}

/// `--expires`: after a duration from now, or at a time.
#[derive(Debug, Clone, Copy)]
pub enum Expiry {
    /// A duration from now.
    After(Duration),
    /// Milliseconds since the epoch.
    At(u64),
}

fn parse_expiry(text: &str) -> Result<Expiry, String> {
    match parse_duration(text) {
        Ok(after) => Ok(Expiry::After(after)),
        Err(_) => parse_time(text).map(Expiry::At).map_err(|_| {
            format!("`{text}` is neither a duration (10m) nor a time (2026-01-01T09:00:00Z)")
        }),
    }
}

pub async fn run(admin: &Admin, args: EnqueueArgs) -> anyhow::Result<ExitCode> {
    let call = &args.call;
    let (positional, kwargs) = (parse_args(&call.args)?, parse_kwargs(&call.kwargs)?);
    let options = options(admin, &args).await?;
    let client = admin.client();
    // A broadcast's --wait waits for the nodes live when it is published.
    let members = match (args.wait, args.call.target.broadcast) {
        (true, true) => Some(client.live_nodes().await?),
        _ => None,
    };
    let (mut handles, mut dropped) = (Vec::new(), 0);
    let mut left = args.count;
    while left > 0 {
        let batch = left.min(PUBLISH_BATCH as u64);
        let messages = (0..batch)
            .map(|_| {
                let mut message =
                    Client::message(&call.task, positional.clone(), kwargs.clone(), &options)?;
                let ms = |d: Duration| d.as_millis() as u64;
                message.backoff = args.backoff.map(ms).or(message.backoff);
                message.max_backoff = args.max_backoff.map(ms).or(message.max_backoff);
                Ok(message)
            })
            .collect::<stevedore::Result<Vec<_>>>()?;
        let published = match client.publish_many(messages).await {
            Ok(published) => published,
            Err(error) => return Err(not_published(error, args.count - left, left - batch)?),
        };
        for handle in published {
            let (id, discarded) = (handle.id(), handle.discarded());
            match (args.json, discarded) {
                // With --wait, a task's line comes once it ended.
                (true, false) if args.wait => {}
                (true, _) => say!("{}", serde_json::json!({"id": id, "discarded": discarded})),
                // On stdout too, so that a script reading ids learns it will never run.
                (false, true) => say!("{id} discarded"),
                (false, false) => say!("{id}"),
            }
            if discarded {
                eprintln!("task {id} discarded: a copy is queued or running");
                dropped += 1;
            } else {
                handles.push(handle);
            }
        }
        left -= batch;
    }
    let waited = match (args.wait, members) {
        (false, _) => ExitCode::SUCCESS,
        (true, Some(nodes)) => {
            waiting::wait_for_broadcasts(handles, &nodes, args.wait_timeout, args.json).await?
        }
        (true, None) => waiting::wait_for_all(handles, args.wait_timeout, args.json).await?,
    };
    // A failure says more than a dropped copy: 1 before 3.
    Ok(match (waited == ExitCode::SUCCESS, dropped) {
        (true, 1..) => ExitCode::from(DISCARDED),
        _ => waited,
    })
}

/// The exit code of `enqueue` when a copy was dropped by its on_duplicate policy.
const DISCARDED: u8 = 3;

/// The error for a batch that failed, after printing what of it is queued: the ids Redis took
/// on stdout like the others, the ids whose fate is unknown on stderr. `done`: ids printed
/// before this batch; `untried`: tasks after it, not sent.
fn not_published(
    error: stevedore::Error,
    done: u64,
    untried: u64,
) -> anyhow::Result<anyhow::Error> {
    let mut printed = done;
    match &error {
        stevedore::Error::PartlyPublished { published, .. } => {
            for id in published {
                say!("{id}");
            }
            printed += published.len() as u64;
        }
        stevedore::Error::PublishUnconfirmed { unconfirmed, .. } => {
            for id in unconfirmed {
                eprintln!("unconfirmed {id}");
            }
        }
        _ => {}
    }
    let untried = match untried {
        0 => String::new(),
        n => format!(", {n} more not tried"),
    };
    let queued = format!("{printed} task id(s) printed above are queued{untried}");
    Ok(anyhow::Error::new(error).context(queued))
}

/// The publish options the arguments ask for; `--node auto` is resolved to a live node here.
async fn options(admin: &Admin, args: &EnqueueArgs) -> anyhow::Result<PublishOptions> {
    let mut target = args.call.target.clone();
    if target.node.as_deref() == Some("auto") {
        target.node = Some(auto_node(admin, &args.placement).await?);
    }
    if let Some(node) = target.node.as_deref() {
        if !admin.node_seen(node).await? {
            eprintln!("warning: node {node} has never been seen (no heartbeat); the task waits until a node of that name starts");
        }
    }
    let mut options = PublishOptions::new().notify(args.wait);
    if let Some(destination) = target.destination()? {
        options = options.to(destination);
    }
    if let Some(delay) = args.delay {
        options = options.delay(delay);
    }
    if let Some(eta) = args.eta {
        options = options.eta(eta);
    }
    if let Some(policy) = args.on_duplicate {
        options = options.on_duplicate(policy);
    }
    if let Some(policy) = args.record {
        anyhow::ensure!(
            !args.wait || policy.records_success(),
            "--wait needs a record of the task's success, and --record {} keeps none: drop --wait or use --record all",
            policy.as_str()
        );
        options = options.record(policy);
    }
    if let Some(id) = &args.id {
        anyhow::ensure!(
            args.count == 1,
            "--id names one task; it cannot go with --count"
        );
        options = options.id(id);
    }
    if let Some(retries) = args.retries {
        options = options.retries(retries);
    }
    if let Some(limit) = args.time_limit {
        options = options.timeout(limit);
    }
    if let Some(limit) = args.hard_time_limit {
        options = options.hard_timeout(limit);
    }
    options = match args.expires {
        Some(Expiry::After(after)) => options.expires(after),
        Some(Expiry::At(at)) => options.expires_at(at),
        None => options,
    };
    args.placement.apply(admin, options).await
}

/// `--node auto`: the live node with the most free units where the run fits now (all of a
/// node's units when it is exclusive); refused when it fits on no live node at all.
async fn auto_node(
    admin: &Admin,
    placement: &super::limit::PlacementArgs,
) -> anyhow::Result<String> {
    let nodes = admin.nodes().await?;
    let live: Vec<_> = nodes
        .iter()
        .filter(|n| !n.is_lost() && n.beat.consuming)
        .collect();
    let units = |capacity: usize| match placement.exclusive {
        true => capacity,
        false => placement.impact.unwrap_or(1) as usize,
    };
    let largest = live.iter().map(|n| n.beat.max_workers).max();
    if let (Some(largest), Some(impact)) = (largest, placement.impact) {
        anyhow::ensure!(
            impact as usize <= largest,
            "--node auto: an impact of {impact} units exceeds every live node's capacity (the largest has {largest}); lower --impact or start a node with --max-workers {impact} or more"
        );
    }
    live.iter()
        .filter(|n| n.free >= units(n.beat.max_workers))
        .max_by_key(|n| (n.free, std::cmp::Reverse(n.beat.node.clone())))
        .map(|n| n.beat.node.clone())
        .ok_or_else(|| match placement.impact {
            Some(units) if !live.is_empty() => {
                anyhow::anyhow!("--node auto: no live node has {units} units free now")
            }
            _ => anyhow::anyhow!("--node auto: no live node has free capacity"),
        })
}
