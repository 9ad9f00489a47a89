//! `stevedore tasks`: finished tasks found in the history the recorder keeps, by state,
//! queue, name, error and age, a page at a time; the history's bound; expired records.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::time::Duration;

use stevedore_tests::{eventually, run_cli, test_worker_bin, RedisServer, WorkerProcess};

fn admin_bin() -> &'static str {
    env!("CARGO_BIN_EXE_test-admin")
}

fn tasks_json(url: &str, args: &[&str]) -> serde_json::Value {
    let out = run_cli(admin_bin(), url, &[&["tasks", "--json"], args].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ids(page: &serde_json::Value) -> Vec<String> {
    (page["tasks"].as_array().unwrap().iter())
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

fn enqueue(url: &str, args: &[&str]) -> String {
    let out = run_cli(admin_bin(), url, &[&["enqueue"], args].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Waits until `tasks --state STATE` lists `n` tasks.
async fn listed(url: &str, state: &str, n: usize) -> serde_json::Value {
    eventually(
        &format!("{n} {state} tasks listed"),
        Duration::from_secs(30),
        || {
            let page = tasks_json(url, &["--state", state, "--limit", "1000"]);
            async move { (ids(&page).len() == n).then_some(page) }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_finds_finished_tasks_by_state_queue_name_error_and_age_a_page_at_a_time() {
    let redis = RedisServer::start();
    let url = redis.url();
    let _w = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "w",
        &["--queues", "default,other"],
    );
    let boom = enqueue(&url, &["stevedore.fail", "--args", "[\"boom one\"]"]);
    let kaput = enqueue(
        &url,
        &[
            "stevedore.fail",
            "--args",
            "[\"Kaput two\"]",
            "--queue",
            "other",
        ],
    );
    let echo = enqueue(&url, &["stevedore.echo", "--kwargs", "{\"x\": 1}"]);
    let ok: Vec<String> = (0..5).map(|_| enqueue(&url, &["stevedore.noop"])).collect();
    let failed = listed(&url, "failed", 3).await;
    let mut found = ids(&failed);
    found.sort();
    let mut expected = vec![boom.clone(), kaput.clone(), echo.clone()];
    expected.sort();
    assert_eq!(found, expected, "{failed}");
    assert_eq!(failed["tasks"][0]["state"], "failed");
    let only = |args: &[&str]| ids(&tasks_json(&url, &[&["--state", "failed"], args].concat()));
    assert_eq!(only(&["--queue", "other"]), [kaput.as_str()]);
    assert_eq!(only(&["--error", "kaput"]), [kaput.as_str()]);
    assert_eq!(only(&["--task", "stevedore.echo"]), [echo.as_str()]);
    assert_eq!(
        only(&["--queue", "other", "--error", "boom"]),
        Vec::<String>::new()
    );
    assert_eq!(only(&["--since", "1h"]).len(), 3);
    let succeeded = listed(&url, "succeeded", 5).await;
    let mut all = ids(&succeeded);
    all.sort();
    let mut sorted_ok = ok.clone();
    sorted_ok.sort();
    assert_eq!(all, sorted_ok);
    // Newest first, and paging from `next` finds every one exactly once.
    let times: Vec<u64> = (succeeded["tasks"].as_array().unwrap().iter())
        .map(|t| t["finished_at"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let mut paged = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut args = vec!["--state", "succeeded", "--limit", "2"];
        if let Some(b) = &before {
            args.extend(["--before", b.as_str()]);
        }
        let page = tasks_json(&url, &args);
        paged.extend(ids(&page));
        match page["next"].as_u64() {
            Some(next) => before = Some(next.to_string()),
            None => break,
        }
    }
    paged.sort();
    assert_eq!(paged, sorted_ok);
    let text = run_cli(
        admin_bin(),
        &url,
        &["tasks", "--state", "failed", "--queue", "other"],
    );
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains(&kaput) && text.contains("Kaput two"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_or_queue_the_history_does_not_keep_is_one_line_and_a_failure() {
    let redis = RedisServer::start();
    let url = redis.url();
    for (args, says) in [
        (&["--state", "running"][..], "give one of succeeded, failed"),
        (
            &["--state", "failed", "--queue", "nope"][..],
            "no queue `nope`",
        ),
    ] {
        let out = run_cli(admin_bin(), &url, &[&["tasks"], args].concat());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(says) && err.lines().count() == 1, "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_id_whose_record_expired_is_counted_not_listed() {
    let redis = RedisServer::start();
    let url = redis.url();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--succeeded-ttl", "1s"]);
    let id = enqueue(&url, &["stevedore.noop"]);
    listed(&url, "succeeded", 1).await;
    let page = eventually(
        "the success's record to expire",
        Duration::from_secs(30),
        || {
            let page = tasks_json(&url, &["--state", "succeeded"]);
            async move { (page["expired"] == 1).then_some(page) }
        },
    )
    .await;
    assert_eq!(ids(&page), Vec::<String>::new(), "{id}: {page}");
    let text = run_cli(admin_bin(), &url, &["tasks", "--state", "succeeded"]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("records expired") && text.contains("--succeeded-ttl"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_keeps_its_bound_under_100000_tasks() {
    let redis = RedisServer::start();
    let url = redis.url();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--history", "500"]);
    enqueue(&url, &["stevedore.noop", "--count", "100000"]);
    let mut conn = redis.connection().await;
    let stream = stevedore_tests::stream_of("default");
    eventually("100,000 no-ops drained", Duration::from_secs(240), || {
        let mut conn = conn.clone();
        let stream = stream.clone();
        async move {
            let pending: u64 = redis::cmd("XLEN")
                .arg(&stream)
                .query_async(&mut conn)
                .await
                .ok()?;
            (pending == 0).then_some(())
        }
    })
    .await;
    let history = stevedore_tests::keys().history(
        &stevedore::Destination::queue("default").unwrap(),
        "succeeded",
    );
    let kept = eventually("the last batch recorded", Duration::from_secs(30), || {
        let mut conn = conn.clone();
        let history = history.clone();
        async move {
            let kept: u64 = redis::cmd("ZCARD")
                .arg(&history)
                .query_async(&mut conn)
                .await
                .ok()?;
            (kept > 0).then_some(kept)
        }
    })
    .await;
    assert_eq!(kept, 500);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&history)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl > 0,
        "the history expires with the records it points at: {ttl}"
    );
    // A page holds 10, and those that finished in the same ms as the 10th.
    let page = tasks_json(&url, &["--state", "succeeded", "--limit", "10"]);
    let times: Vec<u64> = (page["tasks"].as_array().unwrap().iter())
        .map(|t| t["finished_at"].as_u64().unwrap())
        .collect();
    assert!(times.len() >= 10, "{page}");
    assert!(times[10..].iter().all(|t| *t == times[9]), "{times:?}");
    assert_eq!(page["next"].as_u64(), Some(times[9]));
}

fn task_state(url: &str, id: &str) -> serde_json::Value {
    let out = run_cli(admin_bin(), url, &["task", id, "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_is_retried_once_with_its_own_options_from_the_cli() {
    let redis = RedisServer::start();
    let url = redis.url();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let id = enqueue(
        &url,
        &["tests.fail_times", "--args", "[1]", "--retries", "0"],
    );
    listed(&url, "failed", 1).await;
    let out = run_cli(admin_bin(), &url, &["retry", &id, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["retried"][0], id.as_str(), "{json}");
    let done = eventually("the retry to succeed", Duration::from_secs(30), || {
        let json = task_state(&url, &id);
        async move { (json["state"] == "succeeded").then_some(json) }
    })
    .await;
    assert_eq!(done["runs"][0]["attempt"], 2, "its next attempt: {done}");
    assert_eq!(done["runs"][0]["result"], 2);
    assert!(done["unreadable"].as_object().unwrap().is_empty(), "{done}");
    // Not failed any more, unknown, or retried already: one line each, exit 1.
    let again = run_cli(admin_bin(), &url, &["retry", &id, "nope"]);
    let err = String::from_utf8_lossy(&again.stderr).into_owned();
    assert_eq!(again.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is succeeded: only a failed or timed out task can be retried"),
        "{err}"
    );
    assert!(err.contains("no task `nope`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_retries_of_one_failure_publish_it_once() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let id = enqueue(&url, &["stevedore.fail", "--args", "[\"x\"]"]);
    listed(&url, "failed", 1).await;
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(worker.wait_exit(Duration::from_secs(30)).success());
    let client = redis.stevedore().await;
    let (first, second) = tokio::join!(
        client.broker().retry_failed(&id),
        client.broker().retry_failed(&id)
    );
    assert_eq!(
        [first.unwrap(), second.unwrap()]
            .iter()
            .filter(|r| **r)
            .count(),
        1
    );
    let mut conn = redis.connection().await;
    let queued =
        stevedore_tests::stream_len(&mut conn, &stevedore_tests::stream_of("default")).await;
    assert_eq!(queued, 1, "published once");
}
