//! What a worker leaves behind when it is killed, stopped or fed garbage.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::collections::BTreeSet;
use std::time::Duration;

use nix::sys::signal::Signal;
use stevedore::broker::keys::QUEUE_GROUP;
use stevedore::{Destination, PublishOptions, TaskState};
use stevedore_tests::{
    dead_of, eventually, pending, run_cli, stream_len, stream_of, tasks, test_admin_bin,
    test_worker_bin, RedisServer, WorkerProcess,
};

/// Waits until the test task `tests.block` with `id` has started and its `running` record is
/// written (the recorder writes it in its next batch, just after the task starts).
async fn wait_started(redis: &RedisServer, id: &str) {
    let conn = redis.connection().await;
    let client = redis.stevedore().await;
    eventually(
        "the blocking task to start",
        Duration::from_secs(20),
        || {
            let mut conn = conn.clone();
            let client = client.clone();
            let id = id.to_owned();
            async move {
                let started: Vec<String> = redis::cmd("LRANGE")
                    .arg("tests:started")
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                let running = client.task(&id).await.ok()?.state() == TaskState::Running;
                (started.contains(&id) && running).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_worker_leaves_its_running_task_pending_in_redis() {
    let redis = RedisServer::start();
    let mut worker = WorkerProcess::start(test_worker_bin!(), &redis, "doomed", &[]);
    let client = redis.stevedore().await;
    let handle = tasks::block::delay(&client).await.unwrap();
    wait_started(&redis, handle.id()).await;

    worker.signal(Signal::SIGKILL);
    worker.wait_exit(Duration::from_secs(10));

    let mut conn = redis.connection().await;
    assert_eq!(
        stream_len(&mut conn, &stream_of("default")).await,
        1,
        "the message must still be in the stream"
    );
    assert_eq!(
        pending(&mut conn, &stream_of("default"), QUEUE_GROUP).await,
        1,
        "the message must be pending"
    );
    let record = client.task(handle.id()).await.unwrap();
    assert_eq!(record.state(), TaskState::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_goes_to_dead_letters_and_the_worker_goes_on() {
    let redis = RedisServer::start();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;
    let garbage = b"\xc1\xffthis is not msgpack".to_vec();
    let default = Destination::queue("default").unwrap();
    let garbage_id = client
        .broker()
        .enqueue_raw(&default, &garbage)
        .await
        .unwrap();
    let handle = tasks::add::apply_async(&client, (2, 3), PublishOptions::new().notify(true))
        .await
        .unwrap();

    let record = handle.wait(Duration::from_secs(20)).await.unwrap();
    assert_eq!(record.task_run().unwrap().result, Some(5.into()));
    let mut conn = redis.connection().await;
    let dead = eventually(
        "the garbage in the dead letters",
        Duration::from_secs(10),
        || {
            let mut conn = conn.clone();
            async move {
                let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                    .arg(dead_of("default"))
                    .arg("-")
                    .arg("+")
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                (!reply.ids.is_empty()).then_some(reply)
            }
        },
    )
    .await;
    assert_eq!(dead.ids.len(), 1);
    let entry = &dead.ids[0];
    let raw: Vec<u8> = entry.get("raw").unwrap();
    let reason: String = entry.get("reason").unwrap();
    let source: String = entry.get("source_id").unwrap();
    assert_eq!(raw, garbage);
    assert!(reason.contains("cannot decode task message"), "{reason}");
    assert_eq!(source, garbage_id);
    assert_eq!(
        pending(&mut conn, &stream_of("default"), QUEUE_GROUP).await,
        0
    );
    assert_eq!(stream_len(&mut conn, &stream_of("default")).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_lets_the_running_task_finish() {
    let redis = RedisServer::start();
    let mut worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;
    let message = stevedore::Client::message(
        "stevedore.sleep",
        vec![700.into()],
        Default::default(),
        &PublishOptions::new(),
    )
    .unwrap();
    let handle = client.publish(message).await.unwrap();
    eventually("the sleep to start", Duration::from_secs(20), || {
        let handle = handle.clone();
        async move { (handle.record().await.ok()?.state() == TaskState::Running).then_some(()) }
    })
    .await;

    worker.signal(Signal::SIGTERM);
    let status = worker.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert_eq!(handle.record().await.unwrap().state(), TaskState::Succeeded);
    let mut conn = redis.connection().await;
    assert_eq!(
        pending(&mut conn, &stream_of("default"), QUEUE_GROUP).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_leaves_the_unfinished_task_pending() {
    let redis = RedisServer::start();
    let mut worker = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "w",
        &["--shutdown-timeout", "300ms"],
    );
    let client = redis.stevedore().await;
    let handle = tasks::block::delay(&client).await.unwrap();
    wait_started(&redis, handle.id()).await;

    worker.signal(Signal::SIGTERM);
    let status = worker.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    let mut conn = redis.connection().await;
    assert_eq!(
        pending(&mut conn, &stream_of("default"), QUEUE_GROUP).await,
        1
    );
    assert_eq!(stream_len(&mut conn, &stream_of("default")).await, 1);
    assert_eq!(
        handle.record().await.unwrap().state(),
        TaskState::Running,
        "no outcome may be recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_signal_stops_at_once() {
    let redis = RedisServer::start();
    let mut worker = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "w",
        &["--shutdown-timeout", "1h"],
    );
    let client = redis.stevedore().await;
    let handle = tasks::block::delay(&client).await.unwrap();
    wait_started(&redis, handle.id()).await;

    worker.signal(Signal::SIGTERM);
    worker.wait_for_log("stopping: no new work", 1, Duration::from_secs(10));
    worker.signal(Signal::SIGINT);
    let status = worker.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    let mut conn = redis.connection().await;
    assert_eq!(
        pending(&mut conn, &stream_of("default"), QUEUE_GROUP).await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_message_is_dead_lettered_once_redis_takes_writes_again_not_stranded() {
    let redis = RedisServer::start();
    let worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    // The worker's user may not XADD for a while: every dead letter it writes is refused, as
    // in a write outage; the test writes through a user of its own.
    let (mut admin, mut tester) = outage_of(&redis, "xadd").await;
    stevedore_tests::push_garbage(&mut tester, "default").await;
    worker.wait_for_log(
        "cannot dead-letter a bad message; retrying",
        1,
        Duration::from_secs(30),
    );
    assert_eq!(
        pending(&mut admin, &stream_of("default"), QUEUE_GROUP).await,
        1
    );

    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "+xadd"])
        .query_async(&mut admin)
        .await
        .unwrap();
    eventually(
        "the bad message in the dead letters",
        Duration::from_secs(30),
        || {
            let mut conn = admin.clone();
            async move {
                let dead: u64 = redis::cmd("XLEN")
                    .arg(dead_of("default"))
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                (dead == 1).then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        pending(&mut admin, &stream_of("default"), QUEUE_GROUP).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_outcomes_cannot_be_written_a_worker_stops_reading_at_its_bound() {
    let redis = RedisServer::start();
    // --max-workers 4: at most 64 entries read and not settled (4 slots' worth, at least 64).
    let worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--max-workers", "4"]);
    // The worker's user may not write records: no outcome can be written.
    let (mut admin, mut tester) = outage_of(&redis, "hset").await;
    let mut pipe = redis::pipe();
    for _ in 0..1000 {
        let message = stevedore::Client::message(
            "stevedore.noop",
            vec![],
            Default::default(),
            &PublishOptions::new(),
        )
        .unwrap();
        pipe.cmd("XADD")
            .arg(stream_of("default"))
            .arg("*")
            .arg("m")
            .arg(message.encode().unwrap())
            .ignore();
    }
    let _: () = pipe.query_async(&mut tester).await.unwrap();
    worker.wait_for_log(
        "cannot write outcomes; retrying",
        1,
        Duration::from_secs(30),
    );
    // Watch for two seconds: the worker reads up to its bound (plus one read of free slots)
    // and no further, however long the outage lasts.
    let watched = std::time::Instant::now();
    let mut most = 0;
    while watched.elapsed() < Duration::from_secs(2) {
        most = most.max(pending(&mut admin, &stream_of("default"), QUEUE_GROUP).await);
        assert!(
            most <= 64 + 4,
            "{most} entries read while no outcome could be written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        most > 8,
        "the worker read well past its slots before the bound stopped it ({most})"
    );

    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "+hset"])
        .query_async(&mut admin)
        .await
        .unwrap();
    eventually("the backlog to drain", Duration::from_secs(60), || {
        let mut conn = admin.clone();
        async move { (stream_len(&mut conn, &stream_of("default")).await == 0).then_some(()) }
    })
    .await;
}

/// A write outage of one command for the workers (the default user loses `command`; a real
/// refused write, as out of memory, without failing the test's own writes). Returns a
/// connection of the default user (to end the outage with `ACL SETUSER default +COMMAND`) and
/// one of a user of the test's own that may still run everything.
async fn outage_of(
    redis: &RedisServer,
    command: &str,
) -> (
    redis::aio::MultiplexedConnection,
    redis::aio::MultiplexedConnection,
) {
    let mut admin = redis.connection().await;
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "tester", "on", "nopass", "~*", "&*", "+@all"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg(format!("-{command}"))
        .query_async(&mut admin)
        .await
        .unwrap();
    let mut tester = redis.connection().await;
    let _: () = redis::cmd("AUTH")
        .arg(&["tester", "x"])
        .query_async(&mut tester)
        .await
        .unwrap();
    (admin, tester)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_redis_refuses_half_way_prints_exactly_the_ids_it_took_and_one_error_line() {
    let redis = RedisServer::start();
    let mut conn = redis.connection().await;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap();
    let used: u64 = (info.lines())
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    // Room for about a hundred of the thousand 2 KB messages.
    let limit = (used + 300_000).to_string();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory", &limit])
        .query_async(&mut conn)
        .await
        .unwrap();
    let args = format!("[\"{}\"]", "x".repeat(2000));
    let enqueue = [
        "enqueue",
        "stevedore.noop",
        "--args",
        &args,
        "--count",
        "1000",
    ];
    let out = run_cli(test_admin_bin!(), &redis.url(), &enqueue);
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory", "0"])
        .query_async(&mut conn)
        .await
        .unwrap();

    assert_eq!(out.status.code(), Some(1));
    let printed: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let client = redis.stevedore().await;
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream_of("default"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let queued: BTreeSet<String> = (entries.ids.iter())
        .filter_map(|entry| entry.get::<Vec<u8>>(stevedore::broker::keys::MESSAGE_FIELD))
        .map(|payload| client.broker().open(&payload).unwrap().id)
        .collect();
    assert!(
        !queued.is_empty() && queued.len() < 1000,
        "Redis took part of the batch: {}",
        queued.len()
    );
    assert_eq!(
        printed, queued,
        "the ids printed are exactly the ids queued"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("OOM"), "names the cause: {err}");
    assert!(
        err.contains(&format!(
            "{} task id(s) printed above are queued",
            queued.len()
        )),
        "{err}"
    );
}
