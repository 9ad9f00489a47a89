//! What a task says while it runs: progress reports (`ctx.set_progress`, seen from the handle,
//! `stevedore task`, the event stream) and its own log lines (kept with its record, escaped,
//! bounded).

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
    let _: () = redis::cmd("RPUSH")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_own_log_lines_are_kept_with_its_record_escaped_and_bounded() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;
    let options = PublishOptions::new().notify(true);
    let message = Client::message("tests.chatty", vec![3.into()], Default::default(), &options);
    let handle = client.publish(message.unwrap()).await.unwrap();
    handle.wait(WAIT).await.unwrap();
    let admin = env!("CARGO_BIN_EXE_test-admin");
    let json = run_cli(admin, &redis.url(), &["task", handle.id(), "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let log: Vec<String> = (json["log"].as_array().unwrap().iter())
        .map(|l| l.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        log.len(),
        2 * (1 + 4),
        "two attempts, a header and four lines each: {log:?}"
    );
    assert_eq!(log[0], "-- attempt 1 on w --");
    assert!(log[1].ends_with("INFO working on item 0 n=0"), "{}", log[1]);
    assert!(
        !log.iter().any(|l| l.contains("debug lines")),
        "INFO and above only"
    );
    assert!(
        !log.iter().any(|l| l.contains("retry scheduled")),
        "the worker's own lines stay out"
    );
    let text = run_cli(admin, &redis.url(), &["task", handle.id()]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("forged\\nstate: succeeded \\u{1b}[31m"),
        "escaped: {text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("state: succeeded")),
        "{text}"
    );
    // A hundred lines at most per attempt, the oldest dropped and counted.
    let message = Client::message(
        "tests.chatty",
        vec![150.into()],
        Default::default(),
        &options,
    );
    let long = client.publish(message.unwrap()).await.unwrap();
    long.wait(WAIT).await.unwrap();
    let view = client.admin().task(long.id()).await.unwrap();
    assert_eq!(
        view.log.len(),
        200,
        "two attempts of 100 kept lines, headers trimmed first"
    );
    assert!(
        view.log
            .iter()
            .any(|l| l.starts_with("(51 earlier lines dropped")),
        "{:?}",
        &view.log[..3]
    );
}
