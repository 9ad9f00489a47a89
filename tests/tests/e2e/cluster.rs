//! Redis Cluster: a local cluster of three masters with a replica each. Every kind of queue,
//! delays, retries, on_duplicate, results, control, listings and beat work unchanged; a
//! master killed mid-run (its replica takes over) loses no task whose publish Redis
//! acknowledged, with `STEVEDORE_WAIT_REPLICAS=1`; a cluster speaking only TLS works through a
//! `rediss+cluster://` URL.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use stevedore::control::{Command as ControlCommand, Target};
use stevedore::{Destination, OnDuplicate, PublishOptions, TaskState};
use stevedore_tests::cluster::RedisCluster;
use stevedore_tests::{
    eventually, ran_on, run_cli, runs, tasks, test_admin_bin, test_worker_bin, unrecorded_within,
    KillOnDrop, WorkerProcess,
};

const WAIT: Duration = Duration::from_secs(60);
const QUEUES: [&str; 3] = ["default", "high", "low"];

fn worker(cluster: &RedisCluster, node: &str, env: &[(&str, &str)]) -> WorkerProcess {
    let args = [
        "--queues",
        "high,default,low",
        "--max-workers",
        "16",
        "--heartbeat",
        "200ms",
        "--lost-after",
        "2s",
    ];
    WorkerProcess::start_at(test_worker_bin!(), &cluster.url(), node, &args, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_queue_works_on_a_cluster() {
    let cluster = RedisCluster::start();
    let masters: HashSet<u16> = QUEUES
        .iter()
        .map(|q| cluster.master_port_of(&stevedore_tests::stream_of(q)))
        .collect();
    assert!(
        masters.len() > 1,
        "the test queues should live on more than one master"
    );
    let a = worker(&cluster, "a", &[]);
    let _b = worker(&cluster, "b", &[]);
    let client = cluster.stevedore().await;

    // Shared queues on several shards, in one pipelined publish.
    let mut messages = Vec::new();
    for queue in QUEUES {
        for _ in 0..100 {
            messages
                .push(tasks::count_run::message((), &PublishOptions::new().queue(queue)).unwrap());
        }
    }
    let shared: HashSet<String> = messages.iter().map(|m| m.id.clone()).collect();
    client.publish_many(messages).await.unwrap();
    // A node queue, a broadcast, a delayed task, a retried task and a result.
    let on_a = tasks::count_run::apply_async(&client, (), PublishOptions::new().node("a"))
        .await
        .unwrap();
    let broadcast = tasks::count_run::apply_async(&client, (), PublishOptions::new().broadcast())
        .await
        .unwrap();
    let delayed = tasks::count_run::apply_async(
        &client,
        (),
        PublishOptions::new().delay(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let retried = tasks::fail_times::apply_async(&client, (1,), PublishOptions::new().notify(true))
        .await
        .unwrap();
    let added = tasks::add::apply_async(
        &client,
        (2, 3),
        PublishOptions::new().notify(true).queue("low"),
    )
    .await
    .unwrap();

    let mut conn = cluster.connection().await;
    let counted = count_runs(&conn, shared.len() + 3).await;
    assert!(
        shared.iter().all(|id| counted.get(id) == Some(&1)),
        "a shared task did not run exactly once"
    );
    let mut unrecorded = 0;
    for id in &shared {
        if client.task(id).await.unwrap().state() != TaskState::Succeeded {
            unrecorded += 1;
        }
    }
    assert_eq!(unrecorded, 0, "shared tasks without a success record");
    assert_eq!(counted.get(on_a.id()), Some(&1));
    assert!(ran_on(&mut conn, "a").await.contains(&on_a.id().to_owned()));
    assert_eq!(counted.get(delayed.id()), Some(&1));
    assert_eq!(
        counted.get(broadcast.id()),
        Some(&2),
        "the broadcast ran on both nodes"
    );

    let record = retried.wait(WAIT).await.unwrap();
    assert_eq!(record.state(), TaskState::Succeeded);
    assert_eq!(record.attempts.len(), 2, "failed once, then retried");
    let record = added.wait(WAIT).await.unwrap();
    assert_eq!(
        record.task_run().and_then(|r| r.result.clone()),
        Some(rmpv::Value::from(5))
    );

    // Garbage goes to its queue's dead letters, on that queue's shard.
    let low = Destination::from_wire_name("low").unwrap();
    client
        .broker()
        .enqueue_raw(&low, b"\xc1 not msgpack")
        .await
        .unwrap();
    let letters = eventually("a dead letter", WAIT, || async {
        let letters = client.broker().dead_letters(&low, 10).await.unwrap();
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert!(
        letters[0].reason.contains("decode"),
        "{}",
        letters[0].reason
    );

    // on_duplicate: a discard policy holds across the cluster.
    let options = PublishOptions::new()
        .on_duplicate(OnDuplicate::Discard)
        .queue("high");
    let first = tasks::gate::apply_async(&client, ("dup".to_owned(),), options.clone())
        .await
        .unwrap();
    let second = tasks::gate::apply_async(&client, ("dup".to_owned(),), options)
        .await
        .unwrap();
    assert!(!first.discarded() && second.discarded());
    redis::cmd("RPUSH")
        .arg("tests:gate:dup")
        .arg(1)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    // Listings scan every master; control reaches every node.
    let listed: HashSet<Destination> = client
        .queues()
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.destination)
        .collect();
    for queue in QUEUES {
        let destination = Destination::from_wire_name(queue).unwrap();
        assert!(
            listed.contains(&destination),
            "{queue} not listed: {listed:?}"
        );
    }
    let answers = client
        .control(Target::All, ControlCommand::Status, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answers.len(), 2, "both nodes answer status");
    let nodes = client.nodes(Duration::from_secs(5)).await.unwrap();
    assert!(nodes.iter().any(|n| n.beat.node == a.node()));
    let out = run_cli(test_admin_bin!(), &cluster.url(), &["queues"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_failover_mid_run_loses_no_acknowledged_task() {
    let mut cluster = RedisCluster::start();
    let env = [("STEVEDORE_WAIT_REPLICAS", "1")];
    let mut workers: Vec<WorkerProcess> = (0..3)
        .map(|i| worker(&cluster, &format!("w{i}"), &env))
        .collect();
    let mut config = stevedore::ClientConfig::new(cluster.url(), "stevedore");
    config.replicas_to_ack = 1;
    let client = stevedore::Client::with_config(config).await.unwrap();

    let total = 3000;
    let mut acknowledged = HashSet::new();
    let mut refused = 0;
    let mut killed_master = None;
    for batch in 0..30 {
        let messages: Vec<_> = (0..total / 30)
            .map(|i| {
                let queue = QUEUES[i % QUEUES.len()];
                tasks::count_run::message(
                    (),
                    &PublishOptions::new()
                        .queue(queue)
                        .retries(20)
                        .backoff(Duration::from_millis(100), Duration::from_secs(1)),
                )
                .unwrap()
            })
            .collect();
        let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
        match client.publish_many(messages).await {
            Ok(_) => acknowledged.extend(ids),
            Err(_) => refused += 1, // not acknowledged: the master was going down
        }
        if batch == 10 {
            killed_master = Some(cluster.kill_master_of(&stevedore_tests::stream_of("default")));
        }
        if let (15, Some(port)) = (batch, killed_master) {
            // Back as a replica of its replacement, so writes can be confirmed again.
            cluster.restart_node(port);
        }
        if batch == 20 {
            let mut victim = workers.remove(0);
            victim.kill_hard();
            workers.push(worker(&cluster, "w-late", &env));
        }
    }

    let conn = cluster.connection().await;
    let left = unrecorded_within(&client, &acknowledged, Duration::from_secs(120)).await;
    let counted = runs(&mut conn.clone()).await;
    let missing_record = left.len();
    let twice = counted.values().filter(|n| **n > 1).count();
    for id in left.iter().take(5) {
        let where_now = whereabouts(&mut conn.clone(), id).await;
        let record = client.task(id).await;
        writeln!(
            std::io::stderr().lock(),
            "no success record: {id} ran {:?} times, found in {where_now:?}, record {record:#?}",
            counted.get(id)
        )
        .unwrap();
    }
    writeln!(
        std::io::stderr().lock(),
        "cluster fault suite: {} acknowledged, {refused} batches refused, {missing_record} without a \
         success record, {twice} ran more than once, master on port {killed_master:?} killed",
        acknowledged.len()
    )
    .unwrap();
    assert!(killed_master.is_some());
    assert_eq!(
        missing_record, 0,
        "acknowledged tasks without a success record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_speaking_only_tls_runs_tasks_through_a_rediss_cluster_url() {
    let cluster = RedisCluster::start_tls();
    assert!(cluster.url().starts_with("rediss+cluster://"));
    let ca = cluster.ca_file().unwrap().display().to_string();
    let _worker = worker(&cluster, "w", &[("STEVEDORE_REDIS_CA_FILE", &ca)]);
    let client = cluster.stevedore().await;
    let messages: Vec<_> = (0..30)
        .map(|i| {
            let options = PublishOptions::new().queue(QUEUES[i % QUEUES.len()]);
            tasks::count_run::message((), &options).unwrap()
        })
        .collect();
    let ids: HashSet<String> = messages.iter().map(|m| m.id.clone()).collect();
    client.publish_many(messages).await.unwrap();
    let left = unrecorded_within(&client, &ids, WAIT).await;
    assert!(left.is_empty(), "tasks without a success record: {left:?}");

    // Without the CA, the cluster's certificate is refused, in one line.
    let Err(refused) = stevedore::Client::connect(&cluster.url(), "stevedore").await else {
        panic!("a client without the CA connected");
    };
    let refused = refused.to_string();
    assert!(!refused.contains('\n'), "{refused}");
}

/// Where a message with `id` is now: the delayed sets and streams of the test queues holding
/// it, and whether its stream entry is pending.
async fn whereabouts(conn: &mut stevedore::broker::Connection, id: &str) -> Vec<String> {
    let mut found = Vec::new();
    for queue in QUEUES {
        let queue_keys = stevedore::Destination::queue(queue).expect("a valid queue name");
        let delayed: Vec<Vec<u8>> = redis::cmd("ZRANGE")
            .arg(stevedore_tests::keys().delayed(&queue_keys))
            .arg(0)
            .arg(-1)
            .query_async(conn)
            .await
            .unwrap_or_default();
        if delayed.iter().any(|m| contains(m, id.as_bytes())) {
            found.push(format!("{queue} delayed"));
        }
        let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(stevedore_tests::keys().stream(&queue_keys))
            .arg("-")
            .arg("+")
            .query_async(conn)
            .await
            .unwrap_or_default();
        let holding = entries
            .iter()
            .filter(|(_, fields)| fields.iter().any(|f| contains(f, id.as_bytes())));
        for (entry, _) in holding {
            found.push(format!("{queue} stream entry {entry}"));
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_fires_once_per_run_on_a_cluster_across_a_leader_kill() {
    let cluster = RedisCluster::start();
    let _worker = worker(&cluster, "w", &[]);
    let beat = || {
        KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_test-beat"))
                .args(["--redis-url", &cluster.url(), "--lease", "1s"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut beats = vec![beat(), beat()];
    let add = run_cli(
        test_admin_bin!(),
        &cluster.url(),
        &[
            "schedule",
            "add",
            "tick",
            "tests.count_run",
            "--every",
            "200ms",
            "--queue",
            "low",
        ],
    );
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let conn = cluster.connection().await;
    count_runs(&conn, 3).await;
    beats.remove(0); // one of the two (leader or standby) is SIGKILLed
    let before = runs(&mut conn.clone()).await.len();
    let counted = count_runs(&conn, before + 5).await;
    assert!(
        counted.values().all(|n| *n == 1),
        "a run fired twice: {counted:?}"
    );
}

async fn count_runs(conn: &stevedore::broker::Connection, at_least: usize) -> HashMap<String, u64> {
    eventually(&format!("{at_least} task runs"), WAIT, || {
        let mut conn = conn.clone();
        async move { Some(runs(&mut conn).await).filter(|r| r.len() >= at_least) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_follows_its_queue_to_another_master_after_a_resharding() {
    let cluster = RedisCluster::start();
    let _worker = worker(&cluster, "w", &[]);
    let client = cluster.stevedore().await;
    let conn = cluster.connection().await;
    let before = tasks::count_run::apply_async(&client, (), PublishOptions::new().queue("high"))
        .await
        .unwrap();
    count_runs(&conn, 1).await;
    let stream = &stevedore_tests::stream_of("high");
    let old = cluster.master_port_of(stream);
    let new = cluster.move_slot_of(stream);
    assert_ne!(old, new);
    assert_eq!(cluster.master_port_of(stream), new);
    let after: Vec<String> = {
        let messages: Vec<_> = (0..50)
            .map(|_| tasks::count_run::message((), &PublishOptions::new().queue("high")).unwrap())
            .collect();
        let ids = messages.iter().map(|m| m.id.clone()).collect();
        client.publish_many(messages).await.unwrap();
        ids
    };
    let counted = count_runs(&conn, 51).await;
    assert_eq!(counted.get(before.id()), Some(&1));
    assert!(
        after.iter().all(|id| counted.get(id) == Some(&1)),
        "a task after the move did not run once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_over_a_cluster_shows_every_queue_of_every_master() {
    let cluster = RedisCluster::start();
    let masters: HashSet<u16> = QUEUES
        .iter()
        .map(|q| cluster.master_port_of(&stevedore_tests::stream_of(q)))
        .collect();
    assert!(masters.len() > 1, "the queues live on several masters");
    let client = cluster.stevedore().await;
    let messages = QUEUES
        .iter()
        .map(|q| tasks::count_run::message((), &PublishOptions::new().queue(*q)).unwrap())
        .collect();
    client.publish_many(messages).await.unwrap();

    let app = stevedore_web::router(client, stevedore_web::WebConfig::default());
    let request = axum::http::Request::get("/")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
    assert_eq!(response.status(), axum::http::StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let page = String::from_utf8_lossy(&body);
    for queue in QUEUES {
        assert!(
            page.contains(&format!("href=\"/queues/{queue}\"")),
            "{queue}: {page}"
        );
    }
}
