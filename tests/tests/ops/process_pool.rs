//! The process pool: children that run tasks, are told to stop, killed when deaf, recycled
//! by task count and memory, and replaced when they die.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use stevedore::control::CancelSelector;
use stevedore::{Client, PublishOptions, TaskRecord, TaskState};
use stevedore_tests::{
    eventually, finished, node_status, running, tasks, test_worker_bin, RedisServer, WorkerProcess,
};

const WAIT: Duration = Duration::from_secs(30);

fn process_pool(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec![
        "--pool",
        "process",
        "--min-workers",
        "1",
        "--max-workers",
        "1",
    ];
    args.extend_from_slice(extra);
    args
}

/// The pid that ran a `tests.pid` task.
async fn pid_of_run(client: &Client) -> u64 {
    let handle = tasks::pid::apply_async(client, (), PublishOptions::new().notify(true))
        .await
        .unwrap();
    let record: TaskRecord = handle.wait(WAIT).await.unwrap();
    record
        .task_run()
        .unwrap()
        .result
        .clone()
        .unwrap()
        .as_u64()
        .unwrap()
}

async fn child_pid(client: &Client) -> u32 {
    node_status(client, "p").await.workers[0]
        .pid
        .expect("a process worker has a pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_in_a_child_process_with_its_pid_and_memory_reported() {
    let redis = RedisServer::start();
    let worker = WorkerProcess::start(test_worker_bin!(), &redis, "p", &process_pool(&[]));
    let client = redis.stevedore().await;
    let ran_in = pid_of_run(&client).await;
    assert_ne!(
        ran_in,
        u64::from(worker.pid().as_raw() as u32),
        "ran in the parent"
    );
    let status = node_status(&client, "p").await;
    assert_eq!(status.pool, "process");
    assert_eq!(u64::from(status.workers[0].pid.unwrap()), ran_in);
    assert!(status.workers[0].rss_bytes.unwrap() > 1_000_000);
    assert_eq!((status.workers[0].sent, status.workers[0].finished), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deaf_spinning_task_is_killed_after_the_grace_and_its_child_replaced() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "p",
        &process_pool(&["--cancel-grace", "500ms"]),
    );
    let client = redis.stevedore().await;
    let first_child = child_pid(&client).await;
    let spin = tasks::spin::delay(&client, 600_000).await.unwrap();
    running(&client, spin.id()).await;

    let asked = Instant::now();
    client
        .cancel(CancelSelector::ids([spin.id()]), WAIT)
        .await
        .unwrap();
    let record = finished(&client, spin.id(), WAIT).await;
    assert_eq!(record.state(), TaskState::Cancelled);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "took {:?}",
        asked.elapsed()
    );
    let replaced = pid_of_run(&client).await;
    assert_ne!(
        replaced,
        u64::from(first_child),
        "the killed child must be replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_listens_stops_when_told_and_keeps_its_child() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "p",
        &process_pool(&["--cancel-grace", "30s"]),
    );
    let client = redis.stevedore().await;
    let child = child_pid(&client).await;
    let block = tasks::block::delay(&client).await.unwrap();
    running(&client, block.id()).await;
    client
        .cancel(CancelSelector::ids([block.id()]), WAIT)
        .await
        .unwrap();
    let record = finished(&client, block.id(), Duration::from_secs(10)).await;
    assert_eq!(record.state(), TaskState::Cancelled);
    assert_eq!(
        pid_of_run(&client).await,
        u64::from(child),
        "the child stopped its task by itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_in_a_child_tell_then_kill() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "p", &process_pool(&[]));
    let client = redis.stevedore().await;
    let limits = PublishOptions::new()
        .timeout(Duration::from_millis(200))
        .hard_timeout(Duration::from_millis(700));
    let spin = tasks::spin::apply_async(&client, (600_000,), limits)
        .await
        .unwrap();
    let record = finished(&client, spin.id(), WAIT).await;
    let run = record.task_run().unwrap();
    assert_eq!(run.state, TaskState::TimedOut);
    let took = run.finished_at.unwrap() - run.started_at.unwrap();
    assert!(
        (650..5_000).contains(&took),
        "killed at the hard limit, took {took} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_are_recycled_after_their_task_limit() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "p",
        &process_pool(&["--max-tasks-per-child", "2"]),
    );
    let client = redis.stevedore().await;
    let pids = [
        pid_of_run(&client).await,
        pid_of_run(&client).await,
        pid_of_run(&client).await,
    ];
    assert_eq!(pids[0], pids[1]);
    assert_ne!(pids[1], pids[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_are_recycled_above_their_memory_limit() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "p",
        &process_pool(&["--max-memory-per-child", "1KiB"]),
    );
    let client = redis.stevedore().await;
    let pids = [pid_of_run(&client).await, pid_of_run(&client).await];
    assert_ne!(pids[0], pids[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_child_is_replaced_and_its_task_recorded_lost() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "p", &process_pool(&[]));
    let client = redis.stevedore().await;
    let block = tasks::block::delay(&client).await.unwrap();
    running(&client, block.id()).await;
    let child = child_pid(&client).await;
    kill(Pid::from_raw(child as i32), Signal::SIGKILL).unwrap();

    let record = finished(&client, block.id(), WAIT).await;
    let run = record.task_run().unwrap();
    assert_eq!(run.state, TaskState::Failed);
    let error = run.error.as_deref().unwrap();
    assert!(
        error.starts_with("lost: worker process") && error.contains("signal: 9"),
        "{error}"
    );
    let replacement = eventually("a replacement child", WAIT, || {
        let client = client.clone();
        async move { Some(child_pid(&client).await).filter(|pid| *pid != child) }
    })
    .await;
    assert_eq!(pid_of_run(&client).await, u64::from(replacement));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_recycles_every_child_after_its_current_task() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "p", &process_pool(&[]));
    let client = redis.stevedore().await;
    let before = child_pid(&client).await;
    let spin = tasks::spin::apply_async(&client, (1_500,), PublishOptions::new().notify(true))
        .await
        .unwrap();
    running(&client, spin.id()).await;

    let answers = client
        .control(
            stevedore::control::Target::All,
            stevedore::control::Command::Reload,
            WAIT,
        )
        .await
        .unwrap();
    assert!(
        matches!(
            answers.as_slice(),
            [stevedore::control::NodeAnswer::Answered(_)]
        ),
        "{answers:?}"
    );
    let record = spin.wait(WAIT).await.unwrap();
    assert_eq!(
        record.state(),
        TaskState::Succeeded,
        "the busy child finished its task first"
    );
    let after = pid_of_run(&client).await;
    assert_ne!(after, u64::from(before), "the child was recycled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_queued_and_delayed_tasks_are_never_run_by_a_process_pool() {
    let redis = RedisServer::start();
    let client = redis.stevedore().await;
    let queued = tasks::count_run::apply_async(&client, (), PublishOptions::new())
        .await
        .unwrap();
    let delayed = tasks::count_run::apply_async(
        &client,
        (),
        PublishOptions::new().delay(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    let kept = tasks::count_run::apply_async(&client, (), PublishOptions::new())
        .await
        .unwrap();
    client
        .cancel(
            CancelSelector::ids([queued.id(), delayed.id()]),
            Duration::from_millis(200),
        )
        .await
        .unwrap();

    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "p", &process_pool(&[]));
    assert_eq!(
        finished(&client, kept.id(), WAIT).await.state(),
        TaskState::Succeeded
    );
    assert_eq!(
        finished(&client, queued.id(), WAIT).await.state(),
        TaskState::Cancelled
    );
    assert_eq!(
        finished(&client, delayed.id(), WAIT).await.state(),
        TaskState::Cancelled
    );
    let mut conn = redis.connection().await;
    let counted = stevedore_tests::runs(&mut conn).await;
    assert_eq!(counted.len(), 1, "only the kept task ran: {counted:?}");
}
