//! Who is in the fleet: membership comes from heartbeats. A node that stopped is not asked, a
//! lost one is reported as lost (and kept by `nodes` for the retention), and a node gone
//! longer than the retention loses its broadcast group.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::time::Duration;

use nix::sys::signal::Signal;
use stevedore_tests::{
    eventually, run_cli, test_admin_bin, test_worker_bin, RedisServer, WorkerProcess,
};

const WAIT: Duration = Duration::from_secs(30);
/// Fast heartbeats, so that a killed worker is lost within a second.
const FAST: [&str; 4] = ["--heartbeat", "200ms", "--lost-after", "1s"];

fn worker(redis: &RedisServer, node: &str, extra: &[&str]) -> WorkerProcess {
    let args = [&FAST[..], extra].concat();
    WorkerProcess::start(test_worker_bin!(), redis, node, &args)
}

/// `stevedore --lost-after 1s ARGS`.
fn admin(redis: &RedisServer, args: &[&str]) -> std::process::Output {
    run_cli(
        test_admin_bin!(),
        &redis.url(),
        &[&["--lost-after", "1s"][..], args].concat(),
    )
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rows of `nodes --json`.
fn nodes(redis: &RedisServer) -> Vec<serde_json::Value> {
    let out = admin(redis, &["nodes", "--json"]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_all_does_not_wait_for_a_node_that_stopped_cleanly() {
    let redis = RedisServer::start();
    let _a = worker(&redis, "a", &[]);
    let mut b = worker(&redis, "b", &[]);
    b.signal(Signal::SIGTERM);
    assert!(b.wait_exit(WAIT).success());

    let out = admin(&redis, &["status", "--all", "--timeout", "20s"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("a[pid:"), "{text}");
    assert!(
        !text.contains("b:"),
        "a stopped node is not a member: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_node_is_reported_lost_not_waited_for_and_nodes_keeps_it_after_reaping() {
    let redis = RedisServer::start();
    let _a = worker(&redis, "a", &[]);
    let mut b = worker(&redis, "b", &[]);
    b.kill_hard();

    eventually("b to be lost", WAIT, || async {
        let rows = nodes(&redis);
        rows.iter()
            .any(|r| r["node"] == "b" && r["state"] == "lost")
            .then_some(())
    })
    .await;
    // Lost (and maybe reaped already): `--all` reports it, or leaves it out, without waiting.
    let out = admin(&redis, &["status", "--all", "--timeout", "20s", "--json"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let answers: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let b_answer = answers.iter().find(|a| a["node"] == "b");
    assert!(
        b_answer.is_none_or(|b| b["lost"] == true),
        "b is either gone from the members or reported lost: {answers:?}"
    );

    // Once reaped, `nodes` still lists it as lost, with when and what was reaped.
    let row = eventually("b to be reaped and kept as lost", WAIT, || async {
        let rows = nodes(&redis);
        rows.into_iter()
            .find(|r| r["node"] == "b" && r.get("lost_at").is_some())
    })
    .await;
    assert_eq!(row["state"], "lost");
    assert!(row["reaped"].is_u64(), "{row}");
    let text = stdout(&admin(&redis, &["nodes"]));
    assert!(text.contains("lost at"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_gone_longer_than_the_retention_loses_its_broadcast_group() {
    let redis = RedisServer::start();
    let _a = worker(&redis, "a", &["--lost-retention", "1s"]);
    let mut b = worker(&redis, "b", &[]);
    let mut conn = redis.connection().await;
    let groups = || {
        let mut conn = conn.clone();
        async move {
            let reply: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(stevedore_tests::keys().stream(&stevedore::Destination::Broadcast))
                .query_async(&mut conn)
                .await
                .unwrap();
            reply.groups.into_iter().map(|g| g.name).collect::<Vec<_>>()
        }
    };
    assert!(groups().await.contains(&"node:b".to_owned()));
    b.signal(Signal::SIGTERM);
    assert!(b.wait_exit(WAIT).success());

    eventually("b's broadcast group to go", WAIT, || async {
        let now = groups().await;
        (!now.contains(&"node:b".to_owned())).then_some(now)
    })
    .await;
    assert!(
        groups().await.contains(&"node:a".to_owned()),
        "a live node keeps its group"
    );
    let gone: std::collections::HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
        .arg(stevedore_tests::keys().gone())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(gone.is_empty(), "the gone record expired too");
}

/// `GET path` of a dashboard over `client`: status and body.
async fn dashboard_get(client: &stevedore::Client, path: &str) -> (u16, String) {
    use tower::ServiceExt as _;
    let app = stevedore_web::router(client.clone(), stevedore_web::WebConfig::default());
    let request = axum::http::Request::get(path)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_holding_two_tasks_shows_lost_with_two_reaped_in_every_view() {
    let redis = RedisServer::start();
    // Two live peers reap at once: each adds what it reaped to the one count.
    let _a = worker(&redis, "a", &[]);
    let _c = worker(&redis, "c", &[]);
    let mut b = worker(&redis, "b", &["--max-workers", "2"]);
    let mut config = stevedore::ClientConfig::new(redis.url(), "stevedore");
    config.lost_after = Duration::from_secs(1);
    let client = stevedore::Client::with_config(config).await.unwrap();
    let to_b = stevedore::PublishOptions::new().node("b");
    for _ in 0..2 {
        stevedore_tests::tasks::block::apply_async(&client, (), to_b.clone())
            .await
            .unwrap();
    }
    let mut conn = redis.connection().await;
    eventually("b to run both tasks", WAIT, || {
        let mut conn = conn.clone();
        async move {
            let started: u64 = redis::cmd("LLEN")
                .arg("tests:started")
                .query_async(&mut conn)
                .await
                .unwrap();
            (started == 2).then_some(())
        }
    })
    .await;
    b.kill_hard();

    // The operator API, and through it every view.
    let api = client.admin();
    let b_row = eventually("b to be reaped", WAIT, || async {
        let nodes = api.nodes().await.unwrap();
        (nodes.into_iter()).find(|n| n.beat.node == "b" && n.is_lost() && n.beat_at.is_none())
    })
    .await;
    assert_eq!(b_row.reaped, Some(2), "{b_row:?}");
    let _: () = redis::cmd("DEL")
        .arg("tests:started")
        .query_async(&mut conn)
        .await
        .unwrap();

    let rows = nodes(&redis);
    let row = rows.iter().find(|r| r["node"] == "b").unwrap();
    assert_eq!(
        (&row["state"], &row["reaped"]),
        (&"lost".into(), &2.into()),
        "{row}"
    );
    assert!(row["lost_at"].is_u64(), "{row}");
    assert!(stdout(&admin(&redis, &["nodes"])).contains("2 task(s) reaped"));

    let status = admin(&redis, &["status", "--all", "--timeout", "5s"]);
    assert!(status.status.success(), "{}", stdout(&status));
    assert!(stdout(&status).contains("b: lost (no heartbeat; not asked)"));
    let status = admin(&redis, &["status", "--json"]);
    let answers: Vec<serde_json::Value> = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        answers
            .iter()
            .any(|a| a["node"] == "b" && a["lost"] == true),
        "{answers:?}"
    );

    let (code, overview) = dashboard_get(&client, "/").await;
    assert_eq!(code, 200);
    assert!(overview.contains("2 live, 1 lost"), "{overview}");
    let (_, page) = dashboard_get(&client, "/nodes").await;
    assert!(page.contains("2 reaped"), "{page}");

    let scrape = stevedore_web::scrape(&api).await.unwrap();
    assert!(
        scrape.contains("stevedore_nodes{state=\"lost\"} 1"),
        "{scrape}"
    );
    assert!(
        scrape.contains("stevedore_nodes{state=\"live\"} 2"),
        "{scrape}"
    );
}
