//! The measurements, each against a running server and workers.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use stevedore::{Client, PublishOptions};

use crate::server::{Server, Worker};

fn noop(options: &PublishOptions) -> anyhow::Result<stevedore::Message> {
    Ok(Client::message(
        "stevedore.noop",
        Vec::new(),
        Default::default(),
        options,
    )?)
}

/// Publishes `n` no-op tasks with `options`, in pipelined batches of 1,000.
pub async fn publish_noops(
    client: &Client,
    n: usize,
    options: &PublishOptions,
) -> anyhow::Result<()> {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let messages = chunk
            .iter()
            .map(|_| noop(options))
            .collect::<anyhow::Result<Vec<_>>>()?;
        client.publish_many(messages).await?;
    }
    Ok(())
}

/// Tasks published per second, `n` in pipelined batches of 1,000 (messages built included).
pub async fn publish_batched(client: &Client, n: usize) -> anyhow::Result<f64> {
    let options = PublishOptions::new().queue("publish-only");
    let started = Instant::now();
    publish_noops(client, n, &options).await?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Tasks published per second, one awaited publish at a time.
pub async fn publish_single(client: &Client, n: usize) -> anyhow::Result<f64> {
    let options = PublishOptions::new().queue("publish-only");
    let started = Instant::now();
    for _ in 0..n {
        client.publish(noop(&options)?).await?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Waits until `count` worker processes beat and read their queues.
pub async fn wait_for_workers(client: &Client, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let nodes = client.nodes(Duration::from_secs(15)).await?;
        if nodes.iter().filter(|n| !n.lost && n.beat.consuming).count() >= count {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("{count} workers did not start within 30 s")
}

/// Longest wait for the workers to drain what a measurement published.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(600);

/// Waits until the default queue is empty and nothing is pending, for up to [`DRAIN_LIMIT`].
pub async fn wait_drained(server: &Server) -> anyhow::Result<()> {
    wait_queue_drained(server, "default").await
}

/// Waits until `queue` is empty and nothing is pending, for up to [`DRAIN_LIMIT`].
pub async fn wait_queue_drained(server: &Server, queue: &str) -> anyhow::Result<()> {
    let mut conn = server.connection().await?;
    let deadline = Instant::now() + DRAIN_LIMIT;
    loop {
        let (len, pending): (u64, redis::Value) = redis::pipe()
            .cmd("XLEN")
            .arg(stevedore_bench::stream_of(queue))
            .cmd("XPENDING")
            .arg(stevedore_bench::stream_of(queue))
            .arg("workers")
            .query_async(&mut conn)
            .await?;
        let pending = match pending {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(n)) => *n,
                _ => 0,
            },
            _ => 0,
        };
        if len == 0 && pending == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{len} tasks queued, {pending} pending after {DRAIN_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Tasks run to completion per second: `n` no-op tasks published (batched, while the workers
/// run) and drained by `workers` worker processes.
pub async fn end_to_end(
    server: &Server,
    client: &Client,
    n: usize,
    workers: usize,
) -> anyhow::Result<f64> {
    let prefix = format!("e2e-{workers}");
    Ok(end_to_end_with(
        server,
        client,
        n,
        workers,
        &prefix,
        &[],
        &PublishOptions::new(),
    )
    .await?
    .per_s)
}

/// One drain: its rate and what it cost per task.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    /// Tasks run to completion per second.
    pub per_s: f64,
    /// CPU the worker processes spent per task, in microseconds.
    pub worker_cpu_us: f64,
    /// CPU Redis spent per task, in microseconds.
    pub redis_cpu_us: f64,
}

/// [`end_to_end`] with workers named `PREFIX-I` and started with `extra` arguments, with the
/// CPU the workers and Redis spent from the first publish until drained.
pub async fn end_to_end_with(
    server: &Server,
    client: &Client,
    n: usize,
    workers: usize,
    prefix: &str,
    extra: &[&str],
    options: &PublishOptions,
) -> anyhow::Result<Drain> {
    let fleet: Vec<Worker> = (0..workers)
        .map(|i| Worker::start(&server.url(), &format!("{prefix}-{i}"), extra))
        .collect::<anyhow::Result<_>>()?;
    wait_for_workers(client, workers).await?;
    let worker_cpu = || fleet.iter().filter_map(Worker::cpu_seconds).sum::<f64>();
    let (workers_before, redis_before) = (worker_cpu(), server.cpu_seconds().await?);
    let started = Instant::now();
    publish_noops(client, n, options).await?;
    wait_drained(server).await?;
    let per_s = n as f64 / started.elapsed().as_secs_f64();
    let per_task = |seconds: f64| seconds * 1e6 / n as f64;
    let drain = Drain {
        per_s,
        worker_cpu_us: per_task(worker_cpu() - workers_before),
        redis_cpu_us: per_task(server.cpu_seconds().await? - redis_before),
    };
    drop(fleet);
    Ok(drain)
}

/// Latency percentiles in milliseconds: p50, p99, p99.9.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

impl Percentiles {
    /// The percentiles of `histogram` (microseconds).
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        Self {
            p50: ms(0.5),
            p99: ms(0.99),
            p999: ms(0.999),
        }
    }

    /// As JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"p50": self.p50, "p99": self.p99, "p99.9": self.p999})
    }
}

/// Publish-to-start and publish-to-recorded-outcome latency of `samples` tasks sent one at a
/// time, while (when `load_per_s` is set) no-op tasks are published in the background at that
/// rate, a millisecond's worth at a time: a sample that lands right behind a batch waits for
/// the batch, so the batch's length is a floor under the loaded p99 (10 ms batches, as before
/// issue 22, put about 4 ms under it at half a worker's throughput).
pub async fn latency(
    client: &Client,
    samples: usize,
    load_per_s: Option<f64>,
) -> anyhow::Result<(Percentiles, Percentiles)> {
    let stop = stevedore::CancellationToken::new();
    let load = load_per_s.map(|rate| {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(1));
            let mut owed = 0.0;
            while !stop.is_cancelled() {
                ticks.tick().await;
                owed += rate / 1_000.0;
                let per_tick = owed as usize;
                owed -= per_tick as f64;
                if per_tick == 0 {
                    continue;
                }
                let messages = (0..per_tick)
                    .map(|_| noop(&PublishOptions::new()))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                client.publish_many(messages).await?;
            }
            anyhow::Ok(())
        })
    });
    let mut start = Histogram::<u64>::new(3)?;
    let mut done = Histogram::<u64>::new(3)?;
    let options = PublishOptions::new().notify(true);
    for _ in 0..samples {
        let message = Client::message("bench.stamp", Vec::new(), Default::default(), &options)?;
        let sent = stevedore_bench::now_us();
        let handle = client.publish(message).await?;
        let record = handle.wait(Duration::from_secs(30)).await?;
        let finished = stevedore_bench::now_us();
        let started = record
            .task_run()
            .and_then(|r| r.result.as_ref())
            .and_then(rmpv::Value::as_u64)
            .unwrap_or(finished);
        start.record(started.saturating_sub(sent).max(1))?;
        done.record(finished.saturating_sub(sent).max(1))?;
    }
    stop.cancel();
    if let Some(load) = load {
        load.await??;
    }
    Ok((Percentiles::of(&start), Percentiles::of(&done)))
}

/// Redis memory per waiting task: `n` tasks published to a queue no worker reads.
pub async fn bytes_per_queued_task(
    server: &Server,
    client: &Client,
    n: usize,
) -> anyhow::Result<f64> {
    let before = server.used_memory().await?;
    let options = PublishOptions::new().queue("parked");
    publish_noops(client, n, &options).await?;
    let after = server.used_memory().await?;
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

/// Fire lateness of `count` schedules firing every `period` (their phases spread over the
/// period), watched for `window` while one beat leads; and the beat's CPU use meanwhile.
pub async fn beat_lateness(
    server: &Server,
    client: &Client,
    count: usize,
    period: Duration,
    window: Duration,
) -> anyhow::Result<(Percentiles, f64)> {
    use stevedore::schedule::{Missed, Schedule, Timing};
    let now = stevedore::now_ms();
    let period_ms = period.as_millis() as u64;
    for i in 0..count {
        let schedule = Schedule {
            name: format!("bench-{i}"),
            task: "stevedore.noop".into(),
            args: Vec::new(),
            kwargs: Default::default(),
            queue: "beat-bench".into(),
            timing: Timing::Every { ms: period_ms },
            missed: Missed::Skip,
            paused: false,
            created_at: now - (i as u64 * period_ms / count as u64),
            last_fired_at: None,
            from_config: false,
        };
        client.put_schedule(&schedule).await?;
    }
    let beat = crate::server::Beat::start(&server.url())?;
    let cpu_before = beat.cpu_seconds().unwrap_or(0.0);
    tokio::time::sleep(window).await;
    let cpu = beat.cpu_seconds().unwrap_or(0.0) - cpu_before;
    drop(beat);
    let mut lateness = Histogram::<u64>::new(3)?;
    let mut conn = server.connection().await?;
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stevedore_bench::stream_of("beat-bench"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await?;
    for entry in entries.ids {
        let Some(redis::Value::BulkString(bytes)) = entry.map.get("m") else {
            continue;
        };
        let message = stevedore::Message::decode(bytes)?;
        let fire_at: u64 = message
            .headers
            .get("fire_at")
            .and_then(|t| t.parse().ok())
            .unwrap_or(message.published_at);
        lateness.record((message.published_at.saturating_sub(fire_at) * 1000).max(1))?;
    }
    Ok((Percentiles::of(&lateness), cpu / window.as_secs_f64()))
}

/// The median of `values` (0 when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}
