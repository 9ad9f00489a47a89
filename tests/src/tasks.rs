//! Tasks the tests publish and count. They write to the test's own Redis (keys under `tests:`)
//! through `STEVEDORE_TEST_REDIS_URL`, set by [`crate::WorkerProcess`].

use std::time::Duration;

use stevedore::broker::{Broker, BrokerConfig, Connection, SharedConnection};
use stevedore::{task, TaskContext, TaskError};
use tokio::sync::OnceCell;

/// Forces this module to be linked into a worker binary.
pub fn link() {}

static BROKER: OnceCell<Broker> = OnceCell::const_new();

/// The test's Redis (any deployment), through a shared connection that follows failovers.
async fn test_redis() -> Result<SharedConnection, TaskError> {
    let broker = BROKER.get_or_try_init(test_broker).await?;
    Ok(broker.commands())
}

async fn test_broker() -> Result<Broker, TaskError> {
    let url = std::env::var("STEVEDORE_TEST_REDIS_URL")
        .map_err(|_| TaskError::fatal("STEVEDORE_TEST_REDIS_URL is not set"))?;
    Ok(Broker::connect(BrokerConfig::new(url, "tests")).await?)
}

/// A connection of its own to the test's Redis, waiting up to `block` for replies.
async fn open_test_redis(block: Duration) -> Result<Connection, TaskError> {
    let broker = BROKER.get_or_try_init(test_broker).await?;
    Ok(broker.dedicated_connection(block, "test-task").await?)
}

/// Counts its run: `tests:runs` (task id -> runs) and `tests:ran:NODE` (ids run on NODE).
#[task(name = "tests.count_run")]
pub async fn count_run(ctx: TaskContext) -> Result<(), TaskError> {
    let mut conn = test_redis().await?;
    redis::pipe()
        .hincr("tests:runs", ctx.id(), 1)
        .rpush(format!("tests:ran:{}", ctx.node()), ctx.id())
        .query_async::<()>(&mut conn)
        .await?;
    Ok(())
}

/// Says it started (`tests:started`), then runs until cancelled.
#[task(name = "tests.block")]
pub async fn block(ctx: TaskContext) -> Result<(), TaskError> {
    let mut conn = test_redis().await?;
    redis::cmd("RPUSH")
        .arg("tests:started")
        .arg(ctx.id())
        .query_async::<()>(&mut conn)
        .await?;
    ctx.cancellation().cancelled().await;
    Err(TaskError::cancelled())
}

/// An async task with typed arguments.
#[task(name = "tests.add")]
pub async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// A plain (blocking) task with a `Result`.
#[task(name = "tests.join")]
pub fn join(words: Vec<String>, separator: String) -> Result<String, TaskError> {
    if words.is_empty() {
        return Err(TaskError::fatal("nothing to join"));
    }
    Ok(words.join(&separator))
}

/// A struct task.
#[derive(Default)]
pub struct Greeter;

#[task(name = "tests.greet")]
impl Greeter {
    /// Greets `name`.
    pub async fn run(&self, name: String) -> String {
        format!("hello, {name}")
    }
}

/// A task that asks for its context.
#[task(name = "tests.whoami")]
pub async fn whoami(ctx: TaskContext) -> (String, String, u32) {
    (ctx.id().to_owned(), ctx.node().to_owned(), ctx.attempt())
}

/// A task that publishes another through its context's client; returns the child's id.
#[task(name = "tests.spawn_add")]
pub async fn spawn_add(ctx: TaskContext, n: i64) -> Result<String, TaskError> {
    let child = add::delay(ctx.client(), n, 1)
        .await
        .map_err(|e| TaskError::new(e.to_string()))?;
    Ok(child.id().to_owned())
}

/// A plain task that panics.
#[task(name = "tests.panics")]
pub fn panics() {
    panic!("deliberate panic")
}

/// A task named by its module path.
#[task]
pub async fn default_named(x: u8) -> u8 {
    x
}

/// Sleeps without looking at its context: a cancel aborts it at its next await.
#[task(name = "tests.sleep_blind")]
pub async fn sleep_blind(milliseconds: u64) {
    tokio::time::sleep(std::time::Duration::from_millis(milliseconds)).await;
}

/// Spins on the CPU for `milliseconds`, deaf to any signal (for the process pool).
#[task(name = "tests.spin")]
pub fn spin(milliseconds: u64) -> u64 {
    let until = std::time::Instant::now() + std::time::Duration::from_millis(milliseconds);
    let mut turns = 0u64;
    while std::time::Instant::now() < until {
        turns = std::hint::black_box(turns.wrapping_add(1));
    }
    turns
}

/// The process id of whoever runs it.
#[task(name = "tests.pid")]
pub fn pid() -> u32 {
    std::process::id()
}

/// Notes a hook call in `tests:hooks` (used by the test worker's hooks).
pub async fn note_hook(entry: String) {
    if let Ok(mut conn) = test_redis().await {
        let _: redis::RedisResult<()> = redis::cmd("RPUSH")
            .arg("tests:hooks")
            .arg(entry)
            .query_async(&mut conn)
            .await;
    }
}

/// Always fails (retryably).
#[task(
    name = "tests.flaky",
    retries = 3,
    backoff = "100ms",
    max_backoff = "200ms"
)]
pub async fn flaky() -> Result<(), TaskError> {
    Err(TaskError::new("flaky failed again"))
}

/// Fails its first `failures` attempts, then returns the attempt that succeeded.
#[task(name = "tests.fail_times", retries = 1, backoff = "50ms")]
pub async fn fail_times(ctx: TaskContext, failures: u32) -> Result<u32, TaskError> {
    let mut conn = test_redis().await?;
    let seen: u32 = redis::cmd("INCR")
        .arg(format!("tests:attempts:{}", ctx.id()))
        .query_async(&mut conn)
        .await?;
    if seen <= failures {
        return Err(TaskError::new(format!("failure {seen} of {failures}")));
    }
    Ok(ctx.attempt())
}

/// Asks to be retried after 300 ms on its first attempt.
#[task(name = "tests.retry_later", retries = 1)]
pub async fn retry_later(ctx: TaskContext) -> Result<u32, TaskError> {
    if ctx.attempt() == 1 {
        return Err(TaskError::retry_after(
            std::time::Duration::from_millis(300),
            "not yet",
        ));
    }
    Ok(ctx.attempt())
}

/// Says it started (`tests:gate-started:NAME`), waits for a token pushed to `tests:gate:NAME`,
/// then counts its run.
#[task(name = "tests.gate")]
pub async fn gate(ctx: TaskContext, name: String) -> Result<(), TaskError> {
    let mut own = open_test_redis(Duration::from_secs(70)).await?;
    redis::cmd("RPUSH")
        .arg(format!("tests:gate-started:{name}"))
        .arg(ctx.id())
        .query_async::<()>(&mut own)
        .await?;
    let token: Option<(String, String)> = redis::cmd("BLPOP")
        .arg(format!("tests:gate:{name}"))
        .arg(60)
        .query_async(&mut own)
        .await?;
    token.ok_or_else(|| TaskError::fatal("the gate never opened"))?;
    redis::cmd("HINCRBY")
        .arg("tests:runs")
        .arg(ctx.id())
        .arg(1)
        .query_async::<()>(&mut own)
        .await?;
    Ok(())
}

/// A task that was renamed: messages queued under its old name still run.
#[task(name = "tests.renamed", aliases = ["tests.before_rename"])]
pub async fn renamed() -> String {
    "renamed".to_owned()
}
