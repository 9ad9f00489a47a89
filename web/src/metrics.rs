//! The cluster-wide gauges in the Prometheus text format, read from Redis at scrape time and
//! served once (by `stevedore metrics` or `stevedore web` at `/metrics`; not by every worker,
//! which would count each queue N times):
//!
//! | name | labels |
//! |---|---|
//! | `stevedore_queue_tasks` | `queue`, `state` (waiting, running, delayed, dead) |
//! | `stevedore_queue_latency_seconds` | `queue`: age of its oldest waiting task (0 when none) |
//! | `stevedore_queue_paused` | `queue`: 1 when paused |
//! | `stevedore_nodes` | `state` (live, lost): worker processes by heartbeat |
//! | `stevedore_beat_leader` | 1 while a beat holds the leader lease |
//! | `stevedore_schedule_runs_total` | `result` (fired, missed, failed): counted by beat in Redis |

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::StatusCode;
use stevedore::Client;

/// `GET /metrics`: the scrape, or 503 with why Redis could not be read.
pub async fn serve(State(web): crate::State) -> (StatusCode, String) {
    match scrape(&web.client).await {
        Ok(text) => (StatusCode::OK, text),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
    }
}

/// The gauges in the Prometheus text format, read now.
pub async fn scrape(client: &Client) -> stevedore::Result<String> {
    let queues = client.queues().await?;
    let paused = client.broker().paused_queues().await?;
    let nodes = client.nodes(client.broker().config().lost_after).await?;
    let leader = client.broker().beat_leader().await?;
    let schedule_runs = client.broker().schedule_run_counts().await?;
    let now = stevedore::now_ms();
    let mut out = String::new();
    let mut family = |kind: &str, name: &str, help: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let per_queue = |f: &dyn Fn(&stevedore::QueueStats) -> Vec<(&'static str, f64)>| {
        (queues.iter())
            .flat_map(|q| {
                let name = q.destination.wire_name();
                f(q).into_iter()
                    .map(move |(state, v)| (label(&name, state), v))
            })
            .collect::<Vec<_>>()
    };
    let states = |q: &stevedore::QueueStats| {
        let count = |n: u64| n as f64;
        vec![
            ("waiting", count(q.waiting)),
            ("running", count(q.running)),
            ("delayed", count(q.delayed)),
            ("dead", count(q.dead)),
        ]
    };
    family(
        "gauge",
        "stevedore_queue_tasks",
        "Tasks of a queue, by state.",
        per_queue(&states),
    );
    let latency = |q: &stevedore::QueueStats| {
        let age = q.oldest_waiting_at.map_or(0, |at| now.saturating_sub(at));
        vec![("", age as f64 / 1000.0)]
    };
    family(
        "gauge",
        "stevedore_queue_latency_seconds",
        "Age of the oldest waiting task of a queue.",
        per_queue(&latency),
    );
    let is_paused = |q: &stevedore::QueueStats| {
        vec![(
            "",
            f64::from(u8::from(paused.contains(&q.destination.wire_name()))),
        )]
    };
    family(
        "gauge",
        "stevedore_queue_paused",
        "Whether a queue is paused.",
        per_queue(&is_paused),
    );
    let lost = nodes.iter().filter(|n| n.lost).count() as f64;
    let live = nodes.len() as f64 - lost;
    let by_state = vec![
        ("{state=\"live\"}".to_owned(), live),
        ("{state=\"lost\"}".to_owned(), lost),
    ];
    family(
        "gauge",
        "stevedore_nodes",
        "Worker processes by heartbeat.",
        by_state,
    );
    let leading = vec![(String::new(), f64::from(u8::from(leader.is_some())))];
    family(
        "gauge",
        "stevedore_beat_leader",
        "Whether a beat holds the leader lease.",
        leading,
    );
    let results = (schedule_runs.iter())
        .map(|(result, n)| (format!("{{result=\"{result}\"}}"), *n as f64))
        .collect();
    family(
        "counter",
        "stevedore_schedule_runs_total",
        "Schedule runs beat fired, skipped as missed, or could not fire.",
        results,
    );
    Ok(out)
}

/// `{queue="NAME"}`, or `{queue="NAME",state="STATE"}`. Queue names are `[A-Za-z0-9_.:-]`:
/// nothing to escape.
fn label(queue: &str, state: &str) -> String {
    match state {
        "" => format!("{{queue=\"{queue}\"}}"),
        state => format!("{{queue=\"{queue}\",state=\"{state}\"}}"),
    }
}
