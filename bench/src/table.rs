//! The summary table a full run prints after its JSON is complete.

use serde_json::Value;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// Prints the run's main figures: throughput, latency and memory, then the phases.
pub fn print(json: &Value) {
    throughput(json);
    latency_and_memory(json);
    phases(json);
}

fn throughput(json: &Value) {
    println!(
        "\n{:<44} {:>14} {:>14}",
        "figure", "no persistence", "AOF everysec"
    );
    let row = |name: &str, a: f64, b: Option<f64>| {
        let b = b.map_or_else(|| "-".to_owned(), |b| format!("{b:.0}"));
        println!("{name:<44} {a:>14.0} {b:>14}");
    };
    let aof = &json["aof"];
    for (name, key, sub, with_aof) in [
        ("raw Redis cycle (tasks/s)", "raw_cycle_per_s", None, true),
        (
            "publish, batched (tasks/s)",
            "publish_per_s",
            Some("batched"),
            true,
        ),
        (
            "publish, one by one (tasks/s)",
            "publish_per_s",
            Some("single"),
            false,
        ),
        (
            "end to end, 1 worker (tasks/s)",
            "e2e_per_s",
            Some("one_worker"),
            true,
        ),
        (
            "end to end, 2 workers (tasks/s)",
            "e2e_per_s",
            Some("two_workers"),
            true,
        ),
    ] {
        let pick = |from: &Value| match sub {
            Some(sub) => f(&from[key][sub]),
            None => f(&from[key]),
        };
        row(name, pick(json), with_aof.then(|| pick(aof)));
    }
    println!(
        "{:<44} {:>14.2}",
        "end to end / raw",
        f(&json["e2e_vs_raw"])
    );
}

fn latency_and_memory(json: &Value) {
    for (name, key) in [
        ("publish->start", "latency_start_ms"),
        ("publish->recorded", "latency_done_ms"),
    ] {
        for load in ["idle", "loaded"] {
            let p = &json[key][load];
            println!(
                "{:<44} {:>8.3} / {:.3} / {:.3} ms",
                format!("{name} {load} p50/p99/p99.9"),
                f(&p["p50"]),
                f(&p["p99"]),
                f(&p["p99.9"])
            );
        }
    }
    let rss = &json["worker_rss_mb"];
    println!(
        "{:<44} {:>8.1} / {:.1} MB (stock binary idle {})",
        "worker RSS idle / peak",
        f(&rss["idle"]),
        f(&rss["peak"]),
        rss["stock_worker_idle"]
            .as_f64()
            .map_or_else(|| "not built".to_owned(), |mb| format!("{mb:.1} MB"))
    );
    println!(
        "{:<44} {:>14.0}",
        "Redis bytes per queued task",
        f(&json["redis_bytes_per_queued_task"])
    );
}

fn phases(json: &Value) {
    let shards = &json["shards"];
    println!(
        "{:<44} {:>8.0} / {:.0} / {:.0}",
        "3 queues/s: 1 server, cluster of 1, of 3",
        f(&shards["single_server_per_s"]),
        f(&shards["cluster_1_master_per_s"]),
        f(&shards["cluster_3_masters_per_s"])
    );
    let observing = &json["observing"];
    for mode in ["off", "metrics", "events", "bare"] {
        let m = &observing[mode];
        println!(
            "{:<44} {:>8.0} /s, {:.1} + {:.1} us CPU, start p50 {:.3} / p99 {:.3} ms",
            format!("observing {mode}: e2e 2 workers"),
            f(&m["e2e_two_workers_per_s"]),
            f(&m["worker_cpu_us_per_task"]),
            f(&m["redis_cpu_us_per_task"]),
            f(&m["start_p50_ms"]),
            f(&m["start_p99_ms"])
        );
    }
    let limits = &json["limits"];
    for mode in ["unlimited", "rate", "concurrency"] {
        let m = &limits[mode];
        println!(
            "{:<44} {:>8.0} /s, {:.1} + {:.1} us CPU",
            format!("limits {mode}: e2e 2 workers"),
            f(&m["e2e_two_workers_per_s"]),
            f(&m["worker_cpu_us_per_task"]),
            f(&m["redis_cpu_us_per_task"])
        );
    }
    let flat = &json["memory_flat"];
    println!(
        "{:<44} {:>8.0} -> {:.0} bytes, {} keys left",
        format!("Redis memory over {} tasks", flat["tasks"]),
        f(&flat["before_bytes"]),
        f(&flat["after_expiry_bytes"]),
        flat["keys_left"]
    );
}
