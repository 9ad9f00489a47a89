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

/// Counts what `tests.occupy` runs: at once under a key and on a node, the most seen, the starts.
static OCCUPY: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"local n = redis.call('INCR', KEYS[1])
          local m = redis.call('INCR', KEYS[2])
          if n > tonumber(redis.call('GET', KEYS[3]) or '0') then redis.call('SET', KEYS[3], n) end
          if m > tonumber(redis.call('GET', KEYS[4]) or '0') then redis.call('SET', KEYS[4], m) end
          redis.call('RPUSH', KEYS[5], ARGV[1])
          redis.call('INCR', KEYS[6])
          return n",
    )
});

/// Occupies its node for `milliseconds` under `key`, counting itself: runs at once under the
/// key (`tests:now:KEY`, most seen `tests:max:KEY`) and under the key on its node
/// (`tests:now:KEY:NODE`, `tests:max:KEY:NODE`), its start time in ms (`tests:starts:KEY`)
/// and every start on its node (`tests:started-on:NODE`). Returns the runs under the key at
/// its start.
async fn occupy_for(ctx: &TaskContext, key: &str, milliseconds: u64) -> Result<u64, TaskError> {
    let mut conn = test_redis().await?;
    let node = ctx.node();
    let (now, now_here) = (
        format!("tests:now:{key}"),
        format!("tests:now:{key}:{node}"),
    );
    let at_start: u64 = OCCUPY
        .key(&now)
        .key(&now_here)
        .key(format!("tests:max:{key}"))
        .key(format!("tests:max:{key}:{node}"))
        .key(format!("tests:starts:{key}"))
        .key(format!("tests:started-on:{node}"))
        .arg(stevedore::now_ms())
        .invoke_async(&mut conn)
        .await?;
    tokio::time::sleep(Duration::from_millis(milliseconds)).await;
    redis::pipe()
        .decr(&now, 1)
        .decr(&now_here, 1)
        .query_async::<()>(&mut conn)
        .await?;
    Ok(at_start)
}

/// Occupies one unit (or the impact its call asks for) for `milliseconds`; see `occupy_for`.
#[task(name = "tests.occupy")]
pub async fn occupy(ctx: TaskContext, key: String, milliseconds: u64) -> Result<u64, TaskError> {
    occupy_for(&ctx, &key, milliseconds).await
}

/// `tests.occupy` with an impact of 2 units.
#[task(name = "tests.occupy_double", impact = 2)]
pub async fn occupy_double(
    ctx: TaskContext,
    key: String,
    milliseconds: u64,
) -> Result<u64, TaskError> {
    occupy_for(&ctx, &key, milliseconds).await
}

/// An exclusive task: returns the starts on its node counted when it started and when it
/// ended (equal when nothing else started there meanwhile), and the runs under `key` on its
/// node at its start.
#[task(name = "tests.alone", exclusive)]
pub async fn alone(
    ctx: TaskContext,
    key: String,
    milliseconds: u64,
) -> Result<(u64, u64), TaskError> {
    let started_on = format!("tests:started-on:{}", ctx.node());
    occupy_for(&ctx, &key, 0).await?;
    let mut conn = test_redis().await?;
    let before: u64 = redis::cmd("GET")
        .arg(&started_on)
        .query_async(&mut conn)
        .await?;
    tokio::time::sleep(Duration::from_millis(milliseconds)).await;
    let after: u64 = redis::cmd("GET")
        .arg(&started_on)
        .query_async(&mut conn)
        .await?;
    Ok((before, after))
}

/// `tests.occupy` under a concurrency of its own: at most 2 at once across the cluster.
#[task(name = "tests.two_at_once", concurrency = 2)]
pub async fn two_at_once(
    ctx: TaskContext,
    key: String,
    milliseconds: u64,
) -> Result<u64, TaskError> {
    occupy_for(&ctx, &key, milliseconds).await
}

/// `tests.occupy` under a concurrency of its own of 1, and no retry (a lost run stays lost).
#[task(name = "tests.one_at_once", concurrency = 1, retries = 0)]
pub async fn one_at_once(
    ctx: TaskContext,
    key: String,
    milliseconds: u64,
) -> Result<u64, TaskError> {
    occupy_for(&ctx, &key, milliseconds).await
}

/// `tests.occupy` under the named limit `per_customer`, keyed by `customer`.
#[task(name = "tests.tenant", limit = "per_customer", limit_key = "customer")]
pub async fn tenant(
    ctx: TaskContext,
    customer: String,
    milliseconds: u64,
) -> Result<u64, TaskError> {
    occupy_for(&ctx, &customer, milliseconds).await
}

/// `tests.occupy` at a rate of its own: 10 starts a second, 2 at once.
#[task(name = "tests.paced", rate_limit = "10/s", burst = 2)]
pub async fn paced(ctx: TaskContext, key: String) -> Result<u64, TaskError> {
    occupy_for(&ctx, &key, 0).await
}

/// Sums a list (a chord's callback, a chain's last step) and counts its run in `tests:runs`
/// under its id and in `tests:totals` (every run of it, whatever the id).
#[task(name = "tests.total")]
pub async fn total(ctx: TaskContext, values: Vec<i64>) -> Result<i64, TaskError> {
    let mut conn = test_redis().await?;
    redis::pipe()
        .hincr("tests:runs", ctx.id(), 1)
        .incr("tests:totals", 1)
        .query_async::<()>(&mut conn)
        .await?;
    Ok(values.iter().sum())
}

/// Returns `n` after `milliseconds` (a chord member still running when its worker is killed).
#[task(name = "tests.echo_after")]
pub async fn echo_after(n: i64, milliseconds: u64) -> i64 {
    tokio::time::sleep(Duration::from_millis(milliseconds)).await;
    n
}

/// Keeps what it was given first, as JSON, in `tests:input:KEY` (a link's handler).
#[task(name = "tests.keep_input")]
pub async fn keep_input(input: serde_json::Value, key: String) -> Result<(), TaskError> {
    let mut conn = test_redis().await?;
    redis::cmd("RPUSH")
        .arg(format!("tests:input:{key}"))
        .arg(input.to_string())
        .query_async::<()>(&mut conn)
        .await?;
    Ok(())
}

/// Keeps a record only of its failures (`record = "failures"`); fails when asked to.
#[task(name = "tests.quiet", record = "failures")]
pub async fn quiet(fail: bool) -> Result<(), TaskError> {
    if fail {
        return Err(TaskError::fatal("asked to fail"));
    }
    Ok(())
}

/// Reports 1 of 3 steps, waits (up to 30 s, blocked on its own connection) until the test
/// pushes to `tests:go:ID`, then reports 3 of 3 and returns.
#[task(name = "tests.progress")]
pub async fn progress(ctx: TaskContext) -> Result<(), TaskError> {
    ctx.set_progress(1, 3, "first step").await?;
    let mut conn = open_test_redis(Duration::from_secs(30)).await?;
    let released: Option<(String, String)> = redis::cmd("BLPOP")
        .arg(format!("tests:go:{}", ctx.id()))
        .arg(30)
        .query_async(&mut conn)
        .await?;
    if released.is_none() {
        return Err(TaskError::fatal("never released"));
    }
    ctx.set_progress(3, 3, "all done").await?;
    Ok(())
}

/// Logs `lines` INFO lines (one with a newline and an escape in it), one DEBUG line, then
/// fails once (so that the worker logs its retry in the same span) and succeeds on its
/// second attempt.
#[task(name = "tests.chatty", retries = 1, backoff = "10ms")]
pub async fn chatty(ctx: TaskContext, lines: u32) -> Result<u32, TaskError> {
    for n in 0..lines {
        tracing::info!(n, "working on item {n}");
    }
    tracing::info!("forged\nstate: succeeded \u{1b}[31m");
    tracing::debug!("debug lines are not kept");
    if ctx.attempt() == 1 {
        return Err(TaskError::new("first attempt fails"));
    }
    Ok(ctx.attempt())
}

/// Returns what it was given (no Redis: usable by an inline client).
#[task(name = "tests.identity")]
pub async fn identity(value: serde_json::Value) -> serde_json::Value {
    value
}
