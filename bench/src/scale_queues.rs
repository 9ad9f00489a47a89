//! How a worker's costs grow with the queues it reads (issue 22, point 3). For 10, 100 and
//! 1,000 queues, each count on a fresh server:
//!
//! 1. Fetch: one stock worker reads every queue; no-ops are published to the last one (the
//!    worst place: every read names the others first). Redis CPU and commands per task.
//! 2. Listing: `stevedore queues` with that many queues.
//! 3. Delayed forwarding: the last queue's delayed set holds a backlog (1,000,000 in a full
//!    run) due in an hour. Redis CPU at rest with it (the forwarder's passes over every queue,
//!    the fetcher's blocking reads), then no-ops published with one eta just ahead: Redis CPU
//!    per delayed task (publish, hint, forward, run, record) and the time from their due time
//!    until the last one has run.
//! 4. Scrape: a worker with `--http` runs a no-op from every queue; the time and size of a
//!    `/metrics` scrape that then holds series for every queue.

use std::time::{Duration, Instant};

use stevedore::{Client, Destination, PublishOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::args::Sizes;
use crate::measure;
use crate::server::{Server, Worker};

/// Far-future entries written per `ZADD` while filling the delayed backlog.
const FILL_CHUNK: usize = 1_000;
/// How far ahead the measured delayed tasks are due: time to publish them all first.
const DUE_AHEAD: Duration = Duration::from_secs(2);
/// The window Redis CPU at rest is measured over (covers two forwarder safety passes).
const REST_WINDOW: Duration = Duration::from_secs(10);
/// Scrapes timed per queue count (the median is kept).
const SCRAPES: usize = 5;

/// The figures for each queue count.
pub async fn costs(sizes: &Sizes) -> anyhow::Result<serde_json::Value> {
    let mut by_queues = serde_json::Map::new();
    for &count in &sizes.scale_queues {
        let server = Server::start(false)?;
        let client = Client::connect(&server.url(), "stevedore").await?;
        let names: Vec<String> = (0..count).map(|i| format!("q{i:04}")).collect();
        let mut figures = {
            let _worker = Worker::start(&server.url(), "many", &["--queues", &names.join(",")])?;
            measure::wait_for_workers(&client, 1).await?;
            let mut figures = fetch_cost(&server, &client, &names, sizes.scale_tasks).await?;
            let delayed = delayed_cost(&server, &client, &names, sizes).await?;
            merge(&mut figures, delayed);
            figures
        };
        merge(&mut figures, scrape_cost(&server, &client, &names).await?);
        eprintln!("scale: {count} queues: {figures}");
        by_queues.insert(count.to_string(), figures);
    }
    Ok(serde_json::Value::Object(by_queues))
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(into), serde_json::Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

/// Parts 1 and 2: `tasks` no-ops through the last queue, then the listing.
async fn fetch_cost(
    server: &Server,
    client: &Client,
    names: &[String],
    tasks: usize,
) -> anyhow::Result<serde_json::Value> {
    let last = names.last().cloned().unwrap_or_default();
    let (cpu, cmds) = (server.cpu_seconds().await?, server.commands_total().await?);
    let options = PublishOptions::new().queue(&last);
    measure::publish_noops(client, tasks, &options).await?;
    measure::wait_queue_drained(server, &last).await?;
    let per_task = |x: f64| x / tasks as f64;
    let redis_us = per_task((server.cpu_seconds().await? - cpu) * 1e6);
    let cmds_per_task = per_task((server.commands_total().await? - cmds) as f64);
    let started = Instant::now();
    let listed = client.queues().await?.len();
    let queues_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(serde_json::json!({
        "redis_cpu_us_per_task": redis_us,
        "redis_cmds_per_task": cmds_per_task,
        "queues_listing_ms": queues_ms,
        "queues_listed": listed,
    }))
}

/// Part 3: the delayed backlog, Redis at rest with it, then `scale_tasks` delayed no-ops.
async fn delayed_cost(
    server: &Server,
    client: &Client,
    names: &[String],
    sizes: &Sizes,
) -> anyhow::Result<serde_json::Value> {
    let last = names.last().cloned().unwrap_or_default();
    let backlog = sizes.scale_delayed;
    let delayed_key = client.broker().keys().delayed(&Destination::queue(&last)?);
    fill_far_future(server, &delayed_key, backlog).await?;
    let cpu = server.cpu_seconds().await?;
    tokio::time::sleep(REST_WINDOW).await;
    let rest = (server.cpu_seconds().await? - cpu) / REST_WINDOW.as_secs_f64();

    let tasks = sizes.scale_tasks;
    let cpu = server.cpu_seconds().await?;
    let due = stevedore::now_ms() + DUE_AHEAD.as_millis() as u64;
    let options = PublishOptions::new().queue(&last).eta(due);
    measure::publish_noops(client, tasks, &options).await?;
    let published_ms = stevedore::now_ms();
    anyhow::ensure!(
        published_ms < due,
        "publishing {tasks} delayed tasks took past their due time; lower the count"
    );
    wait_delayed_back_to(server, &delayed_key, backlog as u64).await?;
    measure::wait_queue_drained(server, &last).await?;
    let drained_after_due_ms = stevedore::now_ms().saturating_sub(due);
    let redis_us = (server.cpu_seconds().await? - cpu) * 1e6 / tasks as f64;
    Ok(serde_json::json!({
        "delayed_backlog": backlog,
        "redis_cpu_share_at_rest_with_backlog": rest,
        "delayed_redis_cpu_us_per_task": redis_us,
        "delayed_drained_after_due_ms": drained_after_due_ms,
    }))
}

/// Adds `count` entries due in an hour to delayed set `key`, in one script (seconds for a
/// million; they are never due during the run, so they need not be messages).
async fn fill_far_future(server: &Server, key: &str, count: usize) -> anyhow::Result<()> {
    let script = redis::Script::new(
        r"
        local due, n, chunk = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
        for first = 1, n, chunk do
          local args = {}
          for i = first, math.min(first + chunk - 1, n) do
            args[#args + 1] = due + i
            args[#args + 1] = 'far-future-' .. i
          end
          redis.call('ZADD', KEYS[1], unpack(args))
        end
        return redis.call('ZCARD', KEYS[1])",
    );
    let due = stevedore::now_ms() + 3_600_000;
    let held: u64 = script
        .key(key)
        .arg(due)
        .arg(count)
        .arg(FILL_CHUNK)
        .invoke_async(&mut server.connection().await?)
        .await?;
    anyhow::ensure!(
        held == count as u64,
        "the delayed backlog holds {held}, not {count}"
    );
    Ok(())
}

/// Waits until delayed set `key` is back to `count` entries (the due ones forwarded).
async fn wait_delayed_back_to(server: &Server, key: &str, count: u64) -> anyhow::Result<()> {
    let mut conn = server.connection().await?;
    let deadline = Instant::now() + measure::DRAIN_LIMIT;
    loop {
        let held: u64 = redis::cmd("ZCARD").arg(key).query_async(&mut conn).await?;
        if held <= count {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} delayed tasks not forwarded",
            held - count
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Part 4: a worker serving `/metrics` runs a no-op from every queue; then the scrape.
async fn scrape_cost(
    server: &Server,
    client: &Client,
    names: &[String],
) -> anyhow::Result<serde_json::Value> {
    let port = stevedore_harness::tcp_node::free_port();
    let addr = format!("127.0.0.1:{port}");
    let queues = names.join(",");
    let _worker = Worker::start(
        &server.url(),
        "scraped",
        &["--queues", &queues, "--http", &addr],
    )?;
    measure::wait_for_workers(client, 1).await?;
    for chunk in names.chunks(1_000) {
        let mut messages = Vec::new();
        for name in chunk {
            let options = PublishOptions::new().queue(name);
            let noop = Client::message("stevedore.noop", Vec::new(), Default::default(), &options);
            messages.push(noop?);
        }
        client.publish_many(messages).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut body = scrape(&addr).await?;
    while series_of_runs(&body) < names.len() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the scrape shows {} of {} queues' runs after 60 s",
            series_of_runs(&body),
            names.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        body = scrape(&addr).await?;
    }
    let mut times = Vec::new();
    for _ in 0..SCRAPES {
        let started = Instant::now();
        body = scrape(&addr).await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "metrics_scrape_ms": times[times.len() / 2],
        "metrics_scrape_bytes": body.len(),
    }))
}

/// Series of `stevedore_tasks_total` in a scrape: one per (queue, task, outcome) seen.
fn series_of_runs(body: &str) -> usize {
    body.lines()
        .filter(|l| l.starts_with("stevedore_tasks_total{"))
        .count()
}

/// The body of `GET /metrics` from `addr` (HTTP/1.1, the connection closed after it).
async fn scrape(addr: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("{addr}/metrics: no HTTP response"))?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "{addr}/metrics: {head}");
    Ok(body.to_owned())
}
