//! Progress reports: `ctx.set_progress` in a task, seen while it runs from the handle, `stevedore
//! task` (text and JSON), the dashboard's task page and the event stream.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::time::Duration;

use stevedore::{Client, PublishOptions};
use stevedore_tests::{eventually, run_cli, test_worker_bin, RedisServer, WorkerProcess};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_tasks_progress_is_seen_from_its_handle_the_cli_and_the_events() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--events"]);
    let client = redis.stevedore().await;
    let message = Client::message(
        "tests.progress",
        vec![],
        Default::default(),
        &PublishOptions::new(),
    );
    let handle = client.publish(message.unwrap()).await.unwrap();
    let first = eventually("the first report", WAIT, || {
        let handle = handle.clone();
        async move { handle.progress().await.unwrap() }
    })
    .await;
    assert_eq!(
        (first.done, first.total, first.message.as_str()),
        (1, 3, "first step")
    );
    // Seen while it runs (its `running` record follows in the recorder's next batch).
    stevedore_tests::running(&client, handle.id()).await;
    let admin = env!("CARGO_BIN_EXE_test-admin");
    let text = run_cli(admin, &redis.url(), &["task", handle.id()]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("progress:  1/3 (33%) first step"), "{text}");
    let mut conn = redis.connection().await;
    let _: () = redis::cmd("SET")
        .arg(format!("tests:go:{}", handle.id()))
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    handle.wait(WAIT).await.unwrap();
    let json = run_cli(admin, &redis.url(), &["task", handle.id(), "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["progress"]["done"], 3, "{json}");
    assert_eq!(json["progress"]["message"], "all done");
    let events = client.admin().recent_events(100).await.unwrap();
    let reported: Vec<_> = (events.iter())
        .filter(|e| e.event == "progress" && e.id == handle.id())
        .map(|e| (e.done, e.total))
        .collect();
    assert_eq!(reported, [(Some(1), Some(3)), (Some(3), Some(3))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_without_reports_has_no_progress() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;
    let handle = stevedore_tests::tasks::add::apply_async(
        &client,
        (1, 2),
        PublishOptions::new().notify(true),
    );
    let handle = handle.await.unwrap();
    handle.get(WAIT).await.unwrap();
    assert_eq!(handle.progress().await.unwrap(), None);
    let mut conn = redis.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*:progress")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}
