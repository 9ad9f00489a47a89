//! Task semantics: delayed tasks, retries, dead letters, payload limits, queue priorities.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::collections::HashMap;
use std::time::Duration;

use stevedore::control::CancelSelector;
use stevedore::{Client, Destination, PublishOptions, TaskState};
use stevedore_tests::{
    eventually, finished, ran_on, run_cli, runs, stream_len, tasks, test_admin_bin,
    test_worker_bin, RedisServer, WorkerProcess,
};

const WAIT: Duration = Duration::from_secs(30);

// Runs alone under nextest (.config/nextest.toml): it asserts on time, which a busy core
// beside it would skew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_tasks_start_within_100ms_of_their_time_and_none_runs_twice() {
    let redis = RedisServer::start();
    let _workers: Vec<WorkerProcess> = ["a", "b", "c"]
        .iter()
        .map(|n| WorkerProcess::start(test_worker_bin!(), &redis, n, &[]))
        .collect();
    let client = redis.stevedore().await;
    let start = stevedore::now_ms() + 1_500;
    let messages = (0..30u64)
        .map(|i| tasks::count_run::message((), &PublishOptions::new().eta(start + i * 37)))
        .collect::<stevedore::Result<Vec<_>>>()
        .unwrap();
    let etas: HashMap<String, u64> = messages
        .iter()
        .map(|m| (m.id.clone(), m.eta.unwrap()))
        .collect();
    client.publish_many(messages).await.unwrap();
    assert_eq!(
        client
            .broker()
            .delayed_len(&Destination::queue("default").unwrap())
            .await
            .unwrap(),
        30
    );

    let mut conn = redis.connection().await;
    let counted = eventually("30 delayed tasks run", WAIT, || {
        let mut conn = conn.clone();
        async move { Some(runs(&mut conn).await).filter(|r| r.len() == 30) }
    })
    .await;
    assert!(
        counted.values().all(|&n| n == 1),
        "a delayed task ran twice: {counted:?}"
    );
    for (id, eta) in &etas {
        let run = finished(&client, id, WAIT)
            .await
            .task_run()
            .cloned()
            .unwrap();
        let late = run.started_at.unwrap() as i64 - *eta as i64;
        assert!(
            (0..100).contains(&late),
            "task {id} started {late} ms after its time"
        );
    }
    let spread = ["a", "b", "c"].len();
    let mut total = 0;
    for node in ["a", "b", "c"] {
        total += ran_on(&mut conn, node).await.len();
    }
    assert_eq!(total, 30, "over {spread} workers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_whose_delayed_set_is_damaged_holds_back_no_other_queues_delayed_tasks() {
    let redis = RedisServer::start();
    let client = redis.stevedore().await;
    // "broken" comes first in the worker's queues: its delayed set is a string, so its move
    // script fails on every pass.
    let broken = client
        .broker()
        .keys()
        .delayed(&Destination::queue("broken").unwrap());
    let mut conn = redis.connection().await;
    redis::cmd("SET")
        .arg(&broken)
        .arg("not a sorted set")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let _w = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "w",
        &["--queues", "broken,default"],
    );
    let options = PublishOptions::new().eta(stevedore::now_ms() + 300);
    let handle = tasks::add::apply_async(&client, (1, 2), options)
        .await
        .unwrap();
    let record = handle.wait(WAIT).await.unwrap();
    assert_eq!(
        record.state(),
        TaskState::Succeeded,
        "the delayed task in default ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_tasks_still_move_after_the_server_forgets_its_scripts() {
    let redis = RedisServer::start();
    let client = redis.stevedore().await;
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let mut conn = redis.connection().await;
    for round in 0..2 {
        let options = PublishOptions::new().eta(stevedore::now_ms() + 200);
        let handle = tasks::add::apply_async(&client, (round, 1), options)
            .await
            .unwrap();
        let record = handle.wait(WAIT).await.unwrap();
        assert_eq!(record.state(), TaskState::Succeeded, "round {round}");
        // As a restarted or failed-over server would: the forwarder's calls by SHA are refused.
        redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_publish_for_later_moves_nothing_until_its_time() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;
    tasks::add::apply_async(&client, (1, 1), PublishOptions::new())
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    let (mut monitor, seen) = monitor(&redis);
    // Forty hints for a minute from now, then one for 300 ms from now.
    for i in 0..40 {
        let later = PublishOptions::new().eta(stevedore::now_ms() + 60_000);
        tasks::add::apply_async(&client, (i, 1), later)
            .await
            .unwrap();
    }
    let soon = PublishOptions::new().eta(stevedore::now_ms() + 300);
    let handle = tasks::add::apply_async(&client, (0, 0), soon)
        .await
        .unwrap();
    handle.wait(WAIT).await.unwrap();
    let _ = monitor.kill();
    let _ = monitor.wait();
    let moves: Vec<String> = seen
        .try_iter()
        .filter(|line| line.contains("\"EVALSHA\"") && line.contains(":delayed\""))
        .collect();
    // A pass calls the move script once per queue the worker reads (its own, default and the
    // broadcasts, four here): the soon one's pass, and at most one safety pass besides.
    assert!(moves.len() <= 8, "move script calls: {moves:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_delayed_task_is_never_run() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;
    let later = PublishOptions::new().delay(Duration::from_millis(400));
    let doomed = tasks::count_run::apply_async(&client, (), later)
        .await
        .unwrap();
    client
        .cancel(CancelSelector::ids([doomed.id()]), WAIT)
        .await
        .unwrap();
    assert_eq!(
        finished(&client, doomed.id(), WAIT).await.state(),
        TaskState::Cancelled
    );
    let mut conn = redis.connection().await;
    assert!(runs(&mut conn).await.is_empty());
}

/// How long after a run's end its outcome may be settled (the retry's delay drawn) on a
/// loaded machine: the record's `retry_at - finished_at` is the delay plus this.
const SETTLE_SLACK_MS: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_then_end_in_the_dead_letters() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;
    let handle = tasks::flaky::apply_async(&client, (), PublishOptions::new().notify(true))
        .await
        .unwrap();
    let record = handle.wait(WAIT).await.unwrap();
    assert_eq!(record.state(), TaskState::Dead);

    let attempts: Vec<_> = record.attempts.values().collect();
    assert_eq!(
        attempts.len(),
        4,
        "one attempt and 3 retries: {:?}",
        record.attempts.keys()
    );
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.attempt as usize, n + 1);
        assert_eq!(attempt.error.as_deref(), Some("flaky failed again"));
        let expected = if n < 3 {
            TaskState::Retrying
        } else {
            TaskState::Dead
        };
        assert_eq!(attempt.state, expected);
    }
    for pair in attempts.windows(2) {
        let gap = pair[1].started_at.unwrap() - pair[0].finished_at.unwrap();
        // The delay is drawn when the outcome is settled, a little after the run's end: what
        // the record shows is the delay plus that moment (up to SETTLE_SLACK_MS on a loaded
        // machine), never less than the delay.
        let scheduled = pair[0].retry_at.unwrap() - pair[0].finished_at.unwrap();
        assert!(
            (50..=200 + SETTLE_SLACK_MS).contains(&scheduled),
            "backoff {scheduled} ms outside 100 ms..200 ms halved (+{SETTLE_SLACK_MS} ms to settle)"
        );
        assert!(
            gap >= scheduled,
            "retried before its time: {gap} < {scheduled}"
        );
    }

    let dead = client
        .broker()
        .dead_letters(&Destination::queue("default").unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id.as_deref(), Some(handle.id()));
    assert_eq!(dead[0].attempts, Some(4));
    assert_eq!(dead[0].reason, "flaky failed again");
    let mut conn = redis.connection().await;
    assert_eq!(
        stream_len(&mut conn, &stevedore_tests::stream_of("default")).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_requeued_runs_again_and_can_succeed() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;
    let handle = tasks::fail_times::apply_async(&client, (2,), PublishOptions::new().notify(true))
        .await
        .unwrap();
    assert_eq!(handle.wait(WAIT).await.unwrap().state(), TaskState::Dead);

    let listed = run_cli(test_admin_bin!(), &redis.url(), &["dead", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["id"], handle.id());
    assert_eq!(listed[0]["message"]["task"], "tests.fail_times");
    let requeued = run_cli(
        test_admin_bin!(),
        &redis.url(),
        &["dead", "requeue", "--all"],
    );
    assert!(
        requeued.status.success(),
        "{}",
        String::from_utf8_lossy(&requeued.stderr)
    );

    let record =
        eventually("the requeued task to succeed", WAIT, || {
            let client = client.clone();
            let id = handle.id().to_owned();
            async move {
                Some(client.task(&id).await.ok()?).filter(|r| r.state() == TaskState::Succeeded)
            }
        })
        .await;
    assert_eq!(
        record.task_run().unwrap().result,
        Some(3.into()),
        "the third attempt succeeded"
    );
    let dead = client
        .broker()
        .dead_letters(&Destination::queue("default").unwrap(), 10)
        .await
        .unwrap();
    assert!(dead.is_empty(), "requeued letters leave the dead letters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_may_ask_for_its_own_retry_delay() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;
    let handle = tasks::retry_later::apply_async(&client, (), PublishOptions::new().notify(true))
        .await
        .unwrap();
    let record = finished(&client, handle.id(), WAIT).await;
    assert_eq!(record.state(), TaskState::Succeeded);
    let first = &record.attempts[&1];
    assert_eq!(first.state, TaskState::Retrying);
    let asked = first.retry_at.unwrap() - first.finished_at.unwrap();
    assert!(
        (295..=310).contains(&asked),
        "asked for 300 ms, scheduled {asked} ms"
    );
    assert_eq!(record.task_run().unwrap().result, Some(2.into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_capped_by_count_and_by_age() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--dead-letter-cap", "2"]);
    let client = redis.stevedore().await;
    let fast = PublishOptions::new()
        .notify(true)
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .retries(1);
    for _ in 0..3 {
        let handle = tasks::flaky::apply_async(&client, (), fast.clone())
            .await
            .unwrap();
        assert_eq!(handle.wait(WAIT).await.unwrap().state(), TaskState::Dead);
    }
    let queue = Destination::queue("default").unwrap();
    assert_eq!(
        client
            .broker()
            .dead_letters(&queue, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    drop(_w);

    let _w = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "w2",
        &["--dead-letter-max-age", "100ms"],
    );
    let first = tasks::flaky::apply_async(&client, (), fast.clone())
        .await
        .unwrap();
    first.wait(WAIT).await.unwrap();
    let newest = client
        .broker()
        .dead_letters(&queue, 10)
        .await
        .unwrap()
        .last()
        .unwrap()
        .dead_at;
    eventually(
        "every dead letter to be older than 100 ms",
        WAIT,
        || async move { (stevedore::now_ms() > newest + 100).then_some(()) },
    )
    .await;
    let last = tasks::flaky::apply_async(&client, (), fast).await.unwrap();
    last.wait(WAIT).await.unwrap();
    let left = client.broker().dead_letters(&queue, 10).await.unwrap();
    assert_eq!(
        left.iter()
            .map(|l| l.id.clone().unwrap())
            .collect::<Vec<_>>(),
        [last.id().to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_payload_is_refused_and_nothing_is_written() {
    let redis = RedisServer::start();
    let client = redis.stevedore().await;
    let big = "x".repeat(2 * 1024 * 1024);
    let small = Client::message(
        "stevedore.echo",
        vec![1.into()],
        Default::default(),
        &PublishOptions::new(),
    )
    .unwrap();
    let huge = Client::message(
        "stevedore.echo",
        vec![big.into()],
        Default::default(),
        &PublishOptions::new(),
    )
    .unwrap();
    let error = client
        .publish_many(vec![small, huge])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("task `stevedore.echo` not published: its message is 2097"),
        "{error}"
    );
    assert!(error.contains("over the 1048576-byte limit"), "{error}");
    let mut conn = redis.connection().await;
    assert_eq!(
        stream_len(&mut conn, &stevedore_tests::stream_of("default")).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reading_200_queues_looks_for_work_in_one_round_trip_not_one_per_queue() {
    let redis = RedisServer::start();
    let queues: Vec<String> = (0..200).map(|i| format!("q{i:04}")).collect();
    let last = queues.last().unwrap().clone();
    let _w = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "w",
        &["--queues", &queues.join(",")],
    );
    let client = redis.stevedore().await;
    let add = |client: Client| {
        let options = PublishOptions::new().queue(&last).notify(true);
        async move {
            let handle = tasks::add::apply_async(&client, (1, 2), options)
                .await
                .unwrap();
            handle.wait(WAIT).await.unwrap();
        }
    };
    add(client.clone()).await;

    let (mut monitor, seen) = monitor(&redis);
    add(client.clone()).await;

    // The worker has run it and blocks on its queues again: count its reads in between.
    let queue_key = format!("{{q:{last}}}");
    let mut direct_reads = Vec::new();
    loop {
        let line = seen
            .recv_timeout(WAIT)
            .expect("the worker blocks on its queues again");
        if !line.contains("\"XREADGROUP\"") || line.contains(" lua]") {
            continue;
        }
        if line.contains("\"BLOCK\"") {
            if line.contains(&queue_key) {
                break;
            }
            continue;
        }
        direct_reads.push(line);
    }
    let _ = monitor.kill();
    let _ = monitor.wait();
    // At most one: the node's own queue and the queues' first lanes go together in one
    // XREADGROUP (Valkey shows it; Redis 7.0 showed none), the queues then in one script.
    assert!(
        direct_reads.len() <= 1,
        "non-blocking reads sent: {direct_reads:#?}"
    );
}

/// `MONITOR` on `redis`: every command the server runs from now on, one line each ("[0 lua]"
/// from scripts), until the process is killed.
fn monitor(redis: &RedisServer) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut monitor = std::process::Command::new(stevedore_harness::cli_binary())
        .arg("-s")
        .arg(redis.socket())
        .arg("monitor")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    let stdout = monitor.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    assert_eq!(seen.recv_timeout(WAIT).unwrap(), "OK");
    (monitor, seen)
}

/// Publishes 6 `count_run` to each of `high`, `default`, `low` with no worker up, then runs
/// them one at a time with `queues`, and returns the order they ran in (queue initials).
async fn run_order(queues: &str) -> String {
    let redis = RedisServer::start();
    let client = redis.stevedore().await;
    let mut queue_of = HashMap::new();
    for queue in ["low", "default", "high"] {
        let messages = (0..6)
            .map(|_| tasks::count_run::message((), &PublishOptions::new().queue(queue)))
            .collect::<stevedore::Result<Vec<_>>>()
            .unwrap();
        for m in &messages {
            queue_of.insert(m.id.clone(), queue);
        }
        client.publish_many(messages).await.unwrap();
    }
    let _w = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "w",
        &["--max-workers", "1", "--queues", queues],
    );
    let conn = redis.connection().await;
    let order = eventually("18 tasks to run", WAIT, || {
        let mut conn = conn.clone();
        async move { Some(ran_on(&mut conn, "w").await).filter(|ran| ran.len() == 18) }
    })
    .await;
    order
        .iter()
        .map(|id| queue_of[id].chars().next().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_are_read_in_strict_priority_order_under_load() {
    assert_eq!(run_order("high,default,low").await, "hhhhhhddddddllllll");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_queues_interleave_by_weight() {
    let order = run_order("high=5,default=3,low=1").await;
    assert_eq!(&order[..9], "hdhlhdhdh", "{order}");
}
