//! Publishes a mix of the app's tasks, waits for each, and prints what ran where.

use std::time::{Duration, Instant};

use clap::Parser;
use stevedore::{Client, PublishOptions, TaskRecord};
use stevedore_examples::tasks::{clear_cache, render_thumbnail, write_report};

#[derive(Debug, Parser)]
#[command(about = "Publishes demo tasks and shows them run")]
struct Args {
    /// Redis and namespace.
    #[command(flatten)]
    global: stevedore_runtime::GlobalArgs,
    /// Thumbnails to render.
    #[arg(long, default_value_t = 12)]
    thumbnails: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::connect(&args.global.redis_url, &args.global.namespace).await?;
    let wait = PublishOptions::new().notify(true);
    let started = Instant::now();

    // Many tasks in one pipelined round trip.
    let sizes = [(64, 64), (128, 96), (320, 240), (640, 480)];
    let messages = (0..args.thumbnails)
        .map(|i| render_thumbnail::message(sizes[i as usize % sizes.len()], &wait))
        .collect::<stevedore::Result<Vec<_>>>()?;
    let mut handles = client.publish_many(messages).await?;
    // A typed handle: `get` would decode the report's result as a u64; here every handle is
    // read as a record, so they go in one list untyped.
    let report = write_report::apply_async(&client, ("quarterly".into(), 500), wait.clone());
    handles.push(report.await?.typed());
    handles.push(
        render_thumbnail::apply_async(&client, (0, 10), wait.clone())
            .await?
            .typed(),
    );
    println!(
        "published {} tasks in {:?}",
        handles.len(),
        started.elapsed()
    );

    for handle in &handles {
        let record = handle.wait(Duration::from_secs(30)).await?;
        print_outcome(&record);
    }

    let broadcast = clear_cache::apply_async(&client, (), wait.broadcast()).await?;
    broadcast.wait(Duration::from_secs(30)).await?;
    let record = wait_for_every_node(&client, broadcast.id()).await?;
    println!(
        "broadcast cache.clear ran on {} node(s):",
        record.runs.len()
    );
    for run in record.runs.values() {
        println!("  {:<8} -> {}", run.node, json(&run.result));
    }
    println!("all done in {:?}", started.elapsed());
    Ok(())
}

/// Waits until the broadcast's runs stop changing: every live node has reported.
async fn wait_for_every_node(client: &Client, id: &str) -> anyhow::Result<TaskRecord> {
    let nodes = 2;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let record = client.task(id).await?;
        if (record.runs.len() >= nodes && record.state().is_final()) || Instant::now() > deadline {
            return Ok(record);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn print_outcome(record: &TaskRecord) {
    for run in record.runs.values() {
        let outcome = match (&run.result, &run.error) {
            (_, Some(error)) => format!("FAILED: {error}"),
            (result, None) => json(result),
        };
        println!("{:<24} on {:<8} {}", run.task, run.node, outcome);
    }
}

fn json(value: &Option<rmpv::Value>) -> String {
    value
        .as_ref()
        .and_then(|v| serde_json::to_string(v).ok())
        .unwrap_or_else(|| "null".into())
}
