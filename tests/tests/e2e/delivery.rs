//! Shared, node and broadcast queues end to end, with real worker processes.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::collections::HashSet;
use std::time::Duration;

use stevedore::broker::keys::QUEUE_GROUP;
use stevedore::broker::Keys;
use stevedore::Destination;
use stevedore::PublishOptions;
use stevedore_tests::{
    eventually, keys, pending, ran_on, runs, stream_len, stream_of, tasks, test_worker_bin,
    RedisServer, WorkerProcess,
};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_tasks_over_two_workers_each_run_exactly_once() {
    let redis = RedisServer::start();
    let a = WorkerProcess::start(test_worker_bin!(), &redis, "a", &["--concurrency", "8"]);
    let b = WorkerProcess::start(test_worker_bin!(), &redis, "b", &["--concurrency", "8"]);
    let client = redis.stevedore().await;
    let messages = (0..1000)
        .map(|_| tasks::count_run::message((), &PublishOptions::new()))
        .collect::<stevedore::Result<Vec<_>>>()
        .unwrap();
    let ids: HashSet<String> = client
        .publish_many(messages)
        .await
        .unwrap()
        .iter()
        .map(|h| h.id().to_owned())
        .collect();
    assert_eq!(ids.len(), 1000);

    let mut conn = redis.connection().await;
    let counted = eventually("1000 tasks run", Duration::from_secs(60), || {
        let mut conn = conn.clone();
        async move { Some(runs(&mut conn).await).filter(|r| r.len() == 1000) }
    })
    .await;
    assert_eq!(counted.keys().cloned().collect::<HashSet<_>>(), ids);
    assert!(
        counted.values().all(|&n| n == 1),
        "some task ran more than once"
    );
    let (on_a, on_b) = (
        ran_on(&mut conn, a.node()).await,
        ran_on(&mut conn, b.node()).await,
    );
    assert_eq!(on_a.len() + on_b.len(), 1000);
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "work was not spread: a={} b={}",
        on_a.len(),
        on_b.len()
    );

    eventually(
        "every entry acknowledged and deleted",
        Duration::from_secs(10),
        || {
            let mut conn = conn.clone();
            async move {
                let done = stream_len(&mut conn, &stream_of("default")).await == 0
                    && pending(&mut conn, &stream_of("default"), QUEUE_GROUP).await == 0;
                done.then_some(())
            }
        },
    )
    .await;
    let record = client.task(ids.iter().next().unwrap()).await.unwrap();
    assert_eq!(record.state(), stevedore::TaskState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_queue_task_runs_only_on_its_node() {
    let redis = RedisServer::start();
    let _one = WorkerProcess::start(test_worker_bin!(), &redis, "one", &[]);
    let _two = WorkerProcess::start(test_worker_bin!(), &redis, "two", &[]);
    let client = redis.stevedore().await;
    let messages = (0..20)
        .map(|_| tasks::count_run::message((), &PublishOptions::new().node("two")))
        .collect::<stevedore::Result<Vec<_>>>()
        .unwrap();
    client.publish_many(messages).await.unwrap();

    let mut conn = redis.connection().await;
    eventually("20 node tasks run", Duration::from_secs(30), || {
        let mut conn = conn.clone();
        async move { (runs(&mut conn).await.len() == 20).then_some(()) }
    })
    .await;
    assert_eq!(ran_on(&mut conn, "two").await.len(), 20);
    assert!(ran_on(&mut conn, "one").await.is_empty());
    // The run counted itself before its outcome was recorded (the recorder writes batches).
    let id = ran_on(&mut conn, "two").await[0].clone();
    let run = eventually(
        "the first run's record",
        Duration::from_secs(30),
        || async { client.task(&id).await.ok()?.task_run().cloned() },
    )
    .await;
    assert_eq!(run.queue, "node:two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_runs_once_on_each_of_three_nodes() {
    broadcast_to_three_nodes(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_a_node_whose_connections_were_just_killed() {
    broadcast_to_three_nodes(true).await;
}

async fn broadcast_to_three_nodes(kill_connections_of_c: bool) {
    let redis = RedisServer::start();
    let workers: Vec<WorkerProcess> = ["a", "b", "c"]
        .iter()
        .map(|n| WorkerProcess::start(test_worker_bin!(), &redis, n, &[]))
        .collect();
    let client = redis.stevedore().await;
    let mut conn = redis.connection().await;
    if kill_connections_of_c {
        let killed = kill_connections_of(&mut conn, "c").await;
        assert!(
            killed >= 2,
            "expected the fetchers' connections of c, killed {killed}"
        );
    }
    let handle = tasks::count_run::apply_async(&client, (), PublishOptions::new().broadcast())
        .await
        .unwrap();

    let counted = eventually(
        "the broadcast run on three nodes",
        Duration::from_secs(30),
        || {
            let mut conn = conn.clone();
            let client = client.clone();
            let id = handle.id().to_owned();
            async move {
                let record = client.task(&id).await.ok()?;
                let all_done = record.runs.len() == 3 && record.state().is_final();
                let all_acked = all_acked(&mut conn).await;
                (all_done && all_acked).then_some(())?;
                Some(runs(&mut conn).await)
            }
        },
    )
    .await;
    assert_eq!(counted.get(handle.id()), Some(&3), "{counted:?}");
    for w in &workers {
        assert_eq!(
            ran_on(&mut conn, w.node()).await,
            vec![handle.id().to_owned()]
        );
    }
    let record = client.task(handle.id()).await.unwrap();
    let nodes: HashSet<_> = record.runs.values().map(|r| r.node.clone()).collect();
    assert_eq!(nodes, HashSet::from(["a".into(), "b".into(), "c".into()]));
    if kill_connections_of_c {
        // c lost its fetchers' connections and came back: two more "fetching" lines.
        workers[2].wait_for_log("fetching", 4, Duration::from_secs(10));
        assert!(workers[2]
            .log_lines()
            .iter()
            .any(|l| l.contains("reconnecting")));
    }
}

/// Whether every node's broadcast group has read and acknowledged everything.
async fn all_acked(conn: &mut redis::aio::MultiplexedConnection) -> bool {
    for node in ["a", "b", "c"] {
        if pending(
            conn,
            &keys().stream(&Destination::Broadcast),
            &Keys::group(&Destination::Broadcast, node),
        )
        .await
            != 0
        {
            return false;
        }
    }
    true
}

/// `CLIENT KILL`s every dedicated connection of `node` (named `stevedore:NODE:ROLE`: its
/// fetchers and recorder); returns how many.
async fn kill_connections_of(conn: &mut redis::aio::MultiplexedConnection, node: &str) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(conn)
        .await
        .unwrap();
    let prefix = format!("name=stevedore:{node}:");
    let ids: Vec<String> = list
        .lines()
        .filter(|line| line.split(' ').any(|f| f.starts_with(&prefix)))
        .filter_map(|line| {
            line.split(' ')
                .find_map(|f| f.strip_prefix("id="))
                .map(str::to_owned)
        })
        .collect();
    for id in &ids {
        let _: redis::Value = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(conn)
            .await
            .unwrap();
    }
    ids.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reads_only_as_many_messages_as_it_has_free_slots() {
    let redis = RedisServer::start();
    let _first = WorkerProcess::start(test_worker_bin!(), &redis, "first", &["--concurrency", "2"]);
    let client = redis.stevedore().await;
    let messages = (0..5)
        .map(|_| tasks::block::message((), &PublishOptions::new()))
        .collect::<stevedore::Result<Vec<_>>>()
        .unwrap();
    client.publish_many(messages).await.unwrap();
    let mut conn = redis.connection().await;
    wait_for_started(&conn, 2).await;
    assert_eq!(
        pending(&mut conn, &stream_of("default"), QUEUE_GROUP).await,
        2,
        "a busy worker must not hold more"
    );
    assert_eq!(stream_len(&mut conn, &stream_of("default")).await, 5);

    // The three left waiting in Redis are free for another node.
    let _second = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "second",
        &["--concurrency", "2"],
    );
    wait_for_started(&conn, 4).await;
    assert_eq!(
        pending(&mut conn, &stream_of("default"), QUEUE_GROUP).await,
        4
    );
}

/// Waits until `count` `tests.block` tasks have started.
async fn wait_for_started(conn: &redis::aio::MultiplexedConnection, count: usize) {
    eventually("blocking tasks to start", Duration::from_secs(20), || {
        let mut conn = conn.clone();
        async move {
            let started: usize = redis::cmd("LLEN")
                .arg("tests:started")
                .query_async(&mut conn)
                .await
                .ok()?;
            (started >= count).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_written_to_the_stream_before_its_eta_waits_until_then() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;
    // A foreign producer that writes the stream directly, with an eta 3 s ahead.
    let mut message = tasks::add::message((1, 2), &PublishOptions::new()).unwrap();
    let eta = stevedore::now_ms() + 3_000;
    message.eta = Some(eta);
    let default = Destination::queue("default").unwrap();
    let bytes = client.broker().seal(&message).unwrap();
    client.broker().enqueue_raw(&default, &bytes).await.unwrap();

    let mut conn = redis.connection().await;
    eventually("the early entry to move to the delayed set", WAIT, || {
        let mut conn = conn.clone();
        async move {
            let delayed: u64 = redis::cmd("ZCARD")
                .arg(keys().delayed(&Destination::queue("default").unwrap()))
                .query_async(&mut conn)
                .await
                .unwrap();
            (delayed == 1).then_some(())
        }
    })
    .await;
    assert_eq!(stream_len(&mut conn, &stream_of("default")).await, 0);
    let record = stevedore_tests::finished(&client, &message.id, WAIT).await;
    let started = record.task_run().unwrap().started_at.unwrap();
    assert!(started >= eta, "ran {} ms before its eta", eta - started);
}

/// A stream entry as XRANGE returns it: its id and its fields.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_that_cannot_run_leaves_one_dead_letter_per_node_that_read_it() {
    let redis = RedisServer::start();
    let _nodes: Vec<WorkerProcess> = ["a", "b"]
        .iter()
        .map(|n| WorkerProcess::start(test_worker_bin!(), &redis, n, &[]))
        .collect();
    let mut conn = redis.connection().await;
    let stream = keys().stream(&Destination::Broadcast);
    let source: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("m")
        .arg(b"\xc1 not a message".as_slice())
        .query_async(&mut conn)
        .await
        .unwrap();
    let dead = keys().dead_letters(&Destination::Broadcast);
    let letters = eventually("a dead letter from each node", WAIT, || {
        let mut conn = conn.clone();
        let dead = dead.clone();
        async move {
            let letters: Vec<StreamEntry> = redis::cmd("XRANGE")
                .arg(&dead)
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .unwrap();
            (letters.len() >= 2).then_some(letters)
        }
    })
    .await;
    assert_eq!(
        letters.len(),
        2,
        "one per node (docs/protocol.md, section 6)"
    );
    for (_, fields) in &letters {
        let source_id = fields.iter().find(|(k, _)| k == "source_id").unwrap();
        assert_eq!(source_id.1, source.as_bytes());
    }
    assert_eq!(
        stream_len(&mut conn, &stream).await,
        1,
        "the entry stays for the others"
    );
}
