//! What a workflow costs next to plain tasks: `n` no-op tasks published and drained by two
//! workers, against a chord of `n` no-op members and a no-op callback timed from submit to
//! its end (every member joined in Redis, the callback published and run). The two alternate
//! round by round on the same workers; each figure is the median of its rounds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use stevedore::{Client, PublishOptions, Signature, Workflow};

use crate::measure;
use crate::server::{Server, Worker};

fn noop() -> Signature {
    Signature::new("stevedore.noop", Vec::new(), BTreeMap::new())
}

/// One round's figures: per second, and the CPU of the workers and Redis per task.
struct Round {
    per_s: f64,
    worker_cpu_us: f64,
    redis_cpu_us: f64,
}

/// The plain and chord figures, and the chord's cost relative to plain tasks.
pub async fn cost(server: &Server, n: usize, rounds: usize) -> anyhow::Result<serde_json::Value> {
    let client = Client::connect(&server.url(), "stevedore").await?;
    let fleet: Vec<Worker> = (0..2)
        .map(|i| Worker::start(&server.url(), &format!("workflows-{i}"), &[]))
        .collect::<anyhow::Result<_>>()?;
    measure::wait_for_workers(&client, 2).await?;
    let worker_cpu = || fleet.iter().filter_map(Worker::cpu_seconds).sum::<f64>();
    let (mut plain, mut chord) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for is_chord in [false, true] {
            let (workers_before, redis_before) = (worker_cpu(), server.cpu_seconds().await?);
            let started = Instant::now();
            if is_chord {
                let members = (0..n).map(|_| noop());
                let workflow = Workflow::chord(members, noop().immutable());
                let handle = client.submit(workflow).await?;
                handle.wait(Duration::from_secs(300)).await?;
            } else {
                measure::publish_noops(&client, n, &PublishOptions::new()).await?;
            }
            measure::wait_drained(server).await?;
            let per_task = |seconds: f64| seconds * 1e6 / n as f64;
            let round = Round {
                per_s: n as f64 / started.elapsed().as_secs_f64(),
                worker_cpu_us: per_task(worker_cpu() - workers_before),
                redis_cpu_us: per_task(server.cpu_seconds().await? - redis_before),
            };
            match is_chord {
                true => chord.push(round),
                false => plain.push(round),
            }
        }
    }
    drop(fleet);
    let of = |rounds: &[Round], f: fn(&Round) -> f64| {
        measure::median(&rounds.iter().map(f).collect::<Vec<_>>())
    };
    let figures = |rounds: &[Round]| {
        serde_json::json!({
            "tasks_per_s": of(rounds, |r| r.per_s),
            "seconds": n as f64 / of(rounds, |r| r.per_s),
            "worker_cpu_us_per_task": of(rounds, |r| r.worker_cpu_us),
            "redis_cpu_us_per_task": of(rounds, |r| r.redis_cpu_us),
        })
    };
    let cost = |f: fn(&Round) -> f64| of(&chord, f) / of(&plain, f) - 1.0;
    eprintln!(
        "workflows: {n} plain tasks drained at {:.0}/s; a chord of {n} ended at {:.0} members/s",
        of(&plain, |r| r.per_s),
        of(&chord, |r| r.per_s),
    );
    Ok(serde_json::json!({
        "members": n,
        "rounds": rounds,
        "plain": figures(&plain),
        "chord": figures(&chord),
        "chord_cost": {
            "throughput": -cost(|r| r.per_s),
            "worker_cpu": cost(|r| r.worker_cpu_us),
            "redis_cpu": cost(|r| r.redis_cpu_us),
        },
    }))
}
