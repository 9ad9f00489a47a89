//! The test harness of stevedore: a real `redis-server` per test, worker processes to start,
//! signal and kill, and tasks whose runs the tests can count.
//!
//! Every test starts its own server on a unix socket in a temporary directory (no port races,
//! no shared state), killed when the test ends.

pub mod process;
pub mod tasks;

pub use process::{exit_within, redis_server_on, KillOnDrop, WorkerProcess};
pub use stevedore_harness::{
    cluster, connection_to, connection_with, redis_server, sentinel, tcp_node, tls, RedisServer,
};

use std::time::{Duration, Instant};

use stevedore::broker::Keys;
use stevedore::Destination;

/// The key table of the namespace the tests use (`stevedore`, the default): tests name keys
/// through it, never by hand (tests/tests/ops/protocol.rs excepted: it checks the documented keys
/// as a foreign client would write them).
pub fn keys() -> Keys {
    Keys::new("stevedore")
}

/// Publishes `message`, waits up to `wait` for it to end, and returns its run (the one run of
/// a queued task): the publish-wait-unwrap every end-to-end test repeats.
pub async fn publish_and_run(
    client: &stevedore::Client,
    message: stevedore::Message,
    wait: Duration,
) -> stevedore::RunRecord {
    let handle = client.publish(message).await.expect("publish the task");
    let record = handle.wait(wait).await.expect("the task ends in time");
    record
        .task_run()
        .cloned()
        .expect("a finished queued task has its run")
}

/// The stream of shared queue `queue`.
pub fn stream_of(queue: &str) -> String {
    keys().stream(&Destination::queue(queue).expect("a valid queue name"))
}

/// Appends bytes that are no stevedore message to shared queue `queue` (as a broken or
/// hostile producer would), on `conn`.
pub async fn push_garbage(conn: &mut (impl redis::aio::ConnectionLike + Send), queue: &str) {
    let _: String = redis::cmd("XADD")
        .arg(stream_of(queue))
        .arg("*")
        .arg("m")
        .arg(GARBAGE)
        .query_async(conn)
        .await
        .expect("append the bad bytes");
}

/// What [`push_garbage`] appends.
pub const GARBAGE: &[u8] = b"\xc1 not a message";

/// Publishes a `stevedore.fail` call with one quick retry and waits until it is dead-lettered.
pub async fn dead_task(client: &stevedore::Client, wait: Duration) -> String {
    let fast = stevedore::PublishOptions::new()
        .notify(true)
        .retries(1)
        .backoff(Duration::from_millis(1), Duration::from_millis(1));
    let failing = stevedore::Client::message(
        "stevedore.fail",
        vec!["x".into()],
        Default::default(),
        &fast,
    )
    .expect("a valid call");
    let handle = client.publish(failing).await.expect("publish the task");
    let state = handle.wait(wait).await.expect("the task ends").state();
    assert_eq!(state, stevedore::TaskState::Dead);
    handle.id().to_owned()
}

/// The dead letters of shared queue `queue`.
pub fn dead_of(queue: &str) -> String {
    keys().dead_letters(&Destination::queue(queue).expect("a valid queue name"))
}

/// The test worker binary (the stock worker plus [`tasks`]); expands in an integration test,
/// where Cargo sets the variable.
#[macro_export]
macro_rules! test_worker_bin {
    () => {
        env!("CARGO_BIN_EXE_test-worker")
    };
}

/// Waits up to `timeout` for every task of `ids` to have a `succeeded` record; returns the ids
/// still without one.
///
/// Judged by the records, not by the tasks' own side effects (`tests:runs`): across a
/// failover, a run's unreplicated write to the old master is lost with it, while its outcome
/// is written again to the new master (the worker waits for replicas before it acknowledges).
pub async fn unrecorded_within(
    client: &stevedore::Client,
    ids: &std::collections::HashSet<String>,
    timeout: Duration,
) -> Vec<String> {
    let mut left: Vec<String> = ids.iter().cloned().collect();
    let deadline = Instant::now() + timeout;
    while !left.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for id in left {
            let state = client.task(&id).await.map(|r| r.state()).ok();
            if state != Some(stevedore::TaskState::Succeeded) {
                still.push(id);
            }
        }
        left = still;
        if !left.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    left
}

/// Polls `check` every few milliseconds until it returns `Some`, or panics naming `what` once
/// `timeout` has passed.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Entries of `stream` pending in `group` (read, not acknowledged).
pub async fn pending(
    conn: &mut (impl redis::aio::ConnectionLike + Send),
    stream: &str,
    group: &str,
) -> u64 {
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await
        .expect("XPENDING");
    match reply {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n as u64,
            _ => 0,
        },
        _ => 0,
    }
}

/// The length of `stream` (0 if it does not exist).
pub async fn stream_len(conn: &mut (impl redis::aio::ConnectionLike + Send), stream: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(stream)
        .query_async(conn)
        .await
        .expect("XLEN")
}

/// As [`runs`], for polls that outlive server restarts: an error (a connection reset, a
/// reply late on a busy machine) is printed and reads as no answer yet.
pub async fn try_runs(
    conn: &mut (impl redis::aio::ConnectionLike + Send),
) -> Option<std::collections::HashMap<String, u64>> {
    let read = redis::cmd("HGETALL")
        .arg("tests:runs")
        .query_async(conn)
        .await;
    read.map_err(|e| eprintln!("HGETALL tests:runs failed, polling again: {e}"))
        .ok()
}

/// Test-task runs counted per task id (`tests:runs`).
pub async fn runs(
    conn: &mut (impl redis::aio::ConnectionLike + Send),
) -> std::collections::HashMap<String, u64> {
    redis::cmd("HGETALL")
        .arg("tests:runs")
        .query_async(conn)
        .await
        .expect("HGETALL tests:runs")
}

/// Ids of test tasks run on `node` (`tests:ran:NODE`), in run order.
pub async fn ran_on(
    conn: &mut (impl redis::aio::ConnectionLike + Send),
    node: &str,
) -> Vec<String> {
    redis::cmd("LRANGE")
        .arg(format!("tests:ran:{node}"))
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await
        .expect("LRANGE tests:ran")
}

/// The admin CLI binary of this package; expands in an integration test.
#[macro_export]
macro_rules! test_admin_bin {
    () => {
        env!("CARGO_BIN_EXE_test-admin")
    };
}

/// Runs the admin CLI `bin` against `redis_url` with `args`.
pub fn run_cli(bin: &str, redis_url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin)
        .arg("--redis-url")
        .arg(redis_url)
        .args(args)
        .output()
        .expect("run the CLI")
}

/// The status of `node`'s pool, asked through the client API.
pub async fn node_status(client: &stevedore::Client, node: &str) -> stevedore::control::NodeStatus {
    use stevedore::control::{Answer, Command, NodeAnswer, Target};
    let answers = client
        .control(
            Target::Node(node.to_owned()),
            Command::Status,
            Duration::from_secs(5),
        )
        .await
        .expect("ask for status");
    match answers.into_iter().next() {
        Some(NodeAnswer::Answered(reply)) => match reply.answer {
            Answer::Status(status) => status,
            other => panic!("{node} answered {other:?} to status"),
        },
        other => panic!("{node} did not answer status: {other:?}"),
    }
}

/// Waits until task `id` has a final state, and returns its record.
pub async fn finished(
    client: &stevedore::Client,
    id: &str,
    timeout: Duration,
) -> stevedore::TaskRecord {
    eventually(&format!("task {id} to finish"), timeout, || {
        let client = client.clone();
        let id = id.to_owned();
        async move { Some(client.task(&id).await.ok()?).filter(|r| r.state().is_final()) }
    })
    .await
}

/// Waits until task `id`'s record says it is running.
pub async fn running(client: &stevedore::Client, id: &str) {
    eventually(
        &format!("task {id} to run"),
        Duration::from_secs(20),
        || {
            let client = client.clone();
            let id = id.to_owned();
            async move {
                let state = client.task(&id).await.ok()?.state();
                (state == stevedore::TaskState::Running).then_some(())
            }
        },
    )
    .await
}

/// Polls `check` (blocking) every few milliseconds until it returns `Some`, or panics naming
/// `what` after 30 s.
pub fn eventually_blocking<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many times each task id said it started: `tests.block` (and others) push their id to
/// the list `tests:started` when they start.
pub async fn started_counts(redis: &RedisServer) -> std::collections::HashMap<String, usize> {
    let mut conn = redis.connection().await;
    let started: Vec<String> = redis::cmd("LRANGE")
        .arg("tests:started")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("read tests:started");
    let mut counts = std::collections::HashMap::new();
    for id in started {
        *counts.entry(id).or_default() += 1;
    }
    counts
}
