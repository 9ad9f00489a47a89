//! on_duplicate policies across two nodes, with exact run counts.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use stevedore::{OnDuplicate, PublishOptions, TaskHandle};
use stevedore_tests::{eventually, runs, tasks, test_worker_bin, RedisServer, WorkerProcess};

const WAIT: Duration = Duration::from_secs(30);

struct Cluster {
    redis: RedisServer,
    _nodes: [WorkerProcess; 2],
    client: stevedore::Client,
    conn: MultiplexedConnection,
}

async fn cluster() -> Cluster {
    let redis = RedisServer::start();
    let nodes = [
        WorkerProcess::start(test_worker_bin!(), &redis, "one", &["--max-workers", "4"]),
        WorkerProcess::start(test_worker_bin!(), &redis, "two", &["--max-workers", "4"]),
    ];
    let client = redis.stevedore().await;
    let conn = redis.connection().await;
    Cluster {
        redis,
        _nodes: nodes,
        client,
        conn,
    }
}

impl Cluster {
    async fn publish(&self, gate: &str, policy: OnDuplicate) -> TaskHandle<()> {
        tasks::gate::apply_async(
            &self.client,
            (gate.to_owned(),),
            PublishOptions::new().on_duplicate(policy),
        )
        .await
        .unwrap()
    }

    async fn started(&self, gate: &str) -> usize {
        let mut conn = self.conn.clone();
        redis::cmd("LLEN")
            .arg(format!("tests:gate-started:{gate}"))
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    async fn wait_started(&self, gate: &str, count: usize) {
        eventually(
            &format!("{count} run(s) of gate {gate} to start"),
            WAIT,
            || async move { (self.started(gate).await >= count).then_some(()) },
        )
        .await;
    }

    async fn open(&self, gate: &str) {
        let mut conn = self.conn.clone();
        redis::cmd("RPUSH")
            .arg(format!("tests:gate:{gate}"))
            .arg(1)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }

    async fn wait_runs(&self, count: usize) -> std::collections::HashMap<String, u64> {
        eventually(&format!("{count} finished runs"), WAIT, || async move {
            let mut conn = self.conn.clone();
            Some(runs(&mut conn).await).filter(|r| r.len() >= count)
        })
        .await
    }

    /// Messages parked behind the holder of the only dedup key in use.
    async fn parked(&self) -> usize {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(stevedore_tests::keys().dup_parked(&default_queue(), "*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut total = 0;
        for key in keys {
            let n: usize = redis::cmd("LLEN")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
            total += n;
        }
        total
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_runs_every_copy_at_once() {
    let c = cluster().await;
    for _ in 0..3 {
        assert!(!c.publish("p", OnDuplicate::Parallel).await.discarded());
    }
    c.wait_started("p", 3).await;
    for _ in 0..3 {
        c.open("p").await;
    }
    assert_eq!(c.wait_runs(3).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_drops_copies_while_one_is_queued_or_running() {
    let c = cluster().await;
    let first = c.publish("d", OnDuplicate::Discard).await;
    assert!(!first.discarded());
    assert!(
        c.publish("d", OnDuplicate::Discard).await.discarded(),
        "dropped while queued or running"
    );
    c.wait_started("d", 1).await;
    for _ in 0..3 {
        assert!(
            c.publish("d", OnDuplicate::Discard).await.discarded(),
            "dropped while running"
        );
    }
    let other = c.publish("other", OnDuplicate::Discard).await;
    assert!(!other.discarded(), "other arguments are no duplicate");
    c.open("d").await;
    c.open("other").await;
    c.wait_runs(2).await;
    let again = eventually("the key to be released", WAIT, || async {
        let handle = c.publish("d", OnDuplicate::Discard).await;
        (!handle.discarded()).then_some(handle)
    })
    .await;
    c.open("d").await;
    let counted = c.wait_runs(3).await;
    assert_eq!(counted.len(), 3);
    assert_eq!(counted.get(first.id()), Some(&1));
    assert_eq!(counted.get(again.id()), Some(&1));
    assert_eq!(c.started("d").await, 2, "exactly two runs of d");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_runs_one_copy_at_a_time_across_nodes() {
    let c = cluster().await;
    let handles = [
        c.publish("s", OnDuplicate::Serial).await,
        c.publish("s", OnDuplicate::Serial).await,
        c.publish("s", OnDuplicate::Serial).await,
        c.publish("s", OnDuplicate::Serial).await,
    ];
    assert!(handles.iter().all(|h| !h.discarded()));
    for step in 1..=4 {
        c.wait_started("s", step).await;
        eventually("the others to be parked", WAIT, || async {
            (c.parked().await == 4 - step).then_some(())
        })
        .await;
        assert_eq!(c.started("s").await, step, "more than one ran at once");
        c.open("s").await;
    }
    let counted = c.wait_runs(4).await;
    assert!(
        handles.iter().all(|h| counted.get(h.id()) == Some(&1)),
        "{counted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_one_keeps_at_most_one_waiting_besides_the_running_one() {
    let c = cluster().await;
    let running = c.publish("q", OnDuplicate::QueueOne).await;
    c.wait_started("q", 1).await;
    let waiting = c.publish("q", OnDuplicate::QueueOne).await;
    assert!(!waiting.discarded());
    assert!(c.publish("q", OnDuplicate::QueueOne).await.discarded());
    assert!(c.publish("q", OnDuplicate::QueueOne).await.discarded());
    eventually("the waiting copy to be parked", WAIT, || async {
        (c.parked().await == 1).then_some(())
    })
    .await;
    assert_eq!(c.started("q").await, 1);

    c.open("q").await;
    c.wait_started("q", 2).await;
    c.open("q").await;
    let counted = c.wait_runs(2).await;
    assert_eq!(counted.get(running.id()), Some(&1));
    assert_eq!(counted.get(waiting.id()), Some(&1));
    // The last holder releases its key in the same write as its record, just after its run.
    let conn = c.redis.connection().await;
    eventually("no on_duplicate state left behind", WAIT, || {
        let mut conn = conn.clone();
        async move {
            let left: Vec<String> = redis::cmd("KEYS")
                .arg(stevedore_tests::keys().dup(&default_queue(), "*"))
                .query_async(&mut conn)
                .await
                .ok()?;
            left.is_empty().then_some(())
        }
    })
    .await;
}

/// The `default` queue.
fn default_queue() -> stevedore::Destination {
    stevedore::Destination::queue("default").expect("a valid queue name")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_copies_are_checked_for_duplicates_as_immediate_ones_are() {
    let redis = RedisServer::start();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;
    let copy = || {
        let options = PublishOptions::new()
            .on_duplicate(OnDuplicate::Discard)
            .delay(Duration::from_millis(500))
            .notify(true);
        tasks::count_run::apply_async(&client, (), options)
    };
    let first = copy().await.unwrap();
    for _ in 0..2 {
        let dropped = copy().await.unwrap();
        assert!(
            dropped.discarded(),
            "a copy published while the first waits"
        );
    }
    first.get(WAIT).await.unwrap();
    let mut conn = redis.connection().await;
    assert_eq!(runs(&mut conn).await.values().sum::<u64>(), 1, "ran once");
}
