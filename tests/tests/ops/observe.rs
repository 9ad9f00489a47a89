//! A worker seen from outside: `--http` serves /metrics (counts that match the tasks run, a
//! scrape promtool accepts), /healthz, and /readyz (503 while Redis is away, 200 once back).

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use stevedore::PublishOptions;
use stevedore_tests::tcp_node::free_port;
use stevedore_tests::{eventually, tasks, test_worker_bin, RedisServer, WorkerProcess};

const WAIT: Duration = Duration::from_secs(30);

/// `GET path` on `port`: the status code and the body (`None` when nothing answers).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// Asserts that `promtool check metrics` accepts `scrape`.
fn promtool_accepts(scrape: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/ensure-promtool installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let linted = promtool.wait_with_output().unwrap();
    assert!(
        linted.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&linted.stdout),
        String::from_utf8_lossy(&linted.stderr)
    );
}

/// The value of the sample of `name` whose labels include every one of `labels`.
fn sample(scrape: &str, name: &str, labels: &[&str]) -> Option<f64> {
    scrape
        .lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_each_outcome_and_promtool_accepts_the_scrape() {
    let redis = RedisServer::start();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--http", &addr]);
    let client = redis.stevedore().await;
    for i in 0..3 {
        let sum = tasks::add::apply_async(&client, (i, 1), PublishOptions::new().notify(true));
        sum.await.unwrap().get(WAIT).await.unwrap();
    }
    let flaky = tasks::flaky::delay(&client).await.unwrap();
    assert!(flaky.get(WAIT).await.is_err());
    let panics = tasks::panics::delay(&client).await.unwrap();
    assert!(panics.get(WAIT).await.is_err());
    let limited = PublishOptions::new().hard_timeout(Duration::from_millis(200));
    let slow = tasks::sleep_blind::apply_async(&client, (60_000,), limited);
    assert!(slow.await.unwrap().get(WAIT).await.is_err());
    let stale = PublishOptions::new().expires_at(1);
    let expired = tasks::add::apply_async(&client, (1, 2), stale)
        .await
        .unwrap();
    assert!(expired.get(WAIT).await.is_err());
    let blocked = tasks::block::delay(&client).await.unwrap();
    stevedore_tests::running(&client, blocked.id()).await;
    let cancel = stevedore::control::CancelSelector::ids([blocked.id()]);
    client.cancel(cancel, WAIT).await.unwrap();
    assert!(blocked.get(WAIT).await.is_err());

    let add = [
        "queue=\"default\"",
        "task=\"tests.add\"",
        "outcome=\"succeeded\"",
    ];
    let scrape = eventually("the counts in a scrape", WAIT, || async {
        let (_, body) = get(port, "/metrics")?;
        (sample(&body, "stevedore_tasks_total", &add) == Some(3.0)).then_some(body)
    })
    .await;
    let flaky = |outcome: &str| {
        let outcome = format!("outcome=\"{outcome}\"");
        sample(
            &scrape,
            "stevedore_tasks_total",
            &["task=\"tests.flaky\"", &outcome],
        )
    };
    assert_eq!(flaky("retried"), Some(3.0), "tests.flaky has 3 retries");
    assert_eq!(flaky("dead"), Some(1.0));
    let once = |task: &str, outcome: &str| {
        let labels = [format!("task=\"{task}\""), format!("outcome=\"{outcome}\"")];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        assert_eq!(
            sample(&scrape, "stevedore_tasks_total", &labels),
            Some(1.0),
            "{task} {outcome}"
        );
    };
    once("tests.panics", "failed");
    once("tests.sleep_blind", "timed_out");
    once("tests.add", "expired");
    once("tests.block", "cancelled");
    let dead = ["reason=\"out_of_retries\""];
    assert_eq!(
        sample(&scrape, "stevedore_dead_letters_total", &dead),
        Some(1.0)
    );
    let count = ["task=\"tests.add\"", "outcome=\"succeeded\""];
    assert_eq!(
        sample(&scrape, "stevedore_task_duration_seconds_count", &count),
        Some(3.0)
    );
    assert!(sample(&scrape, "stevedore_task_wait_seconds_count", &[]).is_some());
    let ids = scrape
        .split('"')
        .filter(|v| uuid::Uuid::parse_str(v).is_ok());
    assert_eq!(ids.count(), 0, "never a task id in a label");

    promtool_accepts(&scrape);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_redis_is_away_and_200_once_it_is_back() {
    let mut redis = RedisServer::start_with_aof();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--http", &addr]);
    assert_eq!(get(port, "/healthz").map(|(code, _)| code), Some(200));
    eventually("ready", WAIT, || async {
        (get(port, "/readyz")?.0 == 200).then_some(())
    })
    .await;

    redis.stop();
    let (_, reason) = eventually("not ready while Redis is away", WAIT, || async {
        get(port, "/readyz").filter(|(code, _)| *code == 503)
    })
    .await;
    assert!(reason.contains("not consuming"), "{reason}");
    assert_eq!(
        get(port, "/healthz").map(|(code, _)| code),
        Some(200),
        "still alive"
    );
    redis.start_again();
    eventually("ready again", WAIT, || async {
        (get(port, "/readyz")?.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stevedore_metrics_serves_the_cluster_gauges_once_and_promtool_accepts_them() {
    let redis = RedisServer::start();
    let url = redis.url();
    let admin =
        |args: &[&str]| stevedore_tests::run_cli(stevedore_tests::test_admin_bin!(), &url, args);
    for _ in 0..2 {
        admin(&["enqueue", "stevedore.noop", "--queue", "q1"]);
    }
    admin(&[
        "enqueue",
        "stevedore.noop",
        "--queue",
        "q2",
        "--delay",
        "1h",
    ]);
    admin(&["queue", "pause", "q1"]);
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let _served = stevedore_tests::KillOnDrop(
        Command::new(stevedore_tests::test_admin_bin!())
            .args(["--redis-url", &url, "metrics", "--bind", &bind])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let scrape = eventually("a scrape", WAIT, || async {
        get(port, "/metrics")
            .filter(|(code, _)| *code == 200)
            .map(|(_, body)| body)
    })
    .await;
    let q1_waiting = ["queue=\"q1\"", "state=\"waiting\""];
    assert_eq!(
        sample(&scrape, "stevedore_queue_tasks", &q1_waiting),
        Some(2.0)
    );
    let q2_delayed = ["queue=\"q2\"", "state=\"delayed\""];
    assert_eq!(
        sample(&scrape, "stevedore_queue_tasks", &q2_delayed),
        Some(1.0)
    );
    assert_eq!(
        sample(&scrape, "stevedore_queue_paused", &["queue=\"q1\""]),
        Some(1.0)
    );
    assert!(sample(
        &scrape,
        "stevedore_queue_latency_seconds",
        &["queue=\"q1\""]
    )
    .is_some());
    assert_eq!(
        sample(&scrape, "stevedore_nodes", &["state=\"live\""]),
        Some(1.0)
    );
    assert_eq!(sample(&scrape, "stevedore_beat_leader", &[]), Some(0.0));
    let fired = ["result=\"fired\""];
    assert_eq!(
        sample(&scrape, "stevedore_schedule_runs_total", &fired),
        Some(0.0)
    );
    promtool_accepts(&scrape);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_counts_a_run_lost_with_its_process_and_writes_its_event() {
    let redis = RedisServer::start();
    let fast = ["--heartbeat", "200ms", "--lost-after", "1s"];
    let mut doomed = WorkerProcess::start(test_worker_bin!(), &redis, "doomed", &fast);
    let client = redis.stevedore().await;
    let blocked = tasks::block::delay(&client).await.unwrap();
    stevedore_tests::running(&client, blocked.id()).await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let watcher = [&fast[..], &["--http", &addr, "--events"]].concat();
    let _alive = WorkerProcess::start(test_worker_bin!(), &redis, "alive", &watcher);
    doomed.kill_hard();

    let lost = ["task=\"tests.block\"", "outcome=\"lost\""];
    eventually("the lost run to be counted", WAIT, || async {
        let (_, body) = get(port, "/metrics")?;
        (sample(&body, "stevedore_tasks_total", &lost) == Some(1.0)).then_some(())
    })
    .await;
    let events = client.broker().recent_events(100).await.unwrap();
    let lost = events
        .iter()
        .find(|e| e.id == blocked.id() && e.event == "lost");
    let lost = lost.unwrap_or_else(|| panic!("no lost event: {events:?}"));
    assert_eq!(
        lost.node.as_deref(),
        Some("doomed"),
        "the node that lost it"
    );
}

/// The process's metrics, through a debugging recorder installed once for this test binary.
fn recorded() -> &'static metrics_util::debugging::Snapshotter {
    static RECORDER: std::sync::OnceLock<metrics_util::debugging::Snapshotter> =
        std::sync::OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().unwrap();
        snapshotter
    })
}

/// The value of counter `name{queue=QUEUE}` in `snapshot`.
fn counter_of(
    snapshot: &[(
        metrics_util::CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        metrics_util::debugging::DebugValue,
    )],
    name: &str,
    queue: &str,
) -> Option<u64> {
    snapshot.iter().find_map(|(key, _, _, value)| {
        let key = key.key();
        let labelled = key
            .labels()
            .any(|l| l.key() == "queue" && l.value() == queue);
        match value {
            metrics_util::debugging::DebugValue::Counter(n) if key.name() == name && labelled => {
                Some(*n)
            }
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_counts_what_redis_took_by_queue_and_not_discarded_copies() {
    let snapshotter = recorded();
    let redis = RedisServer::start();
    let client = redis.stevedore().await;
    let to = |queue: &str, n: i64| {
        let options = PublishOptions::new()
            .queue(queue)
            .on_duplicate(stevedore::OnDuplicate::Discard);
        stevedore::Client::message(
            "tests.add",
            vec![n.into(), 1.into()],
            Default::default(),
            &options,
        )
        .unwrap()
    };
    let batch = vec![
        to("metered-a", 1),
        to("metered-a", 2),
        to("metered-b", 1),
        to("metered-a", 3),
    ];
    client.publish_many(batch).await.unwrap();
    let copy = client.publish(to("metered-b", 1)).await.unwrap();
    assert!(copy.discarded(), "a waiting copy is discarded");
    client.publish(to("metered-b", 2)).await.unwrap();

    let snapshot = snapshotter.snapshot().into_vec();
    let published = |queue| counter_of(&snapshot, "stevedore_published_total", queue);
    assert_eq!(published("metered-a"), Some(3));
    assert_eq!(
        published("metered-b"),
        Some(2),
        "the discarded copy is not counted"
    );
}

/// `stevedore events --follow --json`, its lines parsed as they come.
struct Follower {
    _child: stevedore_tests::KillOnDrop,
    lines: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Follower {
    fn start(url: &str) -> Self {
        let mut child = Command::new(stevedore_tests::test_admin_bin!())
            .args(["--redis-url", url, "events", "--follow", "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { return };
                let event = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
                sink.lock().unwrap().push(event);
            }
        });
        Self {
            _child: stevedore_tests::KillOnDrop(child),
            lines,
        }
    }

    /// The events seen for task `id`, in order.
    fn events_of(&self, id: &str) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        (lines.iter())
            .filter(|e| e["id"] == id)
            .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stevedore_events_follow_sees_each_task_from_publish_to_its_outcome() {
    let redis = RedisServer::start();
    let url = redis.url();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--events"]);
    let follower = Follower::start(&url);
    // The follower is reading once an event published after it started shows up.
    let mut config = stevedore::ClientConfig::new(&url, "stevedore");
    config.events = true;
    let client = stevedore::Client::with_config(config).await.unwrap();
    let first = tasks::add::delay(&client, 1, 1).await.unwrap();
    first.get(WAIT).await.unwrap();
    eventually("the follower to see a task", WAIT, || async {
        (follower.events_of(first.id()).len() == 3).then_some(())
    })
    .await;

    let sum = tasks::add::delay(&client, 2, 3).await.unwrap();
    assert_eq!(sum.get(WAIT).await.unwrap(), 5);
    let flaky = tasks::flaky::delay(&client).await.unwrap();
    assert!(flaky.get(WAIT).await.is_err());
    let run = ["started", "retried"];
    let mut expected: Vec<&str> = vec!["published"];
    expected.extend(run.iter().cycle().take(6));
    expected.extend(["started", "dead"]);
    let seen = eventually("every event of the failing task", WAIT, || async {
        let seen = follower.events_of(flaky.id());
        (seen.len() >= expected.len()).then_some(seen)
    })
    .await;
    assert_eq!(seen, expected, "tests.flaky: 3 retries, then dead");
    assert_eq!(
        follower.events_of(sum.id()),
        ["published", "started", "succeeded"]
    );
    let lines = follower.lines.lock().unwrap().clone();
    let done = lines
        .iter()
        .find(|e| e["id"] == sum.id() && e["event"] == "succeeded");
    let done = done.unwrap();
    assert_eq!(done["task"], "tests.add");
    assert_eq!(done["queue"], "default");
    assert_eq!(done["attempt"], 1);
    assert!(done["runtime_ms"].is_u64() && done["node"] == "w", "{done}");
    assert!(lines
        .iter()
        .all(|e| e.get("args").is_none() && e.get("result").is_none()));

    let recent = stevedore_tests::run_cli(
        stevedore_tests::test_admin_bin!(),
        &url,
        &["events", "--task", "tests.flaky", "--last", "1000"],
    );
    assert!(recent.status.success());
    let recent = String::from_utf8_lossy(&recent.stdout);
    assert_eq!(recent.lines().count(), expected.len(), "{recent}");
    assert!(recent.lines().all(|l| l.contains(flaky.id())), "{recent}");
    assert!(
        recent.lines().last().unwrap().contains(" dead "),
        "{recent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_http_connections_neither_stall_the_worker_nor_stay_open() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let redis = RedisServer::start();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // The worker starts with the common default of 1,024 open files.
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, soft.min(1024), hard).unwrap();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--http", &addr]);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    eventually("the worker to be ready", WAIT, || async {
        (get(port, "/readyz")?.0 == 200).then_some(())
    })
    .await;

    let idle: Vec<TcpStream> = (0..1_050)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let client = redis.stevedore().await;
    for n in 0..20 {
        let handle = tasks::add::apply_async(&client, (n, 1), PublishOptions::new().notify(true))
            .await
            .unwrap();
        assert_eq!(handle.get(WAIT).await.unwrap(), n + 1);
    }
    // The first connections were cut off after the header timeout: the server closed them.
    let mut first = &idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buffer = [0u8; 256];
    let read = first.read(&mut buffer).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buffer[..read]);
    assert!(read == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
    drop(idle);
    eventually("/readyz to answer again", WAIT, || async {
        (get(port, "/readyz")?.0 == 200).then_some(())
    })
    .await;
}
