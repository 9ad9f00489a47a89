//! The `stevedore` admin CLI: enqueue, task, queues, and its errors.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::process::{Command, Output};
use std::time::Duration;

use stevedore_tests::{test_worker_bin, RedisServer, WorkerProcess};

fn admin(redis_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_test-admin"))
        .arg("--redis-url")
        .arg(redis_url)
        .args(args)
        .output()
        .expect("run the admin CLI")
}

fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A task that fails every attempt: two retries (1 ms apart), then the dead letters.
const DIES_AFTER_TWO_RETRIES: [&str; 9] = [
    "enqueue",
    "stevedore.fail",
    "--args",
    "[\"x\"]",
    "--retries",
    "2",
    "--backoff",
    "1ms",
    "--wait",
];

fn is_uuid(text: &str) -> bool {
    uuid::Uuid::parse_str(text).is_ok()
}

#[test]
fn enqueue_wait_prints_the_id_then_the_result_as_json() {
    let redis = RedisServer::start();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let out = admin(
        &redis.url(),
        &[
            "enqueue",
            "stevedore.echo",
            "--args",
            r#"[1, "x", {"k": [true]}]"#,
            "--wait",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(is_uuid(&lines[0]));
    assert_eq!(lines[1], r#"[1,"x",{"k":[true]}]"#);

    let task = admin(&redis.url(), &["task", &lines[0], "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&task.stdout).unwrap();
    assert_eq!(json["state"], "succeeded");
    assert_eq!(json["runs"][0]["node"], "w");
    assert_eq!(json["runs"][0]["task"], "stevedore.echo");
    assert_eq!(json["runs"][0]["attempt"], 1);
    let human = admin(&redis.url(), &["task", &lines[0]]);
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("state:     succeeded") && human.contains("node:      w"),
        "{human}"
    );
}

#[test]
fn enqueue_wait_exits_non_zero_when_the_task_fails_or_time_runs_out() {
    let redis = RedisServer::start();
    let failed = {
        let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
        admin(
            &redis.url(),
            &[
                "enqueue",
                "stevedore.fail",
                "--args",
                r#"["it broke"]"#,
                "--wait",
            ],
        )
    };
    assert!(!failed.status.success());
    assert!(
        stderr(&failed).contains("failed: it broke"),
        "{}",
        stderr(&failed)
    );

    let timed_out = admin(
        &redis.url(),
        &[
            "enqueue",
            "stevedore.noop",
            "--wait",
            "--wait-timeout",
            "300ms",
        ],
    );
    assert!(!timed_out.status.success());
    assert!(
        stderr(&timed_out).contains("did not finish within"),
        "{}",
        stderr(&timed_out)
    );
}

#[test]
fn enqueue_count_publishes_that_many_and_queues_counts_them() {
    let redis = RedisServer::start();
    let out = admin(
        &redis.url(),
        &[
            "enqueue",
            "stevedore.noop",
            "--queue",
            "later",
            "--count",
            "1500",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ids = stdout_lines(&out);
    assert_eq!(ids.len(), 1500);
    assert!(ids.iter().all(|id| is_uuid(id)));
    admin(&redis.url(), &["enqueue", "stevedore.noop", "--node", "n7"]);
    admin(&redis.url(), &["enqueue", "stevedore.noop", "--broadcast"]);

    let queues = admin(&redis.url(), &["queues", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&queues.stdout).unwrap();
    let row = |name: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|r| r["queue"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {name} in {json}"))
    };
    assert_eq!(row("later")["waiting"], 1500);
    assert_eq!(row("later")["running"], 0);
    assert_eq!(row("node:n7")["waiting"], 1);
    assert_eq!(row("broadcast")["length"], 1);
    let table = admin(&redis.url(), &["queues"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.lines().next().unwrap().starts_with("QUEUE"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("later") && l.contains("1500")),
        "{table}"
    );
}

#[test]
fn bad_input_is_one_clear_line() {
    let redis = RedisServer::start();
    let cases: [(&str, Vec<&str>, &str); 4] = [
        (
            "redis://127.0.0.1:1",
            vec!["queues"],
            "error: cannot reach redis at redis://127.0.0.1:1",
        ),
        (
            "http://nowhere",
            vec!["queues"],
            "error: invalid redis URL `http://nowhere`",
        ),
        (
            "",
            vec!["enqueue", "stevedore.noop", "--args", "{"],
            "error: --args is not JSON",
        ),
        (
            "",
            vec!["enqueue", "stevedore.noop", "--queue", "no spaces"],
            "error: invalid queue name `no spaces`",
        ),
    ];
    for (url, args, expected) in cases {
        let url = if url.is_empty() {
            redis.url()
        } else {
            url.to_owned()
        };
        let out = admin(&url, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.starts_with(expected), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    for url in [
        "redis://user:hunter2@127.0.0.1:1",
        "user:hunter2@127.0.0.1:1",
        "hunter2@127.0.0.1:1",
        "redis://127.0.0.1:1/0?password=hunter2",
        "redis://127.0.0.1:1?db=0&pass=hunter2",
    ] {
        let secret = admin(url, &["queues"]);
        let err = stderr(&secret);
        assert!(
            err.starts_with("error: ") && !err.contains("hunter2"),
            "{url}: {err}"
        );
    }
}

#[test]
fn control_commands_answer_in_awx_layout_and_as_json() {
    let redis = RedisServer::start();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w1", &["--max-workers", "3"]);
    let url = redis.url();
    let id = stdout_lines(&admin(&url, &["enqueue", "tests.block"]))[0].clone();
    let running = stevedore_tests::eventually_blocking("the task to run", || {
        let out = admin(&url, &["running", "--node", "w1"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains(&format!("w1 running {id}")).then_some(text)
    });
    assert!(running.contains(&id));

    let status = Command::new(test_worker_bin!())
        .args(["--redis-url", &url, "--status", "--node", "w1"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", stderr(&status));
    let lines = stdout_lines(&status);
    assert!(
        lines[0].starts_with("w1[pid:")
            && lines[0].contains("workers total=1 min=1 max=3")
            && lines[0].ends_with("units=1/3"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with(". worker[id:0] sent=1 finished=0 qsize=1 rss=-"),
        "{lines:?}"
    );
    assert_eq!(
        lines[2].split_whitespace().take(4).collect::<Vec<_>>(),
        ["-", "running", id.as_str(), "tests.block(<0"]
    );

    let json = admin(&url, &["status", "--all", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json[0]["node"], "w1");
    assert_eq!(json[0]["answering"], true);
    assert_eq!(
        json[0]["status"]["workers"][0]["current"]["id"],
        id.as_str()
    );

    let refused = admin(&url, &["cancel"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("cancelling everything is refused"),
        "{}",
        stderr(&refused)
    );
    let cancelled = Command::new(test_worker_bin!())
        .args(["--redis-url", &url, "--cancel", &id])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&cancelled.stdout).contains(&format!("w1 stopped {id}")));

    // A node nobody has seen is an error at once, not a wait; without --node every node is
    // asked (not this host's name).
    let nobody = admin(&url, &["status", "--node", "ghost", "--timeout", "300ms"]);
    assert_eq!(nobody.status.code(), Some(1));
    assert!(stdout_lines(&nobody).is_empty());
    assert!(
        stderr(&nobody).contains("no node `ghost`"),
        "{}",
        stderr(&nobody)
    );
    let everyone = admin(&url, &["status"]);
    assert!(everyone.status.success(), "{}", stderr(&everyone));
    assert!(String::from_utf8_lossy(&everyone.stdout).starts_with("w1[pid:"));

    let paused = admin(&url, &["queue", "pause", "default", "--json"]);
    assert!(paused.status.success(), "{}", stderr(&paused));
    let status = admin(&url, &["status", "--node", "w1"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("paused queues: default"));
}

#[test]
fn enqueue_delay_holds_the_task_back() {
    let redis = RedisServer::start();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let out = admin(
        &redis.url(),
        &["enqueue", "stevedore.noop", "--delay", "400ms", "--wait"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout_lines(&out)[0].clone();
    let task = admin(&redis.url(), &["task", &id, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&task.stdout).unwrap();
    let run = &json["runs"][0];
    let held = run["started_at"].as_u64().unwrap() - run["published_at"].as_u64().unwrap();
    assert!(held >= 400, "started {held} ms after publishing");
    let bad = admin(
        &redis.url(),
        &["enqueue", "stevedore.noop", "--eta", "tomorrow"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("is not a time"), "{}", stderr(&bad));
}

/// Runs `bin` with `args` against an unreachable Redis: a bad value must be refused before
/// anything connects (a process that accepted it would wait for Redis, and be killed here).
fn refused(bin: &str, args: &[&str]) -> String {
    let mut child = Command::new(bin)
        .args(["--redis-url", "redis://127.0.0.1:1"])
        .args(args)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the binary");
    let status = stevedore_tests::exit_within(&mut child, std::time::Duration::from_secs(20))
        .unwrap_or_else(|| panic!("{args:?} was accepted"));
    let err = String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned();
    assert!(!status.success(), "{args:?} was accepted: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    err
}

#[test]
fn bad_numbers_are_refused_at_parse_time_without_a_panic() {
    let worker = test_worker_bin!();
    let admin = env!("CARGO_BIN_EXE_test-admin");
    let beat = env!("CARGO_BIN_EXE_test-beat");
    let cases: [(&str, Vec<&str>, &str); 13] = [
        (worker, vec!["--heartbeat", "0"], "is zero"),
        (worker, vec!["--record-ttl", "0s"], "is zero"),
        (worker, vec!["--block", "1e30"], "longer than 100 years"),
        (
            worker,
            vec!["--heartbeat", "2s", "--lost-after", "2s"],
            "--lost-after",
        ),
        (beat, vec!["--lease", "0"], "is zero"),
        (
            admin,
            vec!["enqueue", "t", "--delay", "1e30"],
            "longer than 100 years",
        ),
        (
            admin,
            vec!["status", "--timeout", "1e19"],
            "longer than 100 years",
        ),
        (
            admin,
            vec!["enqueue", "t", "--eta", "99999999999999999"],
            "not a time",
        ),
        (
            admin,
            vec!["enqueue", "t", "--eta", "2026-02-31T00:00:00Z"],
            "not a time",
        ),
        (
            admin,
            vec!["schedule", "add", "s", "t", "--every", "1ms"],
            "shorter than",
        ),
        (
            admin,
            vec![
                "schedule", "add", "s", "t", "--every", "1s", "--missed", "all:0",
            ],
            "all:N",
        ),
        (
            admin,
            vec!["schedule", "add", "s", "t", "--every", "0"],
            "shorter than",
        ),
        (
            admin,
            vec!["enqueue", "t", "--eta", "10000-01-01T00:00:00Z"],
            "not a time",
        ),
    ];
    for (bin, args, says) in cases {
        let err = refused(bin, &args);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_requeue_all_goes_on_past_letters_it_cannot_open_and_dead_delete_removes_them() {
    use std::time::Duration;
    let redis = RedisServer::start();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;
    let mut conn = redis.connection().await;
    stevedore_tests::push_garbage(&mut conn, "default").await;
    let queue = stevedore::Destination::queue("default").unwrap();
    let garbage = stevedore_tests::eventually(
        "the bad bytes dead-lettered",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            let queue = queue.clone();
            async move { client.broker().dead_letters(&queue, 10).await.ok()?.pop() }
        },
    )
    .await
    .entry_id;
    stevedore_tests::dead_task(&client, Duration::from_secs(30)).await;

    let shown = admin(&redis.url(), &["dead", "show", &garbage, "--json"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let requeued = admin(&redis.url(), &["dead", "requeue", "--all"]);
    assert_eq!(requeued.status.code(), Some(1), "{}", stderr(&requeued));
    assert!(
        stderr(&requeued).contains(&format!("cannot requeue {garbage}")),
        "{}",
        stderr(&requeued)
    );
    assert_eq!(
        stdout_lines(&requeued).len(),
        1,
        "the good letter was requeued past the bad one"
    );

    let deleted = admin(&redis.url(), &["dead", "delete", &garbage]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let gone = admin(&redis.url(), &["dead", "show", &garbage]);
    assert_eq!(gone.status.code(), Some(1));
}

#[test]
fn enqueue_broadcast_wait_prints_every_live_nodes_result() {
    let redis = RedisServer::start();
    let _a = WorkerProcess::start(test_worker_bin!(), &redis, "a", &[]);
    let _b = WorkerProcess::start(test_worker_bin!(), &redis, "b", &[]);
    let args = [
        "enqueue",
        "stevedore.echo",
        "--args",
        "[7]",
        "--broadcast",
        "--wait",
    ];
    let out = admin(&redis.url(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = stdout_lines(&out);
    assert!(is_uuid(&lines[0]), "{lines:?}");
    assert_eq!(lines[1..], ["a: [7]", "b: [7]"], "one result per node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_takes_every_per_call_option_and_an_expired_task_never_runs() {
    let redis = RedisServer::start();
    let id = "0b7c1b0e-6a8e-4a43-9d1b-1f5f6f2f0a11";
    let out = admin(
        &redis.url(),
        &[
            "enqueue",
            "stevedore.noop",
            "--id",
            id,
            "--retries",
            "3",
            "--backoff",
            "2s",
            "--max-backoff",
            "1m",
            "--time-limit",
            "5s",
            "--hard-time-limit",
            "10s",
            "--expires",
            "10m",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout_lines(&out), [id]);
    let client = redis.stevedore().await;
    let mut conn = redis.connection().await;
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stevedore_tests::stream_of("default"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let payload: Vec<u8> = entries.ids[0].get("m").unwrap();
    let message = client.broker().open(&payload).unwrap();
    assert_eq!(message.id, id);
    assert_eq!(message.retries, Some(3));
    assert_eq!(
        (message.backoff, message.max_backoff),
        (Some(2_000), Some(60_000))
    );
    assert_eq!(
        (message.timeout, message.hard_timeout),
        (Some(5_000), Some(10_000))
    );
    let expires_in = message.expires.unwrap() - message.published_at;
    assert_eq!(expires_in, 600_000);

    // Expired before any worker reached it: recorded expired, never run.
    let past = "2020-01-01T00:00:00Z";
    let old = admin(
        &redis.url(),
        &["enqueue", "tests.count_run", "--expires", past],
    );
    let expired = stdout_lines(&old)[0].clone();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let record = stevedore_tests::finished(&client, &expired, Duration::from_secs(30)).await;
    assert_eq!(record.state(), stevedore::TaskState::Expired);
    assert!(!stevedore_tests::runs(&mut conn)
        .await
        .contains_key(&expired));

    let renamed = admin(&redis.url(), &["enqueue", "t", "--wait", "--timeout", "1s"]);
    assert_eq!(
        renamed.status.code(),
        Some(2),
        "--timeout is now --wait-timeout"
    );
}

#[test]
fn queues_shows_delayed_paused_and_the_oldest_waiting_age_of_every_queue() {
    let redis = RedisServer::start();
    let url = redis.url();
    for _ in 0..2 {
        admin(&url, &["enqueue", "stevedore.noop", "--queue", "q1"]);
    }
    admin(
        &url,
        &[
            "enqueue",
            "stevedore.noop",
            "--queue",
            "q2",
            "--delay",
            "1h",
        ],
    );
    let paused = admin(&url, &["queue", "pause", "q1"]);
    assert!(paused.status.success(), "{}", stderr(&paused));

    let out = admin(&url, &["queues", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let row = |name: &str| rows.iter().find(|r| r["queue"] == name).cloned();
    let q1 = row("q1").expect("q1 listed");
    assert_eq!(
        (q1["waiting"].as_u64(), q1["paused"].as_bool()),
        (Some(2), Some(true))
    );
    assert!(q1["oldest_waiting_age_ms"].is_u64(), "{q1}");
    let q2 = row("q2").expect("a queue with only delayed tasks is listed");
    assert_eq!(
        (q2["delayed"].as_u64(), q2["waiting"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(q2["oldest_waiting_at"].is_null(), "{q2}");
    let text = String::from_utf8_lossy(&admin(&url, &["queues"]).stdout).into_owned();
    assert!(text.contains("DELAYED") && text.contains("PAUSED") && text.contains("OLDEST"));
}

/// `task ID --json`, parsed, with the exit code.
fn task_json(url: &str, id: &str) -> (serde_json::Value, Option<i32>) {
    let out = admin(url, &["task", id, "--json"]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (json, out.status.code())
}

#[test]
fn task_tells_unknown_waiting_delayed_discarded_rejected_and_earlier_attempts_apart() {
    let redis = RedisServer::start();
    let url = redis.url();
    // Any string is a task id (docs/protocol.md, section 2): one nobody knows is one line on
    // stderr and exit 3, as a UUID nobody knows is.
    let not_uuid = admin(&url, &["task", "12"]);
    assert_eq!(not_uuid.status.code(), Some(3));
    assert!(
        stderr(&not_uuid).contains("no task `12`"),
        "{}",
        stderr(&not_uuid)
    );
    let (unknown, code) = task_json(&url, &uuid::Uuid::new_v4().to_string());
    assert_eq!(
        (unknown["state"].as_str(), code),
        (Some("unknown"), Some(3))
    );

    let waiting = stdout_lines(&admin(&url, &["enqueue", "stevedore.noop", "--queue", "q"]));
    let (json, _) = task_json(&url, &waiting[0]);
    assert_eq!(json["state"], "pending");
    assert_eq!(
        json["where"],
        serde_json::json!({"queue": "q", "as": "waiting"})
    );
    let delayed = stdout_lines(&admin(
        &url,
        &["enqueue", "stevedore.noop", "--delay", "1h"],
    ));
    assert_eq!(task_json(&url, &delayed[0]).0["where"]["as"], "delayed");

    let once = [
        "enqueue",
        "tests.gate",
        "--args",
        "[\"d\"]",
        "--on-duplicate",
        "discard",
    ];
    admin(&url, &once);
    let copy = admin(&url, &once);
    assert_eq!(copy.status.code(), Some(3), "a dropped copy exits 3");
    let line = &stdout_lines(&copy)[0];
    let id = line.strip_suffix(" discarded").expect("reported on stdout");
    assert_eq!(task_json(&url, id).0["state"], "discarded");

    // Rejected on arrival: unsigned, read by a worker that requires signatures.
    let keys = [("STEVEDORE_SIGNING_KEYS", "k1:0123456789abcdef-k1")];
    let _w = WorkerProcess::start_with_env(test_worker_bin!(), &redis, "w", &[], &keys);
    let unsigned = stdout_lines(&admin(&url, &["enqueue", "stevedore.noop"]));
    let rejected = stevedore_tests::eventually_blocking("the rejection", || {
        let (json, _) = task_json(&url, &unsigned[0]);
        (json["state"] == "rejected").then_some(json)
    });
    assert!(rejected["where"]["reason"]
        .as_str()
        .unwrap()
        .contains("not signed"));
}

#[test]
fn task_shows_every_earlier_attempt() {
    let redis = RedisServer::start();
    let url = redis.url();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let out = admin(&url, &DIES_AFTER_TWO_RETRIES);
    let id = stdout_lines(&out)[0].clone();
    let (json, code) = task_json(&url, &id);
    assert_eq!((json["state"].as_str(), code), (Some("dead"), Some(0)));
    // `task --json` prints absolute times (records store offsets: docs/protocol.md, 11).
    let run = &json["runs"][0];
    let (published, finished) = (run["published_at"].as_u64(), run["finished_at"].as_u64());
    assert!(
        finished >= published && published > Some(1_700_000_000_000),
        "{run}"
    );
    assert_eq!(json["attempts"].as_array().map(Vec::len), Some(3), "{json}");
    let text = String::from_utf8_lossy(&admin(&url, &["task", &id]).stdout).into_owned();
    assert_eq!(
        text.matches("run:       earlier retrying").count(),
        2,
        "{text}"
    );
}

#[test]
fn a_queue_named_broadcast_is_refused_and_unread_queues_and_unseen_nodes_are_warned_of() {
    let redis = RedisServer::start();
    let url = redis.url();
    let reserved = admin(&url, &["enqueue", "stevedore.noop", "--queue", "broadcast"]);
    assert_eq!(reserved.status.code(), Some(1));
    assert!(
        stderr(&reserved).contains("reserved for broadcasts"),
        "{}",
        stderr(&reserved)
    );

    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let unread = admin(&url, &["queue", "pause", "nobody-reads"]);
    assert!(unread.status.success(), "{}", stderr(&unread));
    assert!(stderr(&unread).contains("no live node reads queue nobody-reads"));
    let read = admin(&url, &["queue", "pause", "default"]);
    assert!(!stderr(&read).contains("warning"), "{}", stderr(&read));

    let ghost = admin(&url, &["enqueue", "stevedore.noop", "--node", "ghost"]);
    assert!(ghost.status.success());
    assert!(is_uuid(&stdout_lines(&ghost)[0]));
    assert!(stderr(&ghost).contains("node ghost has never been seen"));
    let known = admin(&url, &["enqueue", "stevedore.noop", "--node", "w"]);
    assert!(!stderr(&known).contains("warning"), "{}", stderr(&known));
}

#[test]
fn echo_fails_on_a_keyword_argument_as_the_protocol_says() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let args = [
        "enqueue",
        "stevedore.echo",
        "--kwargs",
        "{\"x\": 1}",
        "--wait",
    ];
    let out = admin(&redis.url(), &args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("keyword argument `x` names no parameter"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn schedules_print_as_data_and_import_reads_back_what_list_prints() {
    let redis = RedisServer::start();
    let url = redis.url();
    let add = [
        "schedule",
        "add",
        "s",
        "tests.count_run",
        "--kwargs",
        "{\"n\": 1}",
        "--cron",
        "0 3 * * *",
        "--tz",
        "Europe/Berlin",
        "--missed",
        "all:3",
        "--json",
    ];
    let added: serde_json::Value = serde_json::from_slice(&admin(&url, &add).stdout).unwrap();
    assert_eq!(added["cron"], "0 3 * * *");
    assert_eq!(added["tz"], "Europe/Berlin");
    assert!(added["every_ms"].is_null() && added["rrule"].is_null());
    assert_eq!(
        added["missed"],
        serde_json::json!({"policy": "all", "max": 3})
    );
    assert!(added["next_fire_at"].is_u64(), "{added}");

    let listed = admin(&url, &["schedule", "list", "--json"]).stdout;
    let removed = admin(&url, &["schedule", "remove", "s", "--json"]);
    let removed: serde_json::Value = serde_json::from_slice(&removed.stdout).unwrap();
    assert_eq!(removed, serde_json::json!({"name": "s", "removed": true}));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schedules.json");
    std::fs::write(&file, &listed).unwrap();
    let imported = admin(&url, &["schedule", "import", file.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    let shown = admin(&url, &["schedule", "show", "s", "--json"]).stdout;
    let shown: serde_json::Value = serde_json::from_slice(&shown).unwrap();
    for field in ["task", "kwargs", "queue", "cron", "tz", "missed", "paused"] {
        assert_eq!(shown[field], added[field], "{field}");
    }
}

/// Every stdout line of `output`, parsed as JSON.
fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    stdout_lines(output)
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn enqueue_and_dead_letter_commands_print_json() {
    let redis = RedisServer::start();
    let url = redis.url();
    let queued = json_lines(&admin(
        &url,
        &["enqueue", "stevedore.noop", "--count", "2", "--json"],
    ));
    assert_eq!(queued.len(), 2);
    assert!(queued
        .iter()
        .all(|q| is_uuid(q["id"].as_str().unwrap()) && q["discarded"] == false));

    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let args = [
        "enqueue",
        "stevedore.echo",
        "--args",
        "[5]",
        "--wait",
        "--json",
    ];
    let waited = json_lines(&admin(&url, &args));
    assert_eq!(waited[0]["state"], "succeeded");
    assert_eq!(waited[0]["result"], serde_json::json!([5]));
    let fail = [
        "enqueue",
        "stevedore.fail",
        "--args",
        "[\"x\"]",
        "--retries",
        "1",
        "--backoff",
        "1ms",
        "--wait",
    ];
    let failed = admin(&url, &fail);
    let id = stdout_lines(&failed)[0].clone();

    let requeued = admin(&url, &["dead", "requeue", "--all", "--json"]);
    let requeued: serde_json::Value = serde_json::from_slice(&requeued.stdout).unwrap();
    assert_eq!(requeued["queue"], "default");
    assert_eq!(
        requeued["requeued"].as_array().map(Vec::len),
        Some(1),
        "{requeued}"
    );
    assert_eq!(requeued["failed"], serde_json::json!([]));
    stevedore_tests::eventually_blocking("the requeued letter to die again", || {
        let out = admin(&url, &["dead", "list", "--json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
        rows.iter().any(|r| r["id"] == id.as_str()).then_some(())
    });
    let purged = admin(&url, &["dead", "purge", "--json"]);
    let purged: serde_json::Value = serde_json::from_slice(&purged.stdout).unwrap();
    assert_eq!(purged, serde_json::json!({"queue": "default", "purged": 1}));
}

#[test]
fn queue_show_lists_tasks_by_state_purge_removes_what_waits_and_registered_lists_tasks() {
    let redis = RedisServer::start();
    let url = redis.url();
    for _ in 0..2 {
        admin(
            &url,
            &["enqueue", "tests.add", "--args", "[1, 2]", "--queue", "q"],
        );
    }
    admin(
        &url,
        &["enqueue", "stevedore.noop", "--queue", "q", "--delay", "1h"],
    );
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let blocked = stdout_lines(&admin(&url, &["enqueue", "tests.block"]))[0].clone();
    stevedore_tests::eventually_blocking("the blocking task to run", || {
        let out = admin(
            &url,
            &["queue", "show", "default", "--state", "running", "--json"],
        );
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
        (rows.len() == 1 && rows[0]["id"] == blocked.as_str()).then_some(())
    });

    let shown = admin(&url, &["queue", "show", "q", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&shown.stdout).unwrap();
    let states: Vec<&str> = rows.iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["waiting", "waiting", "delayed"]);
    assert!(
        rows[0].get("args").is_none(),
        "arguments only with --show-args"
    );
    let with_args = admin(
        &url,
        &[
            "queue",
            "show",
            "q",
            "--state",
            "waiting",
            "--show-args",
            "--json",
        ],
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&with_args.stdout).unwrap();
    assert_eq!(rows[0]["args"], serde_json::json!([1, 2]));

    let purged = admin(&url, &["queue", "purge", "q", "--json"]);
    let purged: serde_json::Value = serde_json::from_slice(&purged.stdout).unwrap();
    assert_eq!(
        purged,
        serde_json::json!({"queue": "q", "waiting": 2, "delayed": 0})
    );
    let purged = admin(&url, &["queue", "purge", "q", "--delayed", "--json"]);
    let purged: serde_json::Value = serde_json::from_slice(&purged.stdout).unwrap();
    assert_eq!(purged["delayed"], 1);
    let running = admin(&url, &["queue", "purge", "default", "--json"]);
    let running: serde_json::Value = serde_json::from_slice(&running.stdout).unwrap();
    assert_eq!(running["waiting"], 0, "a running task is never purged");

    let registered = admin(&url, &["registered", "--node", "w", "--json"]);
    let answers: Vec<serde_json::Value> = serde_json::from_slice(&registered.stdout).unwrap();
    let tasks = answers[0]["registered"].as_array().unwrap();
    assert!(tasks.contains(&"stevedore.noop".into()) && tasks.contains(&"tests.add".into()));
}

#[test]
fn dead_delete_prints_json() {
    let redis = RedisServer::start();
    let out = admin(&redis.url(), &["dead", "delete", "1-0", "--json"]);
    assert_eq!(out.status.code(), Some(1), "a missing letter fails");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"queue": "default", "deleted": [], "missing": ["1-0"]})
    );
}

#[test]
fn a_client_from_env_connects_as_the_cli_does_and_waits_without_notify() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--namespace", "other"]);
    for mode in ["plain", "notify"] {
        let out = Command::new(env!("CARGO_BIN_EXE_test-from-env"))
            .arg(mode)
            .env("STEVEDORE_REDIS_URL", redis.url())
            .env("STEVEDORE_NAMESPACE", "other")
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        let line = &stdout_lines(&out)[0];
        let (id, result) = line.split_once(' ').unwrap();
        assert_eq!(result, "5", "{mode}: waited for the result");
        let task = admin(
            &redis.url(),
            &["--namespace", "other", "task", id, "--json"],
        );
        let task: serde_json::Value = serde_json::from_slice(&task.stdout).unwrap();
        assert_eq!(
            task["state"], "succeeded",
            "published under the namespace from the env"
        );
    }
}

#[test]
fn unknown_names_fail_in_one_line_with_a_non_zero_exit() {
    let redis = RedisServer::start();
    let url = redis.url();
    assert!(
        admin(&url, &["enqueue", "stevedore.noop", "--queue", "known"])
            .status
            .success()
    );
    assert!(admin(&url, &["queue", "show", "known"]).status.success());
    for (args, says) in [
        (&["queue", "show", "nope"][..], "no queue `nope`"),
        (&["queue", "purge", "nope"][..], "no queue `nope`"),
        (&["schedule", "show", "nope"][..], "no schedule `nope`"),
        (&["schedule", "pause", "nope"][..], "no schedule `nope`"),
        (&["schedule", "remove", "nope"][..], "no schedule `nope`"),
        (&["limit", "show", "nope"][..], "no limit `nope`"),
        (&["limit", "remove", "nope"][..], "no limit `nope`"),
        (&["dead", "show", "1-1"][..], "no dead letter `1-1`"),
        (&["status", "--node", "nope"][..], "no node `nope`"),
        (&["workflow", "show", "nope"][..], "nope"),
    ] {
        let out = admin(&url, args);
        let error = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {error}");
        assert!(error.contains(says), "{args:?}: {error}");
        assert_eq!(error.trim_end().lines().count(), 1, "{args:?}: {error}");
        assert!(out.stdout.is_empty(), "{args:?} printed a table");
    }
}

#[test]
fn every_command_that_prints_takes_json() {
    let redis = RedisServer::start();
    let url = redis.url();
    let commands: &[&[&str]] = &[
        &["enqueue"],
        &["task"],
        &["queues"],
        &["status"],
        &["running"],
        &["reload"],
        &["registered"],
        &["cancel"],
        &["nodes"],
        &["events"],
        &["queue", "pause"],
        &["queue", "resume"],
        &["queue", "show"],
        &["queue", "purge"],
        &["schedule", "add"],
        &["schedule", "list"],
        &["schedule", "show"],
        &["schedule", "remove"],
        &["schedule", "pause"],
        &["schedule", "resume"],
        &["schedule", "import"],
        &["limit", "set"],
        &["limit", "list"],
        &["limit", "show"],
        &["limit", "remove"],
        &["dead", "list"],
        &["dead", "show"],
        &["dead", "requeue"],
        &["dead", "delete"],
        &["dead", "purge"],
        &["workflow", "submit"],
        &["workflow", "show"],
        &["workflow", "cancel"],
    ];
    for command in commands {
        let help = admin(&url, &[*command, &["--help"][..]].concat());
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(text.contains("--json"), "{command:?} has no --json: {text}");
    }
}

#[test]
fn a_requeued_dead_letter_gets_the_retry_budget_it_was_published_with() {
    let redis = RedisServer::start();
    let url = redis.url();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let id = stdout_lines(&admin(&url, &DIES_AFTER_TWO_RETRIES))[0].clone();
    assert_eq!(task_json(&url, &id).0["runs"][0]["attempt"], 3);
    let requeued = admin(&url, &["dead", "requeue", "--all"]);
    assert!(requeued.status.success(), "{}", stderr(&requeued));
    // Three more attempts (the two retries again), not one.
    let run = stevedore_tests::eventually_blocking("the requeued task to die again", || {
        let run = task_json(&url, &id).0["runs"][0].clone();
        (run["state"] == "dead" && run["attempt"].as_u64() > Some(3)).then_some(run)
    });
    assert_eq!(run["attempt"], 6, "{run}");
}

#[test]
fn text_a_task_wrote_cannot_forge_a_line_in_task_dead_list_or_the_log() {
    let redis = RedisServer::start();
    let url = redis.url();
    let worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let forged = "boom\nstate:     succeeded\u{1b}[2J";
    let args = serde_json::json!([forged]).to_string();
    let fail = [
        "enqueue",
        "stevedore.fail",
        "--args",
        &args,
        "--retries",
        "1",
        "--backoff",
        "1ms",
        "--wait",
    ];
    let id = stdout_lines(&admin(&url, &fail))[0].clone();
    let shown = admin(&url, &["task", &id]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert_eq!(
        (text.lines()).filter(|l| l.starts_with("state:")).count(),
        1,
        "{text}"
    );
    assert!(text.contains("state:     dead"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");
    let listed = String::from_utf8_lossy(&admin(&url, &["dead", "list"]).stdout).into_owned();
    assert!(
        !listed.contains('\u{1b}') && listed.lines().count() == 1,
        "{listed}"
    );
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    let lines = worker.log_lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("state:") || l.contains('\u{1b}')),
        "{lines:?}"
    );
}

#[test]
fn an_id_is_used_once_a_second_publish_with_it_is_refused() {
    let redis = RedisServer::start();
    let url = redis.url();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let id = uuid::Uuid::new_v4().to_string();
    let echo = |word: &str| {
        let args = serde_json::json!([word]).to_string();
        admin(
            &url,
            &[
                "enqueue",
                "stevedore.echo",
                "--id",
                &id,
                "--args",
                &args,
                "--wait",
            ],
        )
    };
    let first = echo("first");
    assert!(first.status.success(), "{}", stderr(&first));
    let second = echo("second");
    assert_eq!(second.status.code(), Some(1));
    let error = stderr(&second);
    assert!(error.contains(&format!("task id {id} is taken")), "{error}");
    assert_eq!(error.trim_end().lines().count(), 1, "{error}");
    let (json, _) = task_json(&url, &id);
    assert_eq!(
        json["runs"][0]["result"],
        serde_json::json!(["first"]),
        "{json}"
    );
    // The same id under an on_duplicate policy is that policy's to judge.
    let again = admin(
        &url,
        &[
            "enqueue",
            "stevedore.echo",
            "--id",
            &id,
            "--on-duplicate",
            "discard",
        ],
    );
    assert!(again.status.success(), "{}", stderr(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_field_is_named_and_hides_nothing_else() {
    let redis = RedisServer::start();
    let url = redis.url();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let id = stdout_lines(&admin(&url, &["enqueue", "stevedore.noop", "--wait"]))[0].clone();
    let mut conn = redis.connection().await;
    let _: () = redis::cmd("HSET")
        .arg(stevedore_tests::keys().record(&id))
        .arg("attempt:9")
        .arg(b"\xc1".as_slice())
        .query_async(&mut conn)
        .await
        .unwrap();
    let (json, code) = task_json(&url, &id);
    assert_eq!(
        (json["state"].as_str(), code),
        (Some("succeeded"), Some(0)),
        "{json}"
    );
    assert!(json["unreadable"]["attempt:9"].is_string(), "{json}");
    let text = String::from_utf8_lossy(&admin(&url, &["task", &id]).stdout).into_owned();
    assert!(text.contains("unreadable field attempt:9"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_list_pages_through_every_letter_once_up_to_its_limit() {
    let redis = RedisServer::start();
    let url = redis.url();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let mut conn = redis.connection().await;
    for n in 0..25 {
        let _: String = redis::cmd("XADD")
            .arg(stevedore_tests::stream_of("default"))
            .arg("*")
            .arg("m")
            .arg(format!("garbage {n}"))
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let dead =
        stevedore_tests::keys().dead_letters(&stevedore::Destination::queue("default").unwrap());
    stevedore_tests::eventually(
        "25 dead letters",
        std::time::Duration::from_secs(30),
        || {
            let mut conn = conn.clone();
            let dead = dead.clone();
            async move { (stevedore_tests::stream_len(&mut conn, &dead).await == 25).then_some(()) }
        },
    )
    .await;
    let listed = |limit: &str| {
        let out = admin(&url, &["dead", "list", "--json", "--limit", limit]);
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        rows.iter()
            .map(|r| r["entry"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let all = listed("100");
    let mut unique = all.clone();
    unique.dedup();
    assert_eq!((all.len(), unique.len()), (25, 25));
    assert_eq!(listed("23"), all[..23]);
    let text = admin(&url, &["dead", "list", "--limit", "12"]);
    assert_eq!(stdout_lines(&text).len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_error_is_told_once_on_one_line() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut conn = redis.connection().await;
    let _: () = redis::cmd("SET")
        .arg(stevedore_tests::keys().record("not-a-hash"))
        .arg("text")
        .query_async(&mut conn)
        .await
        .unwrap();
    let out = admin(&url, &["task", "not-a-hash"]);
    let text = stderr(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert_eq!(text.matches("WRONGTYPE").count(), 1, "{text}");
    assert_ne!(out.status.code(), Some(0), "{text}");
}
