//! Task records in Redis: which runs leave one (the record policy) and how long each is kept
//! (the retention of successes and of the rest), and how small one is.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::process::Command;
use std::time::Duration;

use stevedore::{Client, Error, PublishOptions, RecordPolicy, TaskState};
use stevedore_tests::{
    eventually, started_counts, tasks, test_admin_bin, test_worker_bin, RedisServer, WorkerProcess,
};

const WAIT: Duration = Duration::from_secs(30);

async fn exists(redis: &RedisServer, id: &str) -> bool {
    let mut conn = redis.connection().await;
    redis::cmd("EXISTS")
        .arg(stevedore_tests::keys().record(id))
        .query_async::<i64>(&mut conn)
        .await
        .unwrap()
        == 1
}

async fn pttl(redis: &RedisServer, id: &str) -> i64 {
    let mut conn = redis.connection().await;
    redis::cmd("PTTL")
        .arg(stevedore_tests::keys().record(id))
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_recording_failures_leaves_no_key_for_a_success_and_a_record_of_a_failure() {
    let redis = RedisServer::start();
    // One slot: runs go in stream order, so once the last task's record is final every run
    // before it has been settled.
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--max-workers", "1"]);
    let client = redis.stevedore().await;

    let success = tasks::quiet::delay(&client, false).await.unwrap();
    let failure = tasks::quiet::delay(&client, true).await.unwrap();
    let none = PublishOptions::new().record(RecordPolicy::None);
    let unrecorded_failure = tasks::quiet::apply_async(&client, (true,), none)
        .await
        .unwrap();
    let all = PublishOptions::new().record(RecordPolicy::All).notify(true);
    let recorded_success = tasks::quiet::apply_async(&client, (false,), all)
        .await
        .unwrap();
    let last = recorded_success.wait(WAIT).await.unwrap();

    assert_eq!(last.state(), TaskState::Succeeded, "the call's policy wins");
    assert!(
        !exists(&redis, success.id()).await,
        "record = \"failures\" leaves no key for a success"
    );
    let failed = failure.record().await.unwrap();
    assert_eq!(failed.state(), TaskState::Failed, "a failure is recorded");
    assert!(
        !exists(&redis, unrecorded_failure.id()).await,
        "record none leaves no key even for a failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_run_that_left_no_record_is_run_again_like_one_that_never_started() {
    let redis = RedisServer::start();
    let fast = ["--heartbeat", "200ms", "--lost-after", "1s"];
    let doomed = WorkerProcess::start(test_worker_bin!(), &redis, "doomed", &fast);
    let client = redis.stevedore().await;
    let mut ids = Vec::new();
    for policy in [RecordPolicy::Failures, RecordPolicy::None] {
        let options = PublishOptions::new().record(policy);
        let handle = tasks::block::apply_async(&client, (), options)
            .await
            .unwrap();
        ids.push(handle.id().to_owned());
    }
    let started_times = |times: usize| {
        let (redis, ids) = (&redis, ids.clone());
        move || {
            let ids = ids.clone();
            async move {
                let counts = started_counts(redis).await;
                let all = ids
                    .iter()
                    .all(|id| counts.get(id).copied().unwrap_or(0) >= times);
                all.then_some(())
            }
        }
    };
    eventually("both to start on the doomed node", WAIT, started_times(1)).await;

    let _alive = WorkerProcess::start(test_worker_bin!(), &redis, "alive", &fast);
    doomed.signal(nix::sys::signal::Signal::SIGKILL);
    // No record says they started (nor how they ended): the reaper cannot tell them from
    // runs that never started, and queues them again (at-least-once), never failing them.
    eventually(
        "both to start again on the live node",
        WAIT,
        started_times(2),
    )
    .await;
    for id in &ids {
        assert!(!exists(&redis, id).await, "{id} left a record");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_nobody_waits_for_is_kept_30s_and_the_rest_for_the_record_ttl() {
    let redis = RedisServer::start();
    // Setting --record-ttl leaves --succeeded-ttl at its default (the harness only lengthens
    // it when a test sets neither).
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--record-ttl", "1h"]);
    let client = redis.stevedore().await;

    let plain = tasks::add::delay(&client, 1, 1).await.unwrap();
    let waited = PublishOptions::new().notify(true);
    let waited = tasks::add::apply_async(&client, (2, 2), waited)
        .await
        .unwrap();
    let recorded = PublishOptions::new().record(RecordPolicy::All);
    let failure = tasks::quiet::apply_async(&client, (true,), recorded)
        .await
        .unwrap();
    plain.wait(WAIT).await.unwrap();
    waited.wait(WAIT).await.unwrap();
    failure.wait(WAIT).await.unwrap();

    let plain_ttl = pttl(&redis, plain.id()).await;
    assert!(
        (1..=30_000).contains(&plain_ttl),
        "a success nobody waits for: {plain_ttl} ms, expected the default --succeeded-ttl 30s"
    );
    for (what, id) in [
        ("waited-for success", waited.id()),
        ("failure", failure.id()),
    ] {
        let ttl = pttl(&redis, id).await;
        assert!(
            (3_500_000..=3_600_000).contains(&ttl),
            "{what}: {ttl} ms, expected --record-ttl 1h"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_on_a_task_that_keeps_no_record_of_its_success_is_refused() {
    let redis = RedisServer::start();
    let client = redis.stevedore().await;

    let notify = PublishOptions::new().notify(true);
    let refused = tasks::quiet::apply_async(&client, (false,), notify).await;
    assert!(
        matches!(&refused, Err(Error::InvalidOptions(m)) if m.contains("record `failures`")),
        "{refused:?}"
    );
    let message = Client::message(
        "tests.add",
        vec![1.into(), 2.into()],
        Default::default(),
        &PublishOptions::new()
            .notify(true)
            .record(RecordPolicy::None),
    )
    .unwrap();
    assert!(matches!(
        client.publish(message).await,
        Err(Error::InvalidOptions(_))
    ));
    assert_eq!(
        client
            .queues()
            .await
            .unwrap()
            .iter()
            .map(|q| q.length)
            .sum::<u64>(),
        0,
        "a refused publish writes nothing"
    );

    let handle = tasks::quiet::delay(&client, false).await.unwrap();
    let started = std::time::Instant::now();
    let waited = handle.wait(WAIT).await;
    assert!(
        matches!(&waited, Err(Error::InvalidOptions(m)) if m.contains("cannot be waited on")),
        "{waited:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once"
    );

    for (args, says) in [
        (&["--record", "none", "--wait"][..], "--wait needs a record"),
        (
            &["--record", "some"][..],
            "is not one of all, failures, none",
        ),
    ] {
        let output = Command::new(test_admin_bin!())
            .args([
                "--redis-url",
                &redis.url(),
                "enqueue",
                "tests.add",
                "--args",
                "[1, 2]",
            ])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.contains(says), "{args:?}: {stderr}");
    }
}
