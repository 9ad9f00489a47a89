//! The dispatcher: idle-only dispatch, the pool growing and shrinking, remote control, cancels
//! and timeouts in both kinds of pool.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use stevedore::control::{Answer, CancelSelector, Command, NodeAnswer, Target};
use stevedore::{Client, PublishOptions, TaskState};
use stevedore_tests::{
    eventually, finished, node_status, run_cli, running, tasks, test_admin_bin, test_worker_bin,
    RedisServer, WorkerProcess,
};

const WAIT: Duration = Duration::from_secs(30);

fn dynamic(task: &str, args: Vec<rmpv::Value>, options: &PublishOptions) -> stevedore::Message {
    Client::message(task, args, Default::default(), options).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_task_never_delays_a_short_one_while_a_worker_is_free() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--max-workers", "2"]);
    let client = redis.stevedore().await;
    let long = tasks::sleep_blind::delay(&client, 60_000).await.unwrap();
    running(&client, long.id()).await;
    let short = tasks::add::apply_async(&client, (1, 2), PublishOptions::new().notify(true))
        .await
        .unwrap();
    let record = short.wait(Duration::from_secs(5)).await.unwrap();
    assert_eq!(record.state(), TaskState::Succeeded);
    assert_eq!(long.record().await.unwrap().state(), TaskState::Running);
}

// Runs alone under nextest (.config/nextest.toml): it asserts on time, which a busy core
// beside it would skew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_grows_when_busy_and_shrinks_when_idle() {
    let redis = RedisServer::start();
    let args = [
        "--min-workers",
        "1",
        "--max-workers",
        "3",
        "--idle-timeout",
        "300ms",
    ];
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &args);
    let client = redis.stevedore().await;
    assert_eq!(node_status(&client, "w").await.workers.len(), 1);

    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(tasks::block::delay(&client).await.unwrap().id().to_owned());
    }
    for id in &ids {
        running(&client, id).await;
    }
    let status = node_status(&client, "w").await;
    assert_eq!(status.workers.len(), 3, "{status:?}");
    assert!(status
        .workers
        .iter()
        .all(|w| w.current.is_some() && w.sent == 1));

    client
        .cancel(CancelSelector::ids(ids.clone()), WAIT)
        .await
        .unwrap();
    for id in &ids {
        assert_eq!(
            finished(&client, id, WAIT).await.state(),
            TaskState::Cancelled
        );
    }
    eventually("the pool to shrink to its minimum", WAIT, || {
        let client = client.clone();
        async move { (node_status(&client, "w").await.workers.len() == 1).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_is_answered_by_live_nodes_and_a_dead_node_is_reported_by_the_deadline() {
    let redis = RedisServer::start();
    let _a = WorkerProcess::start(test_worker_bin!(), &redis, "a", &[]);
    let _b = WorkerProcess::start(test_worker_bin!(), &redis, "b", &[]);
    let mut dead = WorkerProcess::start(test_worker_bin!(), &redis, "dead", &[]);
    dead.signal(Signal::SIGKILL);
    dead.wait_exit(Duration::from_secs(10));
    let client = redis.stevedore().await;
    let busy = tasks::block::delay(&client).await.unwrap();
    running(&client, busy.id()).await;

    let asked = Instant::now();
    let answers = client
        .control(Target::All, Command::Status, Duration::from_secs(1))
        .await
        .unwrap();
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[2], NodeAnswer::NotAnswering("dead".into()));
    let running_somewhere = answers.iter().any(|a| match a {
        NodeAnswer::Answered(r) => match &r.answer {
            Answer::Status(s) => s
                .workers
                .iter()
                .any(|w| w.current.as_ref().is_some_and(|c| c.id == busy.id())),
            _ => false,
        },
        NodeAnswer::NotAnswering(_) | NodeAnswer::Lost(_) => false,
    });
    assert!(running_somewhere, "{answers:?}");

    let answers = client
        .control(Target::All, Command::Running, Duration::from_secs(1))
        .await
        .unwrap();
    let ids: Vec<String> = answers
        .iter()
        .filter_map(|a| match a {
            NodeAnswer::Answered(r) => match &r.answer {
                Answer::Running { running, .. } => Some(running.clone()),
                _ => None,
            },
            NodeAnswer::NotAnswering(_) | NodeAnswer::Lost(_) => None,
        })
        .flatten()
        .collect();
    assert_eq!(ids, vec![busy.id().to_owned()]);

    let reload = client
        .control(Target::Node("a".into()), Command::Reload, WAIT)
        .await
        .unwrap();
    assert!(
        matches!(&reload[0], NodeAnswer::Answered(r) if matches!(r.answer, Answer::Reloaded { .. }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_queued_task_is_never_run() {
    let redis = RedisServer::start();
    let client = redis.stevedore().await;
    let doomed = tasks::count_run::apply_async(&client, (), PublishOptions::new().queue("later"))
        .await
        .unwrap();
    let kept = tasks::count_run::apply_async(&client, (), PublishOptions::new().queue("later"))
        .await
        .unwrap();
    client
        .cancel(
            CancelSelector::ids([doomed.id()]),
            Duration::from_millis(200),
        )
        .await
        .unwrap();

    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--queues", "later"]);
    assert_eq!(
        finished(&client, kept.id(), WAIT).await.state(),
        TaskState::Succeeded
    );
    let record = finished(&client, doomed.id(), WAIT).await;
    assert_eq!(record.state(), TaskState::Cancelled);
    let mut conn = redis.connection().await;
    let runs = stevedore_tests::runs(&mut conn).await;
    assert_eq!(runs.get(doomed.id()), None, "the cancelled task ran");
    assert_eq!(runs.get(kept.id()), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_by_name_stops_running_and_queued_tasks_and_an_empty_cancel_is_refused() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--max-workers", "1"]);
    let client = redis.stevedore().await;
    let first = tasks::sleep_blind::delay(&client, 60_000).await.unwrap();
    running(&client, first.id()).await;
    let second = tasks::sleep_blind::delay(&client, 60_000).await.unwrap();

    let refused = client
        .cancel(CancelSelector::default(), WAIT)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("refused"), "{refused}");
    client
        .cancel(CancelSelector::task("tests.sleep_blind"), WAIT)
        .await
        .unwrap();
    assert_eq!(
        finished(&client, first.id(), WAIT).await.state(),
        TaskState::Cancelled
    );
    assert_eq!(
        finished(&client, second.id(), WAIT).await.state(),
        TaskState::Cancelled
    );

    let later = tasks::add::apply_async(&client, (1, 1), PublishOptions::new().notify(true))
        .await
        .unwrap();
    assert_eq!(
        later.wait(WAIT).await.unwrap().state(),
        TaskState::Succeeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_async_task_is_cancelled_and_one_with_a_context_cleans_up() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--cancel-grace", "30s"]);
    let client = redis.stevedore().await;
    let blind = tasks::sleep_blind::delay(&client, 60_000).await.unwrap();
    let polite = tasks::block::delay(&client).await.unwrap();
    running(&client, blind.id()).await;
    running(&client, polite.id()).await;

    let asked = Instant::now();
    client
        .cancel(CancelSelector::ids([blind.id(), polite.id()]), WAIT)
        .await
        .unwrap();
    for handle in [&blind, &polite] {
        let record = finished(&client, handle.id(), WAIT).await;
        assert_eq!(record.state(), TaskState::Cancelled);
        assert_eq!(
            record.task_run().unwrap().error.as_deref(),
            Some("cancelled")
        );
    }
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the 30 s grace was not needed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_and_hard_timeouts_stop_a_task_and_record_it_timed_out() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--cancel-grace", "30s"]);
    let client = redis.stevedore().await;
    let soft = PublishOptions::new().timeout(Duration::from_millis(300));
    let polite = client
        .publish(dynamic("stevedore.sleep", vec![60_000.into()], &soft))
        .await
        .unwrap();
    let hard = PublishOptions::new()
        .timeout(Duration::from_millis(200))
        .hard_timeout(Duration::from_millis(600));
    let blind = tasks::sleep_blind::apply_async(&client, (60_000,), hard)
        .await
        .unwrap();

    let polite = finished(&client, polite.id(), WAIT).await;
    let run = polite.task_run().unwrap();
    assert_eq!(run.state, TaskState::TimedOut);
    assert!(
        run.finished_at.unwrap() - run.started_at.unwrap() < 5_000,
        "stopped by its soft limit"
    );
    let blind = finished(&client, blind.id(), WAIT).await;
    let run = blind.task_run().unwrap();
    assert_eq!(run.state, TaskState::TimedOut);
    let took = run.finished_at.unwrap() - run.started_at.unwrap();
    assert!(
        (550..5_000).contains(&took),
        "aborted at its hard limit, took {took} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_is_not_read_until_resumed() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "w",
        &["--queues", "held,default"],
    );
    let client = redis.stevedore().await;
    let held = stevedore::Destination::queue("held").unwrap();
    let answers = client.pause_queue(&held, true, WAIT).await.unwrap();
    assert!(
        matches!(answers.as_slice(), [NodeAnswer::Answered(_)]),
        "{answers:?}"
    );
    let waiting = tasks::add::apply_async(&client, (1, 1), PublishOptions::new().queue("held"))
        .await
        .unwrap();
    // `held` comes first in the worker's order: had it been read, this task would run first.
    let marker = tasks::add::apply_async(&client, (2, 2), PublishOptions::new().notify(true))
        .await
        .unwrap();
    marker.wait(WAIT).await.unwrap();
    assert_eq!(waiting.record().await.unwrap().state(), TaskState::Pending);
    let status = node_status(&client, "w").await;
    assert_eq!(status.queues.get("held"), Some(&true));

    client.pause_queue(&held, false, WAIT).await.unwrap();
    assert_eq!(
        finished(&client, waiting.id(), WAIT).await.state(),
        TaskState::Succeeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_by_task_and_args_stops_only_the_calls_with_those_arguments() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;
    let gate =
        |name: &str| tasks::gate::apply_async(&client, (name.to_owned(),), PublishOptions::new());
    let (one, two) = (gate("one").await.unwrap(), gate("two").await.unwrap());
    running(&client, one.id()).await;
    running(&client, two.id()).await;

    let cancel = ["cancel", "--task", "tests.gate", "--args", "[\"one\"]"];
    let out = run_cli(test_admin_bin!(), &redis.url(), &cancel);
    assert!(out.status.success(), "{out:?}");
    let cancelled = finished(&client, one.id(), WAIT).await;
    assert_eq!(cancelled.state(), TaskState::Cancelled);
    let other = client.task(two.id()).await.unwrap();
    assert_eq!(other.state(), TaskState::Running, "other arguments run on");
    let mut conn = redis.connection().await;
    let _: () = redis::cmd("RPUSH")
        .arg("tests:gate:two")
        .arg("open")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        finished(&client, two.id(), WAIT).await.state(),
        TaskState::Succeeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_and_status_show_the_tasks_waiting_in_the_nodes_own_queue() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--max-workers", "1"]);
    let client = redis.stevedore().await;
    let to_w = PublishOptions::new().node("w");
    let busy = tasks::block::apply_async(&client, (), to_w.clone())
        .await
        .unwrap();
    running(&client, busy.id()).await;
    let mut waiting = Vec::new();
    for _ in 0..3 {
        let handle = tasks::add::apply_async(&client, (1, 2), to_w.clone())
            .await
            .unwrap();
        waiting.push(handle.id().to_owned());
    }

    let out = run_cli(
        test_admin_bin!(),
        &redis.url(),
        &["running", "--node", "w", "--json"],
    );
    assert!(out.status.success(), "{out:?}");
    let answers: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answers[0]["running"], serde_json::json!([busy.id()]));
    assert_eq!(answers[0]["queued"], serde_json::json!(waiting));
    let out = run_cli(
        test_admin_bin!(),
        &redis.url(),
        &["status", "--node", "w", "--json"],
    );
    let answers: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answers[0]["status"]["queued"], 3, "{answers:?}");
}
