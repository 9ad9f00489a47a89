//! What seeing the workers costs: end-to-end throughput (two workers) and publish-to-start
//! latency (one worker) with metrics off, with metrics on (`--http`: every run counted and
//! timed), with events on (`--events` on the workers, `STEVEDORE_EVENTS` semantics on the
//! publisher), and bare (no history of finished runs, no task minutes: what they cost). The modes alternate round by round in one run, so the machine's drift falls on
//! each alike; each figure is the median of its rounds.

use stevedore::{Client, ClientConfig};

use crate::measure::{self, Drain, Percentiles};
use crate::server::{Server, Worker};

/// The modes compared: name, worker arguments, whether the publisher writes events. `off`
/// is the default worker (with its history and task minutes); `bare` has neither.
const MODES: [(&str, &[&str], bool); 4] = [
    ("off", &[], false),
    ("metrics", &["--http", "127.0.0.1:0"], false),
    ("events", &["--events"], true),
    (
        "bare",
        &["--history", "0", "--task-minutes", "false"],
        false,
    ),
];

/// The figures of every mode, and the costs of metrics and events relative to off.
pub async fn cost(
    server: &Server,
    tasks: usize,
    samples: usize,
    rounds: usize,
) -> anyhow::Result<serde_json::Value> {
    let mut drains = [const { Vec::new() }; MODES.len()];
    let mut starts = [const { Vec::new() }; MODES.len()];
    for round in 0..rounds {
        for (at, (mode, extra, events)) in MODES.iter().enumerate() {
            let mut config = ClientConfig::new(server.url(), "stevedore");
            config.events = *events;
            let client = Client::with_config(config).await?;
            let prefix = format!("observe-{mode}-{round}");
            let options = stevedore::PublishOptions::new();
            let drain =
                measure::end_to_end_with(server, &client, tasks, 2, &prefix, extra, &options)
                    .await?;
            drains[at].push(drain);
            let worker = Worker::start(&server.url(), &format!("{prefix}-latency"), extra)?;
            measure::wait_for_workers(&client, 1).await?;
            let (start, _) = measure::latency(&client, samples, None).await?;
            drop(worker);
            starts[at].push(start);
        }
    }
    let mut json = serde_json::json!({"rounds": rounds, "tasks": tasks, "samples": samples});
    let of = |at: usize, f: fn(&Drain) -> f64| {
        measure::median(&drains[at].iter().map(f).collect::<Vec<_>>())
    };
    for (at, (mode, _, _)) in MODES.iter().enumerate() {
        let p50s: Vec<f64> = starts[at].iter().map(|p: &Percentiles| p.p50).collect();
        let p99s: Vec<f64> = starts[at].iter().map(|p| p.p99).collect();
        json[mode] = serde_json::json!({
            "e2e_two_workers_per_s": of(at, |d| d.per_s),
            "e2e_runs_per_s": drains[at].iter().map(|d| d.per_s).collect::<Vec<_>>(),
            "worker_cpu_us_per_task": of(at, |d| d.worker_cpu_us),
            "redis_cpu_us_per_task": of(at, |d| d.redis_cpu_us),
            "start_p50_ms": measure::median(&p50s),
            "start_p99_ms": measure::median(&p99s),
        });
    }
    let cost = |at: usize, f: fn(&Drain) -> f64| of(at, f) / of(0, f) - 1.0;
    json["metrics_cost"] = serde_json::json!({
        "throughput": -cost(1, |d| d.per_s),
        "worker_cpu": cost(1, |d| d.worker_cpu_us),
        "redis_cpu": cost(1, |d| d.redis_cpu_us),
    });
    json["events_cost"] = serde_json::json!({
        "throughput": -cost(2, |d| d.per_s),
        "worker_cpu": cost(2, |d| d.worker_cpu_us),
        "redis_cpu": cost(2, |d| d.redis_cpu_us),
    });
    // What the history and the task minutes cost: the default worker against a bare one.
    let history = |f: fn(&Drain) -> f64| of(0, f) / of(3, f) - 1.0;
    json["history_cost"] = serde_json::json!({
        "throughput": -history(|d| d.per_s),
        "worker_cpu": history(|d| d.worker_cpu_us),
        "redis_cpu": history(|d| d.redis_cpu_us),
    });
    eprintln!(
        "observing: e2e {:.0}/s off, {:.0}/s metrics, {:.0}/s events; worker CPU per task \
         {:.1} / {:.1} / {:.1} us",
        of(0, |d| d.per_s),
        of(1, |d| d.per_s),
        of(2, |d| d.per_s),
        of(0, |d| d.worker_cpu_us),
        of(1, |d| d.worker_cpu_us),
        of(2, |d| d.worker_cpu_us),
    );
    Ok(json)
}
