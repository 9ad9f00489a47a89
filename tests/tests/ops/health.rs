//! Node health: heartbeats, lost nodes and their reaping, capacity, and surviving Redis faults.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use stevedore::{Destination, PublishOptions, TaskState};
use stevedore_tests::{
    eventually, finished, run_cli, running, started_counts, tasks, test_admin_bin, test_worker_bin,
    RedisServer, WorkerProcess,
};

const WAIT: Duration = Duration::from_secs(30);
/// Quick heartbeats for tests: lost after one second.
const FAST: [&str; 4] = ["--heartbeat", "200ms", "--lost-after", "1s"];

fn args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut all = FAST.to_vec();
    all.extend_from_slice(extra);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_running_tasks_are_requeued_or_failed_as_lost() {
    let redis = RedisServer::start();
    let mut doomed = WorkerProcess::start(test_worker_bin!(), &redis, "doomed", &args(&[]));
    let client = redis.stevedore().await;
    let retryable = tasks::block::apply_async(&client, (), PublishOptions::new().retries(1))
        .await
        .unwrap();
    let final_one = tasks::block::delay(&client).await.unwrap();
    running(&client, retryable.id()).await;
    running(&client, final_one.id()).await;
    let _alive = WorkerProcess::start(test_worker_bin!(), &redis, "alive", &args(&[]));

    doomed.signal(Signal::SIGKILL);
    doomed.wait_exit(WAIT);
    let killed = Instant::now();
    let lost = finished(&client, final_one.id(), WAIT).await;
    let run = lost.task_run().unwrap();
    assert_eq!(run.state, TaskState::Failed);
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .starts_with("lost: node doomed"),
        "{:?}",
        run.error
    );
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "reaped {:?} after the kill",
        killed.elapsed()
    );

    let requeued = eventually(
        "the retryable task to run again on the live node",
        WAIT,
        || {
            let client = client.clone();
            let id = retryable.id().to_owned();
            async move {
                let record = client.task(&id).await.ok()?;
                let run = record.task_run()?.clone();
                (run.node == "alive" && run.state == TaskState::Running).then_some(record)
            }
        },
    )
    .await;
    assert_eq!(requeued.task_run().unwrap().attempt, 2);
    assert_eq!(requeued.attempts[&1].state, TaskState::Retrying);
    let counts = started_counts(&redis).await;
    assert_eq!(counts.get(retryable.id()), Some(&2));
    assert_eq!(counts.get(final_one.id()), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_node_keeps_a_task_that_runs_far_longer_than_the_grace() {
    let redis = RedisServer::start();
    let _first = WorkerProcess::start(test_worker_bin!(), &redis, "first", &args(&[]));
    let client = redis.stevedore().await;
    let long = tasks::sleep_blind::apply_async(&client, (4_000,), PublishOptions::new().retries(3))
        .await
        .unwrap();
    running(&client, long.id()).await;
    let _reaper = WorkerProcess::start(test_worker_bin!(), &redis, "reaper", &args(&[]));

    let record = finished(&client, long.id(), WAIT).await;
    let run = record.task_run().unwrap();
    assert_eq!(run.state, TaskState::Succeeded);
    assert_eq!(
        (run.node.as_str(), run.attempt),
        ("first", 1),
        "never reaped nor run twice"
    );
    assert!(record.attempts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reapers_racing_over_one_lost_node_reap_each_entry_once() {
    let redis = RedisServer::start();
    let mut doomed = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "doomed",
        &args(&["--max-workers", "20"]),
    );
    let client = redis.stevedore().await;
    let messages = (0..20)
        .map(|_| tasks::block::message((), &PublishOptions::new().retries(1)))
        .collect::<stevedore::Result<Vec<_>>>()
        .unwrap();
    let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
    client.publish_many(messages).await.unwrap();
    for id in &ids {
        running(&client, id).await;
    }
    let _a = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "a",
        &args(&["--max-workers", "20"]),
    );
    let _b = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "b",
        &args(&["--max-workers", "20"]),
    );
    doomed.signal(Signal::SIGKILL);
    doomed.wait_exit(WAIT);

    eventually("every task to start again on a live node", WAIT, || async {
        Some(started_counts(&redis).await).filter(|c| c.len() == 20 && c.values().all(|n| *n >= 2))
    })
    .await;
    eventually(
        "the lost process to be forgotten once reaped",
        WAIT,
        || async {
            let nodes = client.nodes(Duration::from_secs(1)).await.ok()?;
            nodes.iter().all(|n| n.beat.node != "doomed").then_some(())
        },
    )
    .await;
    let counts = started_counts(&redis).await;
    let mut conn = redis.connection().await;
    assert_eq!(
        stevedore_tests::stream_len(&mut conn, &stevedore_tests::stream_of("default")).await,
        20,
        "one new entry per reaped entry"
    );
    assert!(
        counts.values().all(|n| *n == 2),
        "an entry was reaped twice: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_lists_live_and_lost_processes_and_auto_picks_the_freest_node() {
    let redis = RedisServer::start();
    let _roomy = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "roomy",
        &args(&["--max-workers", "8"]),
    );
    let _small = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "small",
        &args(&["--max-workers", "1"]),
    );
    let gone = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "gone",
        &args(&["--max-workers", "50"]),
    );
    gone.signal(Signal::SIGSTOP);
    let client = redis.stevedore().await;
    eventually("the stopped node to be lost", WAIT, || async {
        let nodes = client.nodes(Duration::from_secs(1)).await.ok()?;
        nodes
            .iter()
            .any(|n| n.beat.node == "gone" && n.lost)
            .then_some(())
    })
    .await;

    let out = run_cli(
        test_admin_bin!(),
        &redis.url(),
        &["nodes", "--json", "--lost-after", "1s"],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let state = |node: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == node)
            .unwrap()
            .clone()
    };
    assert_eq!(state("roomy")["state"], "live");
    assert_eq!(state("roomy")["free"], 8);
    assert_eq!(state("roomy")["consuming"], true);
    assert_eq!(state("gone")["state"], "lost");
    assert_eq!(
        state("gone")["free"],
        0,
        "a lost node's capacity counts as zero"
    );

    let out = run_cli(
        test_admin_bin!(),
        &redis.url(),
        &["enqueue", "stevedore.noop", "--node", "auto", "--wait"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let record = finished(&client, &id, WAIT).await;
    assert_eq!(record.task_run().unwrap().node, "roomy");
    gone.signal(Signal::SIGKILL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_recover_from_client_kill_client_pause_and_a_redis_restart() {
    let mut redis = RedisServer::start_with_aof();
    let worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &args(&[]));
    let client = redis.stevedore().await;
    let run_one = |client: stevedore::Client| async move {
        let handle = tasks::add::apply_async(&client, (1, 1), PublishOptions::new().notify(true))
            .await
            .unwrap();
        finished(&client, handle.id(), WAIT).await.state()
    };
    assert_eq!(run_one(client.clone()).await, TaskState::Succeeded);

    let mut conn = redis.connection().await;
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut conn)
        .await
        .unwrap();
    let client = redis.stevedore().await;
    assert_eq!(
        run_one(client.clone()).await,
        TaskState::Succeeded,
        "after CLIENT KILL"
    );

    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .query_async(&mut conn)
        .await
        .unwrap();
    let paused_at = Instant::now();
    let handle = tasks::add::apply_async(&client, (2, 2), PublishOptions::new())
        .await
        .unwrap();
    assert!(
        paused_at.elapsed() >= Duration::from_millis(1000),
        "the publish waited out the pause"
    );
    assert_eq!(
        finished(&client, handle.id(), WAIT).await.state(),
        TaskState::Succeeded,
        "after CLIENT PAUSE"
    );

    redis.restart();
    let client = eventually("a client to connect after the restart", WAIT, || async {
        stevedore::Client::connect(&redis.url(), "stevedore")
            .await
            .ok()
    })
    .await;
    assert_eq!(
        run_one(client.clone()).await,
        TaskState::Succeeded,
        "after a Redis restart"
    );
    worker.wait_for_log("fetching", 4, WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_before_redis_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("later.sock");
    let url = format!("unix://{}", socket.display());
    let mut worker = WorkerProcess::spawn(test_worker_bin!(), &url, "early", &[], &[]);
    worker.wait_for_log("waiting for redis", 1, WAIT);
    let _late = stevedore_tests::redis_server_on(&socket, dir.path());
    worker.wait_for_log("fetching", 2, WAIT);
    let client = stevedore::Client::connect(&url, "stevedore").await.unwrap();
    let handle = tasks::add::apply_async(&client, (2, 3), PublishOptions::new())
        .await
        .unwrap();
    assert_eq!(
        finished(&client, handle.id(), WAIT).await.state(),
        TaskState::Succeeded
    );
    let log = worker.log_lines();
    assert_eq!(
        log.iter()
            .filter(|l| l.contains("waiting for redis"))
            .count(),
        1,
        "one line per state change: {log:?}"
    );
    assert!(
        log.iter().any(|l| l.contains("redis answers; starting")),
        "{log:?}"
    );
    worker.kill_hard();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_from_the_dead_records_its_late_result_apart() {
    let redis = RedisServer::start();
    let sleeper = WorkerProcess::start(test_worker_bin!(), &redis, "sleeper", &args(&[]));
    let client = redis.stevedore().await;
    let slow = tasks::sleep_blind::delay(&client, 2_500).await.unwrap();
    running(&client, slow.id()).await;
    let _reaper = WorkerProcess::start(test_worker_bin!(), &redis, "reaper", &args(&[]));
    sleeper.signal(Signal::SIGSTOP);
    let reaped = finished(&client, slow.id(), WAIT).await;
    assert!(reaped
        .task_run()
        .unwrap()
        .error
        .as_deref()
        .unwrap()
        .starts_with("lost: node sleeper"));

    sleeper.signal(Signal::SIGCONT);
    let record = eventually("the late result", WAIT, || {
        let client = client.clone();
        let id = slow.id().to_owned();
        async move { Some(client.task(&id).await.ok()?).filter(|r| !r.late.is_empty()) }
    })
    .await;
    assert_eq!(record.late["late:sleeper"].state, TaskState::Succeeded);
    assert_eq!(
        record.task_run().unwrap().state,
        TaskState::Failed,
        "the reaper's verdict stands"
    );
    sleeper.wait_for_log("declared lost", 1, WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_peer_is_reported_and_a_yielding_node_stops_taking_work() {
    let redis = RedisServer::start();
    let worker = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "old",
        &args(&["--yield-to-newer"]),
    );
    let client = redis.stevedore().await;
    let newer = stevedore::nodes::NodeBeat {
        node: "new".into(),
        consumer: "new:1:1".into(),
        version: "9.0.0".into(),
        protocol: stevedore::MESSAGE_VERSION + 1,
        pid: 1,
        started_at: stevedore::now_ms(),
        queues: vec!["default".into()],
        pool: "async".into(),
        max_workers: 1,
        busy: 0,
        consuming: true,
        last_work_at: None,
    };
    client.broker().beat(&newer).await.unwrap();
    worker.wait_for_log("a peer reads a newer message protocol", 1, WAIT);
    eventually("the old node to stop consuming", WAIT, || async {
        let nodes = client.nodes(Duration::from_secs(5)).await.ok()?;
        nodes
            .iter()
            .any(|n| n.beat.node == "old" && !n.beat.consuming)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_waiting_for_a_lost_node_wait_for_it_or_move_when_configured() {
    let redis = RedisServer::start();
    let client = redis.stevedore().await;
    let lost_node = |name: &'static str| {
        let mut doomed = WorkerProcess::start(
            test_worker_bin!(),
            &redis,
            name,
            &args(&["--queues", "nothing"]),
        );
        doomed.signal(Signal::SIGKILL);
        doomed.wait_exit(WAIT);
    };
    let forgotten = |name: &'static str| {
        let client = client.clone();
        async move {
            eventually("the lost process to be reaped", WAIT, || async {
                let nodes = client.nodes(Duration::from_secs(1)).await.ok()?;
                nodes.iter().all(|n| n.beat.node != name).then_some(())
            })
            .await
        }
    };

    lost_node("kept");
    let kept = tasks::add::apply_async(&client, (1, 2), PublishOptions::new().node("kept"))
        .await
        .unwrap();
    let keeper = WorkerProcess::start(test_worker_bin!(), &redis, "keeper", &args(&[]));
    forgotten("kept").await;
    assert_eq!(
        kept.record().await.unwrap().state(),
        TaskState::Pending,
        "kept for its node by default"
    );
    drop(keeper);

    lost_node("moved");
    let moved = tasks::add::apply_async(&client, (3, 4), PublishOptions::new().node("moved"))
        .await
        .unwrap();
    let _adopter = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "adopter",
        &args(&["--adopt-lost-node-queue", "default"]),
    );
    let record = finished(&client, moved.id(), WAIT).await;
    assert_eq!(record.state(), TaskState::Succeeded);
    assert_eq!(record.task_run().unwrap().node, "adopter");
    assert_eq!(
        kept.record().await.unwrap().state(),
        TaskState::Pending,
        "a node forgotten before stays untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_runs_verdict_never_hides_the_record_of_its_next_attempt() {
    let redis = RedisServer::start();
    let client = redis.stevedore().await;
    let broker = client.broker();
    let mut conn = broker
        .dedicated_connection(Duration::ZERO, "test")
        .await
        .unwrap();
    let ttl = Duration::from_secs(60);
    let run = |attempt: u32, state: TaskState| stevedore::RunRecord {
        id: "t1".into(),
        task: "tests.count_run".into(),
        queue: "default".into(),
        node: format!("n{attempt}"),
        state,
        attempt,
        published_at: 1,
        started_at: Some(2),
        finished_at: state.is_final().then_some(3),
        result: None,
        error: None,
        retry_at: None,
    };
    let record = |run: stevedore::RunRecord| {
        let mut batch = stevedore::broker::OutcomeBatch::new(ttl);
        batch.started(run, stevedore::RecordField::Task);
        batch
    };
    let verdict = run(1, TaskState::Retrying);

    // The lost run's own `running` record gives way to the verdict.
    broker
        .write_outcomes(&mut conn, &mut record(run(1, TaskState::Running)))
        .await
        .unwrap();
    assert!(broker
        .record_lost(&verdict, "task", true, ttl)
        .await
        .unwrap());
    assert_eq!(client.task("t1").await.unwrap().runs["task"], verdict);

    // The requeued attempt ran and was recorded before the verdict arrived: it stays.
    let next = run(2, TaskState::Succeeded);
    broker
        .write_outcomes(&mut conn, &mut record(next.clone()))
        .await
        .unwrap();
    assert!(!broker
        .record_lost(&verdict, "task", true, ttl)
        .await
        .unwrap());
    let stored = client.task("t1").await.unwrap();
    assert_eq!(
        stored.runs["task"], next,
        "the verdict hid the next attempt"
    );
    assert_eq!(
        stored.attempts[&1], verdict,
        "the lost attempt is kept as attempt 1"
    );
    assert_eq!(stored.state(), TaskState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_lost_after_reaps_no_live_worker() {
    let redis = RedisServer::start();
    let args = ["--heartbeat", "100ms", "--lost-after", "500ms"];
    let a = WorkerProcess::start(test_worker_bin!(), &redis, "a", &args);
    let mut b = WorkerProcess::start(test_worker_bin!(), &redis, "b", &args);
    let c = WorkerProcess::start(test_worker_bin!(), &redis, "c", &args);
    let client = redis.stevedore().await;
    let running = tasks::gate::apply_async(
        &client,
        ("outage".to_owned(),),
        PublishOptions::new().node("a").retries(3),
    )
    .await
    .unwrap();
    let mut conn = redis.connection().await;
    eventually("the task to start on a", Duration::from_secs(10), || {
        let mut conn = conn.clone();
        async move {
            let started: u64 = redis::cmd("LLEN")
                .arg("tests:gate-started:outage")
                .query_async(&mut conn)
                .await
                .unwrap();
            (started == 1).then_some(())
        }
    })
    .await;

    // A real loss (b dies), then an outage: Redis holds every client's commands for 1.5 s, so
    // every beat is stale at once when it ends. The first reaper passes after it would take a
    // or c for lost; b must be reaped (later, once beats can be trusted again), and only b.
    b.kill_hard();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("ALL")
        .query_async(&mut conn)
        .await
        .unwrap();
    let reaped_b = "worker process lost: reaping its work node=b";
    eventually("a or c to reap b", Duration::from_secs(20), || {
        let found = a
            .log_lines()
            .into_iter()
            .chain(c.log_lines())
            .any(|l| l.contains(reaped_b));
        async move { found.then_some(()) }
    })
    .await;
    let wrongly: Vec<String> = a
        .log_lines()
        .into_iter()
        .chain(c.log_lines())
        .filter(|l| l.contains("worker process lost") && !l.contains("node=b"))
        .collect();
    assert!(wrongly.is_empty(), "a live worker was reaped: {wrongly:?}");

    let _: () = redis::cmd("RPUSH")
        .arg("tests:gate:outage")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let record = eventually("the task to finish", Duration::from_secs(20), || async {
        let record = client.task(running.id()).await.unwrap();
        (record.state() == TaskState::Succeeded).then_some(record)
    })
    .await;
    assert!(
        record.late.is_empty(),
        "the run was settled by a reaper: {record:?}"
    );
    assert_eq!(
        stevedore_tests::runs(&mut conn).await.get(running.id()),
        Some(&1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_holder_releases_its_on_duplicate_key_when_it_is_reaped() {
    let redis = RedisServer::start();
    let mut doomed = WorkerProcess::start(test_worker_bin!(), &redis, "doomed", &args(&[]));
    let client = redis.stevedore().await;
    let discard = PublishOptions::new().on_duplicate(stevedore::OnDuplicate::Discard);
    let holder = tasks::block::apply_async(&client, (), discard.clone())
        .await
        .unwrap();
    running(&client, holder.id()).await;
    let copy = tasks::block::apply_async(&client, (), discard.clone())
        .await
        .unwrap();
    assert!(
        copy.discarded(),
        "a copy is discarded while the holder runs"
    );
    let _alive = WorkerProcess::start(test_worker_bin!(), &redis, "alive", &args(&[]));

    doomed.signal(Signal::SIGKILL);
    doomed.wait_exit(WAIT);
    assert_eq!(
        finished(&client, holder.id(), WAIT).await.state(),
        TaskState::Failed
    );
    let again = tasks::block::apply_async(&client, (), discard)
        .await
        .unwrap();
    assert!(
        !again.discarded(),
        "the reaped holder still blocks the same call"
    );
    running(&client, again.id()).await;
}

/// Waits for task `id` to succeed on node `alive` as attempt `attempt`.
async fn succeeded_on_alive(client: &stevedore::Client, id: &str, attempt: u32) {
    let record = finished(client, id, WAIT).await;
    let run = record.task_run().unwrap();
    assert_eq!(run.state, TaskState::Succeeded, "{:?}", run.error);
    assert_eq!((run.attempt, run.node.as_str()), (attempt, "alive"));
}

/// A worker process that read `count` entries of the `default` queue and died before starting
/// any: its heartbeat is written once and then goes stale.
async fn ghost_holding(client: &stevedore::Client, count: usize) -> Vec<String> {
    let broker = client.broker();
    let ghost = stevedore::nodes::NodeBeat {
        node: "ghost".into(),
        consumer: "ghost:1:1".into(),
        version: "0.0.0".into(),
        protocol: 1,
        pid: 1,
        started_at: 0,
        queues: vec!["default".into()],
        pool: "async".into(),
        max_workers: 1,
        busy: 0,
        consuming: true,
        last_work_at: None,
    };
    broker.beat(&ghost).await.unwrap();
    let queue = Destination::queue("default").unwrap();
    broker
        .ensure_group(&queue, "workers", stevedore::broker::GroupStart::Beginning)
        .await
        .unwrap();
    let mut conn = broker
        .dedicated_connection(Duration::ZERO, "ghost")
        .await
        .unwrap();
    let read = broker
        .read_group(&mut conn, "workers", &ghost.consumer, &[queue], count, None)
        .await
        .unwrap();
    assert_eq!(read.len(), count);
    read.into_iter().map(|d| d.entry_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_read_by_a_lost_node_but_never_started_is_queued_again_not_failed() {
    let redis = RedisServer::start();
    let client = redis.stevedore().await;
    let never_started = tasks::add::apply_async(&client, (1, 2), PublishOptions::new())
        .await
        .unwrap();
    ghost_holding(&client, 1).await;
    let _alive = WorkerProcess::start(test_worker_bin!(), &redis, "alive", &args(&[]));
    succeeded_on_alive(&client, never_started.id(), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_dead_letters_what_it_cannot_open() {
    let redis = RedisServer::start();
    let client = redis.stevedore().await;
    let mut conn = redis.connection().await;
    stevedore_tests::push_garbage(&mut conn, "default").await;
    ghost_holding(&client, 1).await;
    let _alive = WorkerProcess::start(test_worker_bin!(), &redis, "alive", &args(&[]));
    let queue = Destination::queue("default").unwrap();
    let letter = eventually("the bad entry in the dead letters", WAIT, || {
        let client = client.clone();
        let queue = queue.clone();
        async move { client.broker().dead_letters(&queue, 10).await.ok()?.pop() }
    })
    .await;
    assert_eq!(letter.raw, stevedore_tests::GARBAGE);
    assert!(
        letter.reason.contains("reaped from lost node ghost"),
        "{}",
        letter.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_recorded_retrying_by_a_process_that_died_before_storing_the_retry_runs_again() {
    let redis = RedisServer::start();
    let client = redis.stevedore().await;
    let options = PublishOptions::new()
        .retries(2)
        .backoff(Duration::from_millis(10), Duration::from_millis(10));
    let message = tasks::add::message((1, 2), &options).unwrap();
    let id = message.id.clone();
    client.publish(message.clone()).await.unwrap();
    ghost_holding(&client, 1).await;
    // The ghost ran attempt 1 and recorded it `retrying`, then died before storing the retry.
    let mut run = stevedore::RunRecord::starting(&message, "ghost");
    run.state = TaskState::Retrying;
    let mut batch = stevedore::broker::OutcomeBatch::new(Duration::from_secs(60));
    batch.started(run, stevedore::RecordField::Task);
    let broker = client.broker();
    let mut conn = broker
        .dedicated_connection(Duration::ZERO, "test")
        .await
        .unwrap();
    broker.write_outcomes(&mut conn, &mut batch).await.unwrap();

    let _alive = WorkerProcess::start(test_worker_bin!(), &redis, "alive", &args(&[]));
    succeeded_on_alive(&client, &id, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_while_redis_refuses_writes_waits_then_runs() {
    let redis = RedisServer::start();
    let mut admin = redis.connection().await;
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory", "1"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let mut worker = WorkerProcess::spawn(test_worker_bin!(), &redis.url(), "w", &args(&[]), &[]);
    worker.wait_for_log("waiting for redis to accept writes", 1, WAIT);
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory", "0"])
        .query_async(&mut admin)
        .await
        .unwrap();
    worker.wait_for_log("fetching", 2, WAIT);
    let client = redis.stevedore().await;
    let handle = tasks::add::apply_async(&client, (2, 3), PublishOptions::new())
        .await
        .unwrap();
    assert_eq!(
        finished(&client, handle.id(), WAIT).await.state(),
        TaskState::Succeeded
    );
    let log = worker.log_lines();
    let waits = log
        .iter()
        .filter(|l| l.contains("waiting for redis to accept writes"));
    assert_eq!(waits.count(), 1, "one line per state change: {log:?}");
    worker.kill_hard();
}
