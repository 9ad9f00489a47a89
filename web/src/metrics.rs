//! The cluster-wide gauges in the Prometheus text format, read from Redis at scrape time and
//! served once (by `stevedore metrics` or `stevedore web` at `/metrics`; not by every worker,
//! which would count each queue N times):
//!
//! | name | labels |
//! |---|---|
//! | `stevedore_queue_tasks` | `queue`, `state` (waiting, running, delayed, dead) |
//! | `stevedore_queue_latency_seconds` | `queue`: age of its oldest waiting task (0 when none) |
//! | `stevedore_queue_paused` | `queue`: 1 when paused |
//! | `stevedore_nodes` | `state` (live, lost): worker processes, lost ones kept for the workers' `--lost-retention` (as `stevedore nodes` lists them) |
//! | `stevedore_beat_leader` | 1 while a beat holds the leader lease |
//! | `stevedore_schedule_runs_total` | `result` (fired, missed, failed): counted by beat in Redis |

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::StatusCode;
use stevedore::admin::{Admin, NodeCounts, QueueView};

/// `GET /metrics`: the scrape, or 503 with why Redis could not be read.
pub async fn serve(State(web): crate::State) -> (StatusCode, String) {
    match scrape(&web.admin).await {
        Ok(text) => (StatusCode::OK, text),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
    }
}

/// The gauges in the Prometheus text format, read now through the operator API (the reads
/// run concurrently: their commands travel pipelined on the shared connection).
pub async fn scrape(admin: &Admin) -> stevedore::Result<String> {
    let overview = admin.overview(1).await?;
    let mut out = String::new();
    queue_families(&mut out, &overview.queues, stevedore::now_ms());
    let counts = NodeCounts::of(&overview.nodes);
    let by_state = vec![
        ("{state=\"live\"}".to_owned(), counts.live as f64),
        ("{state=\"lost\"}".to_owned(), counts.lost as f64),
    ];
    let help = "Worker processes by state (lost ones kept for the workers' --lost-retention).";
    family(&mut out, "gauge", "stevedore_nodes", help, by_state);
    let leader = overview.beat_leader.is_some();
    let leading = vec![(String::new(), f64::from(u8::from(leader)))];
    let help = "Whether a beat holds the leader lease.";
    family(&mut out, "gauge", "stevedore_beat_leader", help, leading);
    let results = (overview.schedule_runs.iter())
        .map(|(result, n)| (format!("{{result=\"{result}\"}}"), *n as f64))
        .collect();
    let help = "Schedule runs beat fired, skipped as missed, or could not fire.";
    family(
        &mut out,
        "counter",
        "stevedore_schedule_runs_total",
        help,
        results,
    );
    Ok(out)
}

/// The per-queue families: tasks by state, latency, paused.
fn queue_families(out: &mut String, queues: &[QueueView], now: u64) {
    let per_queue = |f: &dyn Fn(&QueueView) -> Vec<(&'static str, f64)>| {
        (queues.iter())
            .flat_map(|q| {
                let name = q.name();
                f(q).into_iter()
                    .map(move |(state, v)| (label(&name, state), v))
            })
            .collect::<Vec<_>>()
    };
    let states = |q: &QueueView| {
        let (q, count) = (&q.stats, |n: u64| n as f64);
        vec![
            ("waiting", count(q.waiting)),
            ("running", count(q.running)),
            ("delayed", count(q.delayed)),
            ("dead", count(q.dead)),
        ]
    };
    let help = "Tasks of a queue, by state.";
    family(
        out,
        "gauge",
        "stevedore_queue_tasks",
        help,
        per_queue(&states),
    );
    let latency = |q: &QueueView| {
        let age = q.oldest_age_ms(now).unwrap_or(0);
        vec![("", age as f64 / 1000.0)]
    };
    let help = "Age of the oldest waiting task of a queue.";
    family(
        out,
        "gauge",
        "stevedore_queue_latency_seconds",
        help,
        per_queue(&latency),
    );
    let is_paused = |q: &QueueView| vec![("", f64::from(u8::from(q.paused)))];
    let help = "Whether a queue is paused.";
    family(
        out,
        "gauge",
        "stevedore_queue_paused",
        help,
        per_queue(&is_paused),
    );
}

/// Writes one metric family: its help, its type, and its samples (`labels`, value).
fn family(out: &mut String, kind: &str, name: &str, help: &str, samples: Vec<(String, f64)>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// `{queue="NAME"}`, or `{queue="NAME",state="STATE"}`. Queue names are `[A-Za-z0-9_.:-]`:
/// nothing to escape.
fn label(queue: &str, state: &str) -> String {
    match state {
        "" => format!("{{queue=\"{queue}\"}}"),
        state => format!("{{queue=\"{queue}\",state=\"{state}\"}}"),
    }
}
