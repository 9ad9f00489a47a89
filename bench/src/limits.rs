//! What a limit costs a task: end-to-end throughput (two workers) of no-op tasks without a
//! limit, under a named rate limit far above the throughput (every start is asked, none is
//! held back), and under a concurrency limit far above the slots (every start takes and gives
//! back a permit). The modes alternate round by round in one run; each figure is the median
//! of its rounds.

use stevedore::limits::{LimitSpec, Rate};
use stevedore::{Client, PublishOptions};

use crate::measure::{self, Drain};
use crate::server::Server;

/// The modes compared: name, and the named limit the tasks carry.
const MODES: [(&str, Option<&str>); 3] = [
    ("unlimited", None),
    ("rate", Some("bench-rate")),
    ("concurrency", Some("bench-concurrency")),
];

/// The figures of every mode, and the cost of each limit relative to none.
pub async fn cost(
    server: &Server,
    tasks: usize,
    rounds: usize,
) -> anyhow::Result<serde_json::Value> {
    let client = Client::connect(&server.url(), "stevedore").await?;
    let huge_rate = Rate::parse("1000000/s")?.with_burst(1_000_000);
    let rate = LimitSpec {
        rate: Some(huge_rate),
        concurrency: None,
    };
    let concurrency = LimitSpec {
        rate: None,
        concurrency: Some(1_000_000),
    };
    client.broker().set_limit("bench-rate", &rate).await?;
    client
        .broker()
        .set_limit("bench-concurrency", &concurrency)
        .await?;
    let mut drains = [const { Vec::new() }; MODES.len()];
    for round in 0..rounds {
        for (at, (mode, limit)) in MODES.iter().enumerate() {
            let options = match limit {
                Some(name) => PublishOptions::new().limit(*name),
                None => PublishOptions::new(),
            };
            let prefix = format!("limits-{mode}-{round}");
            let drain =
                measure::end_to_end_with(server, &client, tasks, 2, &prefix, &[], &options).await?;
            drains[at].push(drain);
        }
    }
    let of = |at: usize, f: fn(&Drain) -> f64| {
        measure::median(&drains[at].iter().map(f).collect::<Vec<_>>())
    };
    let mut json = serde_json::json!({"rounds": rounds, "tasks": tasks});
    for (at, (mode, _)) in MODES.iter().enumerate() {
        json[mode] = serde_json::json!({
            "e2e_two_workers_per_s": of(at, |d| d.per_s),
            "worker_cpu_us_per_task": of(at, |d| d.worker_cpu_us),
            "redis_cpu_us_per_task": of(at, |d| d.redis_cpu_us),
        });
        if at > 0 {
            let cost = |f: fn(&Drain) -> f64| of(at, f) / of(0, f) - 1.0;
            json[format!("{mode}_cost")] = serde_json::json!({
                "throughput": -cost(|d| d.per_s),
                "worker_cpu": cost(|d| d.worker_cpu_us),
                "redis_cpu": cost(|d| d.redis_cpu_us),
            });
        }
    }
    eprintln!(
        "limits: e2e {:.0}/s unlimited, {:.0}/s rate-limited, {:.0}/s concurrency-limited",
        of(0, |d| d.per_s),
        of(1, |d| d.per_s),
        of(2, |d| d.per_s),
    );
    Ok(json)
}
