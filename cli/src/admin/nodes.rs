//! `stevedore nodes [--json]`: every worker process with its heartbeat and capacity, and the
//! processes lost within the workers' `--lost-retention` (when lost, how much was reaped).

use std::process::ExitCode;

use clap::Args;
use stevedore::nodes::{GoneProcess, GoneState, NodeBeat, NodeHealth};
use stevedore::Client;

use super::format::timestamp;

/// `stevedore nodes`.
#[derive(Debug, Args)]
pub struct NodesArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Lists the nodes.
pub async fn run(client: &Client, args: NodesArgs) -> anyhow::Result<ExitCode> {
    let nodes = client.nodes(client.broker().config().lost_after).await?;
    let reaped: Vec<GoneProcess> = (client.broker().gone_processes().await?.into_iter())
        .filter(|g| g.state == GoneState::Lost)
        .collect();
    if args.json {
        let rows: Vec<serde_json::Value> = (nodes.iter().map(node_json))
            .chain(reaped.iter().map(|g| {
                let mut row = beat_json(&g.beat, "lost", 0, None);
                row["lost_at"] = g.at.into();
                row["reaped"] = g.reaped.into();
                row
            }))
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
        "UNITS",
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
    for g in &reaped {
        say!(
            "{:<16} {:<5} {:>8} {:<8} {:>9} {:>5} {:<9} lost at {}, {} task(s) reaped",
            g.beat.node,
            "lost",
            g.beat.pid,
            g.beat.version,
            format!("-/{}", g.beat.max_workers),
            0,
            "no",
            timestamp(g.at),
            g.reaped
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn node_json(n: &NodeHealth) -> serde_json::Value {
    beat_json(&n.beat, state(n.lost), n.free(), Some(n.beat_at))
}

/// One documented row of `nodes --json`.
fn beat_json(beat: &NodeBeat, state: &str, free: usize, beat_at: Option<u64>) -> serde_json::Value {
    serde_json::json!({
        "node": beat.node, "consumer": beat.consumer, "state": state,
        "pid": beat.pid, "version": beat.version, "protocol": beat.protocol,
        "queues": beat.queues, "pool": beat.pool, "max_workers": beat.max_workers,
        "busy": beat.busy, "free": free, "capacity": beat.max_workers, "units_busy": beat.busy,
        "consuming": beat.consuming,
        "started_at": beat.started_at, "beat_at": beat_at, "last_work_at": beat.last_work_at,
    })
}

fn state(lost: bool) -> &'static str {
    if lost {
        "lost"
    } else {
        "live"
    }
}
