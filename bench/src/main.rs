//! The benchmark: `cargo run --release -p stevedore-bench -- [--quick] [--json PATH]`.
//!
//! Starts its own redis-server (once without persistence, once with AOF everysec), measures
//! the raw Redis limit for the same work in the same run, then stevedore's publishing,
//! end-to-end throughput with one and two worker processes, latency idle and under load,
//! worker memory, and Redis memory per task; prints a table and optionally writes JSON.

mod args;
mod limits;
mod measure;
mod observing;
mod per_task;
mod raw;
mod scale;
mod scale_queues;
mod server;
mod shards;
mod table;
mod web;
mod workflows;

use std::time::Duration;

use clap::Parser;
use stevedore::{Client, PublishOptions};

use args::{Args, Sizes};
use server::{Server, Worker};

fn main() -> std::process::ExitCode {
    if std::env::var_os(stevedore_bench::WORKER_ENV).is_some() {
        let _ = stevedore_bench::stamp::NAME;
        return stevedore_worker::main();
    }
    if std::env::var_os(stevedore_bench::BEAT_ENV).is_some() {
        return stevedore_beat::main();
    }
    // A failure names its cause on the last line of output: a panic's message is kept and
    // said again once the workers and servers are gone (their shutdown may print after it).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let place = info
            .location()
            .map(|l| format!(" at {l}"))
            .unwrap_or_default();
        let what = (info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        *PANICKED.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{what}{place}"));
        default_hook(info);
    }));
    let outcome = std::panic::catch_unwind(|| {
        tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(bench()))
    });
    match outcome {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
        Err(_) => {
            let panicked = PANICKED.lock().unwrap_or_else(|p| p.into_inner()).take();
            let what = panicked.unwrap_or_else(|| "a panic".into());
            eprintln!("error: the benchmark panicked: {}", what.replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The message of the panic that ended the benchmark, if one did.
static PANICKED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

async fn bench() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(server) = &args.server {
        // Read by the harness when it starts each server, and by the workers' test tasks.
        std::env::set_var("STEVEDORE_TEST_SERVER", server);
    }
    let sizes = Sizes::new(args.quick);
    if args.web_only {
        let server = Server::start(false)?;
        let records = if args.quick { 1_000 } else { 100_000 };
        println!(
            "{}",
            serde_json::to_string_pretty(&web::overview(&server, records).await?)?
        );
        return Ok(());
    }
    if args.per_task_only {
        let server = Server::start(false)?;
        let costs = per_task::costs(&server, sizes.e2e, &payload()?).await?;
        println!("{}", serde_json::to_string_pretty(&costs)?);
        return Ok(());
    }
    if args.core_only {
        let mut json = core(&sizes).await?;
        json["machine"] = machine();
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    if args.workflows_only {
        let server = Server::start(false)?;
        let members = if args.quick { 1_000 } else { 10_000 };
        let workflows = workflows::cost(&server, members, sizes.observe_rounds).await?;
        println!("{}", serde_json::to_string_pretty(&workflows)?);
        return Ok(());
    }
    if args.limits_only {
        let server = Server::start(false)?;
        let limits = limits::cost(&server, sizes.e2e, sizes.observe_rounds).await?;
        println!("{}", serde_json::to_string_pretty(&limits)?);
        return Ok(());
    }
    if args.scale_only {
        let scale = scale::costs(&sizes).await?;
        println!("{}", serde_json::to_string_pretty(&scale)?);
        return Ok(());
    }
    if args.observing_only {
        let server = Server::start(false)?;
        let observing =
            observing::cost(&server, sizes.e2e, sizes.latency, sizes.observe_rounds).await?;
        println!("{}", serde_json::to_string_pretty(&observing)?);
        return Ok(());
    }
    // Written after each part, marked partial until the end: a failure late in a long run
    // keeps the figures of the parts before it.
    let save = |json: &serde_json::Value| -> anyhow::Result<()> {
        if let Some(path) = &args.json {
            std::fs::write(path, serde_json::to_string_pretty(json)?)?;
        }
        Ok(())
    };
    let mut json = run(&sizes, false).await?;
    json["machine"] = machine();
    json["partial"] = true.into();
    save(&json)?;
    json["aof"] = run_aof(&sizes).await?;
    save(&json)?;
    json["shards"] = shards::throughput(sizes.e2e).await?;
    save(&json)?;
    json["scale"] = scale::costs(&sizes).await?;
    if let Some(figures) = json.as_object_mut() {
        figures.remove("partial");
    }
    table::print(&json);
    save(&json)?;
    if let Some(path) = &args.json {
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn payload() -> anyhow::Result<Vec<u8>> {
    Ok(Client::message(
        "stevedore.noop",
        Vec::new(),
        Default::default(),
        &PublishOptions::new(),
    )?
    .encode()?)
}

/// The idle RSS (MiB) of the stock `worker` binary beside this one, `None` without one.
async fn stock_worker_rss(server: &Server, client: &Client) -> anyhow::Result<Option<f64>> {
    let Some(worker) = Worker::start_stock_binary(&server.url(), "stock")? else {
        eprintln!("no stock worker binary beside this one: build it to measure its RSS");
        return Ok(None);
    };
    measure::wait_for_workers(client, 1).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = worker.memory_mb("VmRSS");
    eprintln!("stock worker binary: {:.1} MB idle", rss.unwrap_or(0.0));
    Ok(rss)
}

/// Every figure, without persistence.
async fn run(sizes: &Sizes, aof: bool) -> anyhow::Result<serde_json::Value> {
    let server = Server::start(aof)?;
    let client = Client::connect(&server.url(), "stevedore").await?;
    let raw = raw::raw_cycle(&server.url(), sizes.raw, &payload()?).await?;
    eprintln!("raw cycle: {raw:.0}/s");
    let batched = measure::publish_batched(&client, sizes.publish_batched).await?;
    let single = measure::publish_single(&client, sizes.publish_single).await?;
    eprintln!("publish: {batched:.0}/s batched, {single:.0}/s one by one");
    let one = measure::end_to_end(&server, &client, sizes.e2e, 1).await?;
    let two = measure::end_to_end(&server, &client, sizes.e2e, 2).await?;
    eprintln!("end to end: {one:.0}/s with one worker, {two:.0}/s with two");

    let worker = Worker::start(&server.url(), "latency", &[])?;
    measure::wait_for_workers(&client, 1).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = worker.memory_mb("VmRSS").unwrap_or(0.0);
    let (start_idle, done_idle) = measure::latency(&client, sizes.latency, None).await?;
    let (start_load, done_load) = measure::latency(&client, sizes.latency, Some(one / 2.0)).await?;
    measure::wait_drained(&server).await?;
    let rss_peak = worker.memory_mb("VmHWM").unwrap_or(0.0);
    eprintln!(
        "latency idle p50 {:.3} ms; worker rss {rss_idle:.1} MB idle, {rss_peak:.1} MB peak",
        start_idle.p50
    );

    drop(worker);
    let rss_stock = stock_worker_rss(&server, &client).await?;
    let (beat_lateness, beat_cpu) = measure::beat_lateness(
        &server,
        &client,
        sizes.schedules,
        Duration::from_secs(10),
        sizes.beat_window,
    )
    .await?;
    eprintln!(
        "beat: lateness p50 {:.1} ms with {} schedules, {:.1}% of a core",
        beat_lateness.p50,
        sizes.schedules,
        beat_cpu * 100.0
    );
    let observing =
        observing::cost(&server, sizes.e2e, sizes.latency, sizes.observe_rounds).await?;
    let limits = limits::cost(&server, sizes.e2e, sizes.observe_rounds).await?;
    let members = sizes.e2e / 10;
    let workflows = workflows::cost(&server, members, sizes.observe_rounds).await?;
    // Its own server: records the phases above left expire meanwhile, and would be counted.
    let costs = per_task::costs(&Server::start(false)?, sizes.e2e, &payload()?).await?;
    let per_task = measure::bytes_per_queued_task(&server, &client, sizes.queued).await?;
    let flat = memory_flat(&server, &client, sizes.flat).await?;
    Ok(serde_json::json!({
        "raw_cycle_per_s": raw,
        "publish_per_s": {"batched": batched, "single": single},
        "e2e_per_s": {"one_worker": one, "two_workers": two},
        "e2e_vs_raw": one.max(two) / raw,
        "latency_start_ms": {"idle": start_idle.json(), "loaded": start_load.json()},
        "latency_done_ms": {"idle": done_idle.json(), "loaded": done_load.json()},
        "worker_rss_mb": {"idle": rss_idle, "peak": rss_peak, "stock_worker_idle": rss_stock},
        "redis_bytes_per_queued_task": per_task,
        "beat_fire_lateness_ms": beat_lateness.json(),
        "beat_cpu_share": beat_cpu,
        "memory_flat": flat,
        "observing": observing,
        "limits": limits,
        "workflows": workflows,
        // Issue 22's keys at the top level, as it names them; the rest under `per_task`.
        "worker_cpu_us_per_task": costs["worker_cpu_us_per_task"],
        "e2e_stock_worker_per_s": costs["e2e_stock_worker_per_s"],
        "redis_cpu_us_per_task": costs["redis_cpu_us_per_task"],
        "redis_cmds_per_task": costs["redis_cmds_per_task"],
        "publish_cpu_us_per_task": costs["publish_cpu_us_per_task"],
        "redis_bytes_per_finished_task": costs["redis_bytes_per_finished_task"],
        "per_task": costs,
        "sizes": {"raw": sizes.raw, "e2e": sizes.e2e, "latency_samples": sizes.latency, "flat": sizes.flat},
    }))
}

/// The core figures on one server without persistence: raw cycle, publish, end to end with
/// one and two workers, publish-to-start latency idle.
async fn core(sizes: &Sizes) -> anyhow::Result<serde_json::Value> {
    let server = Server::start(false)?;
    let client = Client::connect(&server.url(), "stevedore").await?;
    let raw = raw::raw_cycle(&server.url(), sizes.raw, &payload()?).await?;
    let batched = measure::publish_batched(&client, sizes.publish_batched).await?;
    let one = measure::end_to_end(&server, &client, sizes.e2e, 1).await?;
    let two = measure::end_to_end(&server, &client, sizes.e2e, 2).await?;
    let worker = Worker::start(&server.url(), "latency", &[])?;
    measure::wait_for_workers(&client, 1).await?;
    let (start_idle, done_idle) = measure::latency(&client, sizes.latency, None).await?;
    drop(worker);
    let per_task = measure::bytes_per_queued_task(&server, &client, sizes.queued).await?;
    Ok(serde_json::json!({
        "raw_cycle_per_s": raw,
        "publish_batched_per_s": batched,
        "e2e_per_s": {"one_worker": one, "two_workers": two},
        "e2e_vs_raw": one.max(two) / raw,
        "latency_idle_ms": {"start": start_idle.json(), "done": done_idle.json()},
        "redis_bytes_per_queued_task": per_task,
    }))
}

/// The throughput figures with AOF everysec.
async fn run_aof(sizes: &Sizes) -> anyhow::Result<serde_json::Value> {
    let server = Server::start(true)?;
    let client = Client::connect(&server.url(), "stevedore").await?;
    let raw = raw::raw_cycle(&server.url(), sizes.raw, &payload()?).await?;
    let batched = measure::publish_batched(&client, sizes.publish_batched).await?;
    let one = measure::end_to_end(&server, &client, sizes.e2e, 1).await?;
    let two = measure::end_to_end(&server, &client, sizes.e2e, 2).await?;
    eprintln!("aof: raw {raw:.0}/s, publish {batched:.0}/s, e2e {one:.0}/s and {two:.0}/s");
    Ok(serde_json::json!({
        "raw_cycle_per_s": raw,
        "publish_per_s": {"batched": batched},
        "e2e_per_s": {"one_worker": one, "two_workers": two},
    }))
}

/// Redis memory before and after `n` tasks passed through (records expiring after 2 s), and
/// the keys left once they expired.
async fn memory_flat(
    server: &Server,
    client: &Client,
    n: usize,
) -> anyhow::Result<serde_json::Value> {
    let mut conn = server.connection().await?;
    // Start from an empty server (it is the benchmark's own), so what is left is this run's.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await?;
    let worker = Worker::start(&server.url(), "flat", &["--record-ttl", "2s"])?;
    measure::wait_for_workers(client, 1).await?;
    let before = server.used_memory().await?;
    let baseline_keys: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await?;
    measure::publish_noops(client, n, &PublishOptions::new()).await?;
    measure::wait_drained(server).await?;
    let drained = server.used_memory().await?;
    // Records expire 2 s after they are written; Redis's active expiry then removes them. Done
    // when the count is back to the baseline, or holds still for a second after the expiry
    // (what stays is left over: the figure below).
    let start = std::time::Instant::now();
    let (deadline, expired) = (
        start + Duration::from_secs(180),
        start + Duration::from_secs(3),
    );
    let (mut keys, mut still) = (u64::MAX, 0);
    while std::time::Instant::now() < deadline && keys > baseline_keys && still < 2 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await?;
        still = if now == keys && std::time::Instant::now() > expired {
            still + 1
        } else {
            0
        };
        keys = now;
    }
    let after = server.used_memory().await?;
    let records = keys.saturating_sub(baseline_keys);
    drop(worker);
    Ok(serde_json::json!({
        "tasks": n, "before_bytes": before, "drained_bytes": drained,
        "after_expiry_bytes": after, "keys_left_over_baseline": records, "keys_left": keys,
    }))
}

fn machine() -> serde_json::Value {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let redis = std::process::Command::new(stevedore_harness::server_binary())
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    serde_json::json!({"cpus": cpus, "redis": redis})
}
