//! What one task costs, for the raw cycle and for stevedore in the same run (issue 22, point
//! 1): Redis CPU and commands per task (INFO cpu and commandstats deltas), the workers' CPU per
//! task with two workers, the publisher's CPU per task, and two stock workers (default flags)
//! draining a backlog, with the Redis memory each finished task leaves.

use std::time::Instant;

use stevedore::{Client, PublishOptions};

use crate::measure;
use crate::raw;
use crate::server::{Server, Worker};

/// Redis CPU (s) and commands run so far.
async fn redis_spent(server: &Server) -> anyhow::Result<(f64, u64)> {
    Ok((server.cpu_seconds().await?, server.commands_total().await?))
}

/// CPU (user + system, s) this process used so far.
fn own_cpu() -> f64 {
    crate::server::cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// The per-task figures: `n` tasks through the raw cycle, then through stevedore.
pub async fn costs(server: &Server, n: usize, payload: &[u8]) -> anyhow::Result<serde_json::Value> {
    let client = Client::connect(&server.url(), "stevedore").await?;
    let per_task = |x: f64| x * 1e6 / n as f64;
    let before = redis_spent(server).await?;
    let raw_per_s = raw::raw_cycle(&server.url(), n, payload).await?;
    let after = redis_spent(server).await?;
    let raw_cpu = per_task(after.0 - before.0);
    let raw_cmds = (after.1 - before.1) as f64 / n as f64;

    let (cpu, spent) = (own_cpu(), redis_spent(server).await?);
    let drain = measure::end_to_end_with(
        server,
        &client,
        n,
        2,
        "per-task",
        &[],
        &PublishOptions::new(),
    )
    .await?;
    let cmds = (redis_spent(server).await?.1 - spent.1) as f64 / n as f64;
    let publish_cpu = per_task(own_cpu() - cpu);

    let (stock, bytes) = stock_backlog(server, &client, n).await?;
    let expiry = expiry_cpu(server, 2 * n).await?;
    eprintln!(
        "per task: Redis {raw_cpu:.1} us / {raw_cmds:.2} cmds raw, {:.1} us / {cmds:.2} cmds \
         stevedore; workers {:.1} us; stock workers drain a backlog at {stock:.0}/s and leave \
         {bytes:.0} bytes per task in Redis; expiring a record costs Redis {expiry:.1} us",
        drain.redis_cpu_us, drain.worker_cpu_us
    );
    Ok(serde_json::json!({
        "tasks": n,
        "raw_per_s": raw_per_s,
        "worker_cpu_us_per_task": drain.worker_cpu_us,
        "publish_cpu_us_per_task": publish_cpu,
        "redis_cpu_us_per_task": {"raw": raw_cpu, "stevedore": drain.redis_cpu_us},
        "redis_cmds_per_task": {"raw": raw_cmds, "stevedore": cmds},
        "e2e_two_workers_per_s": drain.per_s,
        "e2e_stock_worker_per_s": stock,
        "redis_bytes_per_finished_task": bytes,
        "redis_expiry_cpu_us_per_task": expiry,
    }))
}

/// Tasks per second when two stock workers (default flags) drain `n` no-ops published first
/// (the queue is paused while they start, and timed from its resume), and the bytes of Redis
/// memory each finished task leaves behind with the default retention (its record).
async fn stock_backlog(server: &Server, client: &Client, n: usize) -> anyhow::Result<(f64, f64)> {
    let queue = stevedore::Destination::queue("default")?;
    let wait = std::time::Duration::from_secs(5);
    client.pause_queue(&queue, true, wait).await?;
    let before = server.used_memory().await?;
    measure::publish_noops(client, n, &PublishOptions::new()).await?;
    let fleet = [
        Worker::start_stock(&server.url(), "stock-0")?,
        Worker::start_stock(&server.url(), "stock-1")?,
    ];
    measure::wait_for_workers(client, 2).await?;
    let started = Instant::now();
    client.pause_queue(&queue, false, wait).await?;
    measure::wait_drained(server).await?;
    let per_s = n as f64 / started.elapsed().as_secs_f64();
    let left = server.used_memory().await?.saturating_sub(before);
    drop(fleet);
    Ok((per_s, left as f64 / n as f64))
}

/// Redis CPU per record expired while the `records` of the two runs above expire (their
/// default retention, 30 s): the part of a task's cost Redis pays after it, which a short run
/// does not see. Includes the idle server's own ticks over the wait (a few tenths of a us).
async fn expiry_cpu(server: &Server, records: usize) -> anyhow::Result<f64> {
    let (cpu, expired) = (server.cpu_seconds().await?, server.expired_keys().await?);
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let gone = server.expired_keys().await? - expired;
        if gone >= records as u64 {
            return Ok((server.cpu_seconds().await? - cpu) * 1e6 / gone as f64);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {gone} of {records} records expired within 120 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
