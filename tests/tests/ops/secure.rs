//! A shared network: TLS with a certificate the test makes, the ACL users of
//! docs/deployment.md (worker, producer, beat), secrets kept out of logs, and signed messages.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::process::{Command, Stdio};
use std::time::Duration;

use stevedore::broker::{Broker, BrokerConfig};
use stevedore::signing::SigningKeys;
use stevedore::{Destination, PublishOptions, TaskState};
use stevedore_tests::tls::TlsRedis;
use stevedore_tests::{
    eventually, runs, tasks, test_worker_bin, KillOnDrop, RedisServer, WorkerProcess,
};

const WAIT: Duration = Duration::from_secs(30);

/// The `user ...` lines of docs/deployment.md, with test passwords.
fn documented_acl() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/deployment.md"
    ))
    .unwrap();
    let lines: Vec<String> = doc
        .lines()
        .filter(|l| l.starts_with("user stevedore-"))
        .map(|l| {
            let role = l.split_whitespace().nth(1).unwrap();
            let line = l.replace(">CHANGE_ME", &format!(">{}", password(role)));
            // The test tasks count their runs under `tests:*`, outside the namespace.
            if role == "stevedore-worker" {
                format!("{line} ~tests:*")
            } else {
                line
            }
        })
        .collect();
    assert_eq!(
        lines.len(),
        3,
        "docs/deployment.md lists the worker, producer and beat users"
    );
    lines
}

/// A log line that reports an ACL refusal (`NOPERM`, however the client library spells it).
fn is_refusal(line: &str) -> bool {
    let line = line.to_ascii_lowercase();
    line.contains("noperm") || line.contains("no permissions")
}

fn password(role: &str) -> String {
    format!("pw-{role}-7d1e")
}

fn config(redis: &TlsRedis, role: &str) -> BrokerConfig {
    let mut config = BrokerConfig::new(redis.url(Some((role, &password(role)))), "stevedore");
    config.tls_ca_file = Some(redis.ca_file().to_path_buf());
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_producer_and_beat_run_over_tls_under_the_documented_acl_users() {
    let redis = TlsRedis::start(&documented_acl(), true);
    let ca = redis.ca_file().display().to_string();
    // The worker's user and password come from the environment and a secret file, not the URL.
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("redis-password");
    std::fs::write(
        &password_file,
        format!("{}\n", password("stevedore-worker")),
    )
    .unwrap();
    let password_file = password_file.display().to_string();
    let env = [
        ("STEVEDORE_REDIS_CA_FILE", ca.as_str()),
        ("STEVEDORE_REDIS_USERNAME", "stevedore-worker"),
        ("STEVEDORE_REDIS_PASSWORD_FILE", password_file.as_str()),
    ];
    let worker = WorkerProcess::start_at(test_worker_bin!(), &redis.url(None), "w", &[], &env);

    let client = stevedore::Client::with_config(config(&redis, "stevedore-producer"))
        .await
        .unwrap();
    let handle = tasks::add::apply_async(&client, (20, 22), PublishOptions::new().notify(true))
        .await
        .unwrap();
    let record = handle.wait(WAIT).await.unwrap();
    assert_eq!(record.state(), TaskState::Succeeded);
    assert_eq!(
        record.task_run().unwrap().result,
        Some(rmpv::Value::from(42))
    );
    // Workflows: the producer stores and starts one, the worker joins its steps (scripts run
    // their commands under the caller's user).
    let chord = stevedore::Workflow::chord(
        [tasks::add::sig((1, 2)), tasks::add::sig((3, 4))],
        tasks::total::partial(()),
    );
    let workflow = client.submit(chord).await.unwrap();
    assert_eq!(workflow.wait(WAIT).await.unwrap().as_i64(), Some(10));
    assert_eq!(workflow.show().await.unwrap().status, "succeeded");
    let delayed = tasks::count_run::apply_async(
        &client,
        (),
        PublishOptions::new().delay(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    assert!(!client.queues().await.unwrap().is_empty());

    let producer_url = redis.url(Some((
        "stevedore-producer",
        &password("stevedore-producer"),
    )));
    let added = Command::new(env!("CARGO_BIN_EXE_test-admin"))
        .args(["--redis-url", &producer_url])
        .args([
            "schedule",
            "add",
            "tick",
            "tests.count_run",
            "--every",
            "300ms",
        ])
        .env("STEVEDORE_REDIS_CA_FILE", &ca)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let beat_url = redis.url(Some(("stevedore-beat", &password("stevedore-beat"))));
    let beat_log = secrets.path().join("beat.log");
    let beat = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_test-beat"))
            .args(["--redis-url", &beat_url, "--lease", "1s"])
            .env("STEVEDORE_REDIS_CA_FILE", &ca)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&beat_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let beat_refused = || {
        let log = std::fs::read_to_string(&beat_log).unwrap_or_default();
        log.lines()
            .filter(|l| is_refusal(l))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };

    let worker_broker = Broker::connect(config(&redis, "stevedore-worker"))
        .await
        .unwrap();
    let conn = worker_broker
        .dedicated_connection(Duration::ZERO, "test")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let counted = loop {
        let counted = runs(&mut conn.clone()).await;
        if counted.len() >= 3 {
            break counted;
        }
        let refused = beat_refused();
        assert!(
            refused.is_empty(),
            "the documented beat ACL is missing rules: {refused:?}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no delayed task and two scheduled runs after {WAIT:?}; beat log:\n{}",
            std::fs::read_to_string(&beat_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(beat);
    assert!(counted.contains_key(delayed.id()));

    let refused: Vec<String> = worker
        .log_lines()
        .into_iter()
        .filter(|line| is_refusal(line))
        .collect();
    assert!(
        refused.is_empty(),
        "the documented worker ACL is missing rules: {refused:?}"
    );
    let secret = password("stevedore-worker");
    assert!(
        worker
            .log_lines()
            .iter()
            .all(|line| !line.contains(&secret)),
        "the worker logged its password"
    );
}

/// A task that logs (the worker's user keeps its lines: RPUSH, LTRIM), and a failure retried
/// by the producer's user.
fn logs_and_retries(admin: &dyn Fn(&[&str]) -> (bool, String)) {
    let (logged, text) = admin(&["enqueue", "tests.chatty", "--args", "[1]", "--wait"]);
    assert!(logged, "{text}");
    let (_, failed) = admin(&["enqueue", "stevedore.fail", "--args", "[\"x\"]", "--wait"]);
    let failed = failed.lines().next().unwrap().to_owned();
    let (retried, text) = admin(&["retry", &failed]);
    assert!(retried, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_user_may_run_every_admin_command() {
    let redis = TlsRedis::start(&documented_acl(), true);
    let ca = redis.ca_file().display().to_string();
    let worker_env = [
        ("STEVEDORE_REDIS_CA_FILE", ca.as_str()),
        ("STEVEDORE_REDIS_USERNAME", "stevedore-worker"),
    ];
    let worker_pw = password("stevedore-worker");
    let worker_url = redis.url(Some(("stevedore-worker", &worker_pw)));
    let _worker = WorkerProcess::start_at(test_worker_bin!(), &worker_url, "w", &[], &worker_env);
    let producer = redis.url(Some((
        "stevedore-producer",
        &password("stevedore-producer"),
    )));
    let admin = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_test-admin"))
            .args(["--redis-url", &producer])
            .args(args)
            .env("STEVEDORE_REDIS_CA_FILE", &ca)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !is_refusal(&text),
            "the producer may not run {args:?}: {text}"
        );
        (out.status.success(), text)
    };
    let (_, id) = admin(&["enqueue", "tests.add", "--args", "[1, 2]", "--wait"]);
    let id = id.lines().next().unwrap().to_owned();
    admin(&["enqueue", "tests.count_run", "--node", "auto"]);
    // A limited task: the worker's user takes and gives back its permit and its rate's turn.
    admin(&["limit", "set", "api", "5/s", "--concurrency", "2"]);
    let limited = ["tests.add", "--args", "[1, 2]", "--limit", "api"];
    let (ran, text) = admin(&[&["enqueue"][..], &limited, &["--wait"]].concat());
    assert!(ran, "{text}");
    let client = stevedore::Client::with_config(config(&redis, "stevedore-producer"))
        .await
        .unwrap();
    stevedore_tests::dead_task(&client, WAIT).await;
    let (_, listed) = admin(&["dead", "list", "--json"]);
    let letters: serde_json::Value = serde_json::from_str(listed.trim()).unwrap();
    let entry = letters[0]["entry"].as_str().unwrap().to_owned();
    admin(&["dead", "show", &entry]);
    logs_and_retries(&admin);
    for args in [
        vec!["task", id.as_str()],
        vec!["queues"],
        vec!["tasks", "--state", "succeeded"],
        vec!["tasks", "--state", "failed", "--error", "x"],
        vec!["nodes"],
        vec!["status", "--all"],
        vec!["running", "--all"],
        vec!["reload", "--node", "w"],
        vec!["cancel", id.as_str()],
        vec!["queue", "pause", "default"],
        vec!["queue", "resume", "default"],
        vec!["schedule", "add", "s", "tests.count_run", "--every", "1h"],
        vec!["schedule", "list"],
        vec!["schedule", "show", "s"],
        vec!["schedule", "run", "s"],
        vec!["schedule", "pause", "s"],
        vec!["schedule", "resume", "s"],
        vec!["schedule", "remove", "s"],
        vec!["dead", "list"],
        vec!["dead", "requeue", "--all"],
        vec!["dead", "purge"],
        vec!["limit", "list"],
        vec!["limit", "show", "api"],
        vec!["limit", "remove", "api"],
    ] {
        admin(&args);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_the_ca_and_wrong_passwords_are_refused_in_one_line() {
    let redis = TlsRedis::start(&documented_acl(), true);
    let untrusted = BrokerConfig::new(redis.url(None), "stevedore");
    let error = Broker::connect(untrusted).await.unwrap_err().to_string();
    assert!(error.starts_with("cannot reach redis"), "{error}");
    assert!(!error.contains('\n'), "{error}");

    let mut wrong = config(&redis, "stevedore-producer");
    wrong.url = redis.url(Some(("stevedore-producer", "not-the-password")));
    let error = Broker::connect(wrong).await.unwrap_err().to_string();
    assert!(
        !error.contains("not-the-password"),
        "the password leaked: {error}"
    );
    assert!(error.contains("***"), "{error}");

    // A worker given a wrong password does not wait for ever: one line, a failure exit.
    let ca = redis.ca_file().display().to_string();
    let url = redis.url(Some(("stevedore-worker", "not-the-password")));
    let env = [("STEVEDORE_REDIS_CA_FILE", ca.as_str())];
    let mut worker = WorkerProcess::spawn(test_worker_bin!(), &url, "w", &[], &env);
    let status = worker.wait_exit(std::time::Duration::from_secs(30));
    assert!(!status.success(), "it exits");
    // Its last line is read from the pipe after it exited: wait for it.
    worker.wait_for_log(
        "check the user and password",
        1,
        std::time::Duration::from_secs(10),
    );
    let logged = worker.log_lines().join("\n");
    assert!(!logged.contains("not-the-password"), "{logged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_with_keys_refuse_unsigned_and_tampered_messages_into_the_dead_letters() {
    let redis = RedisServer::start();
    let keys = "new:0123456789abcdef-new,old:0123456789abcdef-old";
    let _worker = WorkerProcess::start_with_env(
        test_worker_bin!(),
        &redis,
        "w",
        &[],
        &[("STEVEDORE_SIGNING_KEYS", keys)],
    );
    let client_with = |signing: Option<&str>| {
        let mut config = BrokerConfig::new(redis.url(), "stevedore");
        config.signing = signing.map(|k| SigningKeys::parse(k).unwrap());
        stevedore::Client::with_config(config)
    };
    // Signed with the old key (still accepted) and with the new one: both run.
    let old = client_with(Some("old:0123456789abcdef-old")).await.unwrap();
    let new = client_with(Some("new:0123456789abcdef-new")).await.unwrap();
    let by_old = tasks::count_run::apply_async(&old, (), PublishOptions::new())
        .await
        .unwrap();
    let by_new = tasks::count_run::apply_async(&new, (), PublishOptions::new())
        .await
        .unwrap();
    // Unsigned, signed with a key the worker does not hold, and tampered with.
    let unsigned = client_with(None).await.unwrap();
    let plain = tasks::count_run::apply_async(&unsigned, (), PublishOptions::new())
        .await
        .unwrap();
    let stranger = client_with(Some("other:0123456789abcdef-xxx"))
        .await
        .unwrap();
    let foreign = tasks::count_run::apply_async(&stranger, (), PublishOptions::new())
        .await
        .unwrap();
    let message = tasks::count_run::message((), &PublishOptions::new()).unwrap();
    let mut tampered = new.broker().seal(&message).unwrap();
    let last = tampered.len() - 2;
    tampered[last] ^= 0x01;
    let queue = Destination::from_wire_name("default").unwrap();
    new.broker().enqueue_raw(&queue, &tampered).await.unwrap();

    let mut conn = redis.connection().await;
    eventually("the signed tasks to run", WAIT, || {
        let mut conn = conn.clone();
        let ids = [by_old.id().to_owned(), by_new.id().to_owned()];
        async move {
            let runs = runs(&mut conn).await;
            ids.iter().all(|id| runs.get(id) == Some(&1)).then_some(())
        }
    })
    .await;
    let letters = eventually("three dead letters", WAIT, || async {
        let letters = new.broker().dead_letters(&queue, 10).await.unwrap();
        (letters.len() >= 3).then_some(letters)
    })
    .await;
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("not signed")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("unknown key `other`")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("does not match")),
        "{reasons:?}"
    );
    let ran = runs(&mut conn).await;
    for refused in [plain.id(), foreign.id(), message.id.as_str()] {
        assert!(!ran.contains_key(refused), "a refused message ran");
    }
}
