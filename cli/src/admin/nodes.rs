//! `stevedore nodes [--json]`: every worker process, live or lost (a lost one with when it
//! was lost and how many of its entries peers reaped), from the operator API's node list.

use std::process::ExitCode;

use clap::Args;
use stevedore::admin::format::timestamp;
use stevedore::admin::{Admin, NodeView};

/// `stevedore nodes`.
#[derive(Debug, Args)]
pub struct NodesArgs {
    /// Print JSON: one object per process (docs/protocol.md, "nodes --json").
    #[arg(long)]
    json: bool,
}

/// Lists the nodes.
pub async fn run(admin: &Admin, args: NodesArgs) -> anyhow::Result<ExitCode> {
    let nodes = admin.nodes().await?;
    if args.json {
        say!("{}", serde_json::to_value(&nodes)?);
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "{:<16} {:<5} {:>8} {:<8} {:>9} {:>5} {:<9} {:<24} {:<24}",
        "NODE",
        "STATE",
        "PID",
        "VERSION",
        "UNITS",
        "FREE",
        "CONSUMING",
        "LAST BEAT",
        "LAST WORK"
    );
    for n in &nodes {
        say!("{}", row(n));
    }
    Ok(ExitCode::SUCCESS)
}

fn row(n: &NodeView) -> String {
    let time = |t: Option<u64>| t.map_or_else(|| "-".into(), timestamp);
    let head = format!(
        "{:<16} {:<5} {:>8} {:<8} {:>9} {:>5} {:<9}",
        n.beat.node,
        n.state.as_str(),
        n.beat.pid,
        n.beat.version,
        format!("{}/{}", n.beat.busy, n.beat.max_workers),
        n.free,
        if n.beat.consuming && !n.is_lost() {
            "yes"
        } else {
            "no"
        }
    );
    match (n.lost_at, n.reaped) {
        (Some(at), Some(reaped)) => format!(
            "{head} lost at {}, {reaped} task(s) reaped{}",
            timestamp(at),
            if n.beat_at.is_some() {
                " (not yet reaped)"
            } else {
                ""
            }
        ),
        _ => format!(
            "{head} {:<24} {:<24}",
            time(n.beat_at),
            time(n.beat.last_work_at)
        ),
    }
}
