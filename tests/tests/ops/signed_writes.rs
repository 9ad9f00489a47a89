//! With signing keys set, only a key holder's words move the fleet: schedules, control
//! requests, cancel records, pauses and requeued dead letters written by a process without a
//! key are refused, and each refusal is reported.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::process::{Command, Stdio};
use std::time::Duration;

use stevedore::broker::BrokerConfig;
use stevedore::control::{CancelSelector, Command as Control, NodeAnswer, Target};
use stevedore::signing::SigningKeys;
use stevedore::{Client, Destination, PublishOptions};
use stevedore_tests::{
    dead_of, eventually, finished, node_status, runs, stream_of, tasks, test_admin_bin,
    test_worker_bin, KillOnDrop, RedisServer, WorkerProcess,
};

const WAIT: Duration = Duration::from_secs(30);
const KEYS: &str = "k1:0123456789abcdef-k1";

/// A client that signs with `KEYS`, or one without any key.
async fn client(redis: &RedisServer, keyed: bool) -> Client {
    let mut config = BrokerConfig::new(redis.url(), "stevedore");
    config.signing = keyed.then(|| SigningKeys::parse(KEYS).unwrap());
    Client::with_config(config).await.unwrap()
}

fn keyed_worker(redis: &RedisServer) -> WorkerProcess {
    let env = [("STEVEDORE_SIGNING_KEYS", KEYS)];
    WorkerProcess::start_with_env(test_worker_bin!(), redis, "w", &[], &env)
}

/// The admin CLI, with the keys or without any.
fn cli(redis: &RedisServer, keyed: bool, args: &[&str]) -> std::process::Output {
    let mut cli = Command::new(test_admin_bin!());
    cli.arg("--redis-url").arg(redis.url()).args(args);
    cli.env_remove("STEVEDORE_SIGNING_KEYS");
    if keyed {
        cli.env("STEVEDORE_SIGNING_KEYS", KEYS);
    }
    cli.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beat_with_keys_parks_and_reports_a_schedule_written_without_a_key() {
    let redis = RedisServer::start();
    let _worker = keyed_worker(&redis);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("beat.log");
    let _beat = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_test-beat"))
            .args(["--redis-url", &redis.url(), "--lease", "1s"])
            .env("STEVEDORE_SIGNING_KEYS", KEYS)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let every = ["tests.count_run", "--every", "200ms"];
    let forged = ["schedule", "add", "forged", "--queue", "forged"];
    let forged = cli(&redis, false, &[&forged[..], &every].concat());
    assert!(forged.status.success(), "a keyless writer can store it");
    let genuine = cli(
        &redis,
        true,
        &[&["schedule", "add", "genuine"][..], &every].concat(),
    );
    assert!(genuine.status.success());

    let mut conn = redis.connection().await;
    eventually("the signed schedule to fire twice", WAIT, || {
        let mut conn = conn.clone();
        async move { (runs(&mut conn).await.len() >= 2).then_some(()) }
    })
    .await;
    let parked = eventually("the forged schedule to be parked", WAIT, || {
        let mut conn = conn.clone();
        async move {
            let due: Option<f64> = redis::cmd("ZSCORE")
                .arg(stevedore_tests::keys().schedules_due())
                .arg("forged")
                .query_async(&mut conn)
                .await
                .unwrap();
            due.is_none().then_some(())
        }
    })
    .await;
    let _: () = parked;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("schedule is not signed"), "{text}");
    let listed = cli(&redis, true, &["schedule", "list"]);
    assert_eq!(listed.status.code(), Some(1), "the forged one is reported");
    assert!(String::from_utf8_lossy(&listed.stderr).contains("not signed"));
    let forged_runs = stevedore_tests::stream_len(&mut conn, &stream_of("forged")).await;
    assert_eq!(forged_runs, 0, "beat published the forged schedule's runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_writer_can_neither_cancel_nor_pause_nor_ask_keyed_workers() {
    let redis = RedisServer::start();
    let _worker = keyed_worker(&redis);
    let (keyed, keyless) = (client(&redis, true).await, client(&redis, false).await);
    node_status(&keyed, "w").await;

    let asked = keyless
        .control(
            Target::Node("w".into()),
            Control::Status,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert!(
        matches!(asked[..], [NodeAnswer::NotAnswering(_)]),
        "{asked:?}"
    );
    let message = tasks::count_run::message((), &PublishOptions::new()).unwrap();
    let selector = CancelSelector::ids([message.id.clone()]);
    keyless
        .cancel(selector, Duration::from_secs(1))
        .await
        .unwrap();
    let default = Destination::from_wire_name("default").unwrap();
    let pause = keyless.pause_queue(&default, true, Duration::from_secs(1));
    pause.await.unwrap();
    // A key holder's refresh makes the node reread the records and pauses.
    let refresh = keyed
        .control(Target::All, Control::Refresh, WAIT)
        .await
        .unwrap();
    assert!(
        matches!(refresh[..], [NodeAnswer::Answered(_)]),
        "{refresh:?}"
    );
    assert_eq!(
        node_status(&keyed, "w").await.queues.get("default"),
        Some(&false)
    );

    let handle = keyed.publish(message).await.unwrap();
    let record = finished(&keyed, handle.id(), WAIT).await;
    assert_eq!(record.state(), stevedore::TaskState::Succeeded);

    // The key holder's own pause still works.
    keyed.pause_queue(&default, true, WAIT).await.unwrap();
    assert_eq!(
        node_status(&keyed, "w").await.queues.get("default"),
        Some(&true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_without_keys_refuses_to_requeue_a_signed_dead_letter() {
    let redis = RedisServer::start();
    let _worker = keyed_worker(&redis);
    let keyed = client(&redis, true).await;
    let id = stevedore_tests::dead_task(&keyed, WAIT).await;

    let refused = cli(&redis, false, &["dead", "requeue", "--all"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("has no signing key to sign it again"), "{err}");
    let mut conn = redis.connection().await;
    let dead = stevedore_tests::stream_len(&mut conn, &dead_of("default")).await;
    assert_eq!(dead, 1, "the letter stays");

    let requeued = cli(&redis, true, &["dead", "requeue", "--all"]);
    assert!(requeued.status.success(), "{requeued:?}");
    let handle = keyed.handle::<rmpv::Value>(id);
    eventually("the requeued letter to run again", WAIT, || async {
        let record = handle.record().await.unwrap();
        (record.attempts.len() >= 3).then_some(())
    })
    .await;
}
