//! How fast the dashboard's overview answers: 100 queues (one waiting task each) and 50 worker
//! heartbeats, the page rendered through the router (no network), then the same again with
//! 100,000 finished task records in Redis (the overview finds queues by SCAN, which walks
//! every key).

use std::time::Instant;

use stevedore::nodes::NodeBeat;
use stevedore::{Client, PublishOptions};
use tower::ServiceExt as _;

use crate::measure::Percentiles;
use crate::server::Server;

/// Overview render times (ms): without, then with, `records` task records present.
pub async fn overview(server: &Server, records: usize) -> anyhow::Result<serde_json::Value> {
    let client = Client::connect(&server.url(), "webbench").await?;
    let messages = (0..100)
        .map(|q| {
            let options = PublishOptions::new().queue(format!("q{q:03}"));
            Client::message("stevedore.noop", vec![], Default::default(), &options)
        })
        .collect::<stevedore::Result<Vec<_>>>()?;
    client.publish_many(messages).await?;
    for n in 0..50 {
        client.broker().beat(&beat(n)).await?;
    }
    let app = stevedore_web::router(client.clone(), stevedore_web::WebConfig::default());
    let bare = render_times(&app, 50).await?;
    let mut conn = server.connection().await?;
    for chunk in (0..records).collect::<Vec<_>>().chunks(10_000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("HSET")
                .arg(format!("webbench:{{t:{i}}}:record"))
                .arg("task")
                .arg("x")
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
    let loaded = render_times(&app, 20).await?;
    eprintln!(
        "web overview (100 queues, 50 nodes): p50 {:.2} ms; with {records} records {:.2} ms",
        bare.p50, loaded.p50
    );
    Ok(
        serde_json::json!({"bare_ms": bare.json(), "with_records_ms": loaded.json(), "records": records}),
    )
}

/// Render times of `GET /`, `n` times.
async fn render_times(app: &axum::Router, n: usize) -> anyhow::Result<Percentiles> {
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3)?;
    for _ in 0..n {
        let request = axum::http::Request::get("/").body(axum::body::Body::empty())?;
        let started = Instant::now();
        let response = app.clone().oneshot(request).await?;
        let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
        histogram.record(started.elapsed().as_micros() as u64)?;
    }
    Ok(Percentiles::of(&histogram))
}

/// A live worker's heartbeat, number `n`.
fn beat(n: usize) -> NodeBeat {
    NodeBeat {
        node: format!("node-{n:02}"),
        consumer: format!("node-{n:02}:1"),
        version: env!("CARGO_PKG_VERSION").into(),
        protocol: 1,
        pid: 1000 + n as u32,
        started_at: stevedore::now_ms(),
        queues: vec!["default".into()],
        pool: "async".into(),
        max_workers: 32,
        busy: n % 32,
        consuming: true,
        last_work_at: Some(stevedore::now_ms()),
    }
}
