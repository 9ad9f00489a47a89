//! `stevedore nodes [--json]`: every worker process with its heartbeat and capacity.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use stevedore::Client;

use super::format::timestamp;
use crate::parse_duration;

/// `stevedore nodes`.
#[derive(Debug, Args)]
pub struct NodesArgs {
    /// A heartbeat older than this marks a node lost (the workers' --lost-after).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lost_after: Duration,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Lists the nodes.
pub async fn run(client: &Client, args: NodesArgs) -> anyhow::Result<ExitCode> {
    let nodes = client.nodes(args.lost_after).await?;
    if args.json {
        let rows: Vec<serde_json::Value> = nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "node": n.beat.node, "consumer": n.beat.consumer, "state": state(n.lost),
                    "pid": n.beat.pid, "version": n.beat.version, "protocol": n.beat.protocol,
                    "queues": n.beat.queues, "pool": n.beat.pool, "max_workers": n.beat.max_workers,
                    "busy": n.beat.busy, "free": n.free(), "consuming": n.beat.consuming,
                    "started_at": n.beat.started_at, "beat_at": n.beat_at, "last_work_at": n.beat.last_work_at,
                })
            })
            .collect();
        say!("{}", serde_json::Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "{:<16} {:<5} {:>8} {:<8} {:>9} {:>5} {:<9} {:<24} {:<24}",
        "NODE",
        "STATE",
        "PID",
        "VERSION",
        "BUSY/MAX",
        "FREE",
        "CONSUMING",
        "LAST BEAT",
        "LAST WORK"
    );
    for n in &nodes {
        say!(
            "{:<16} {:<5} {:>8} {:<8} {:>9} {:>5} {:<9} {:<24} {:<24}",
            n.beat.node,
            state(n.lost),
            n.beat.pid,
            n.beat.version,
            format!("{}/{}", n.beat.busy, n.beat.max_workers),
            n.free(),
            if n.beat.consuming { "yes" } else { "no" },
            timestamp(n.beat_at),
            n.beat.last_work_at.map_or_else(|| "-".into(), timestamp)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn state(lost: bool) -> &'static str {
    if lost {
        "lost"
    } else {
        "live"
    }
}
