//! beat: schedules fired by a singleton leader, failover, split brain, live changes.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use stevedore_tests::{
    eventually, run_cli, runs, test_admin_bin, test_worker_bin, RedisServer, WorkerProcess,
};

const WAIT: Duration = Duration::from_secs(30);

/// A beat process, killed when dropped.
struct Beat(Child);

impl Beat {
    fn start(redis: &RedisServer, extra: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_test-beat"))
            .args(["--redis-url", &redis.url(), "--lease", "1s"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.0.id() as i32), signal).unwrap();
    }
}

impl Drop for Beat {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Stores schedule `broken`, due at once, as bytes that do not decode.
async fn store_a_broken_schedule(conn: &mut redis::aio::MultiplexedConnection) {
    let keys = stevedore_tests::keys();
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(keys.schedules())
        .arg("broken")
        .arg(b"\xc1 not a schedule".as_slice())
        .cmd("ZADD")
        .arg(keys.schedules_due())
        .arg(0)
        .arg("broken")
        .query_async(conn)
        .await
        .unwrap();
}

fn cli(redis: &RedisServer, args: &[&str]) -> std::process::Output {
    let out = run_cli(test_admin_bin!(), &redis.url(), args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

async fn run_count(redis: &RedisServer) -> HashMap<String, u64> {
    let mut conn = redis.connection().await;
    runs(&mut conn).await
}

async fn wait_runs(redis: &RedisServer, at_least: usize) -> HashMap<String, u64> {
    eventually(&format!("{at_least} scheduled runs"), WAIT, || async move {
        Some(run_count(redis).await).filter(|r| r.len() >= at_least)
    })
    .await
}

// Runs alone under nextest (.config/nextest.toml): it asserts on time, which a busy core
// beside it would skew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_on_time_with_one_task_id_per_fire_time() {
    let redis = RedisServer::start();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let _beat = Beat::start(&redis, &[]);
    cli(
        &redis,
        &[
            "schedule",
            "add",
            "tick",
            "tests.count_run",
            "--every",
            "300ms",
        ],
    );
    let counted = wait_runs(&redis, 4).await;
    assert!(counted.values().all(|n| *n == 1), "{counted:?}");
    let client = redis.stevedore().await;
    let (schedule, next) = client.schedule("tick").await.unwrap().unwrap();
    let last = schedule.last_fired_at.unwrap();
    assert_eq!(
        next,
        Some(last + 300),
        "next due one interval after the last fire"
    );
    assert!(
        counted.contains_key(&schedule.run_id(last))
            || counted.contains_key(&schedule.run_id(last - 300))
    );

    let listed = cli(&redis, &["schedule", "list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(json[0]["name"], "tick");
    assert!(
        json[0]["next_fire_at"].as_u64().is_some() && json[0]["last_fired_at"].as_u64().is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_and_a_paused_leader_never_fire_a_run_twice() {
    let redis = RedisServer::start();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--max-workers", "64"]);
    let mut beats = vec![Beat::start(&redis, &[]), Beat::start(&redis, &[])];
    cli(
        &redis,
        &[
            "schedule",
            "add",
            "tick",
            "tests.count_run",
            "--every",
            "200ms",
        ],
    );
    wait_runs(&redis, 3).await;
    let first = leader_pid(&redis).await;
    let index = beats.iter().position(|b| b.0.id() as i32 == first).unwrap();
    let killed_at = Instant::now();
    beats.remove(index); // dropped: SIGKILL
    let before = run_count(&redis).await.len();
    wait_runs(&redis, before + 2).await;
    assert!(
        killed_at.elapsed() < Duration::from_secs(4),
        "the standby took {:?}",
        killed_at.elapsed()
    );

    beats.push(Beat::start(&redis, &[]));
    let second = leader_pid(&redis).await;
    let leader = beats.iter().find(|b| b.0.id() as i32 == second).unwrap();
    leader.signal(Signal::SIGSTOP);
    let before = run_count(&redis).await.len();
    wait_runs(&redis, before + 3).await;
    leader.signal(Signal::SIGCONT);
    let before = run_count(&redis).await.len();
    wait_runs(&redis, before + 5).await;

    let counted = run_count(&redis).await;
    assert!(
        counted.values().all(|n| *n == 1),
        "a run fired twice: {counted:?}"
    );
}

/// The pid of the beat holding the lease (`HOST:PID:START_MS:TOKEN`).
async fn leader_pid(redis: &RedisServer) -> i32 {
    let mut conn = redis.connection().await;
    let holder = eventually("a leader", WAIT, || {
        let mut conn = conn.clone();
        async move {
            redis::cmd("GET")
                .arg(stevedore_tests::keys().leader())
                .query_async::<Option<String>>(&mut conn)
                .await
                .ok()?
        }
    })
    .await;
    let _ = &mut conn;
    let parts: Vec<&str> = holder.rsplitn(4, ':').collect();
    parts[2].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_added_paused_resumed_and_removed_live() {
    let redis = RedisServer::start();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let _beat = Beat::start(&redis, &[]);
    cli(
        &redis,
        &[
            "schedule",
            "add",
            "live",
            "tests.count_run",
            "--every",
            "200ms",
        ],
    );
    wait_runs(&redis, 2).await;

    cli(&redis, &["schedule", "pause", "live"]);
    let shown = cli(&redis, &["schedule", "show", "live", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(json["paused"], true);
    assert!(
        json["next_fire_at"].is_null(),
        "a paused schedule is not due"
    );

    let before = run_count(&redis).await.len();
    cli(&redis, &["schedule", "resume", "live"]);
    wait_runs(&redis, before + 2).await;

    cli(&redis, &["schedule", "remove", "live"]);
    let gone = run_cli(
        test_admin_bin!(),
        &redis.url(),
        &["schedule", "show", "live"],
    );
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no schedule `live`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_expressions_are_refused_when_the_schedule_is_created() {
    let redis = RedisServer::start();
    let cases = [
        (
            vec!["--cron", "61 * * * *"],
            "invalid schedule: cron expression `61 * * * *`",
        ),
        (
            vec!["--cron", "* * * * *", "--tz", "Mars/Olympus"],
            "invalid schedule: time zone `Mars/Olympus`",
        ),
        (
            vec!["--rrule", "RRULE:FREQ=SOMETIMES"],
            "invalid schedule: RRULE",
        ),
    ];
    for (when, expected) in cases {
        let mut args = vec!["schedule", "add", "bad", "tests.count_run"];
        args.extend(when);
        let out = run_cli(test_admin_bin!(), &redis.url(), &args);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected) && err.lines().count() == 1, "{err}");
    }
    let client = redis.stevedore().await;
    assert!(client.schedules().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_schedules_come_from_the_config_file() {
    let redis = RedisServer::start();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("beat.toml");
    std::fs::write(&config, "[[schedule]]\nname = \"static\"\ntask = \"tests.count_run\"\nevery = \"250ms\"\nmissed = \"skip\"\n").unwrap();
    let _beat = Beat::start(&redis, &["--config", config.to_str().unwrap()]);
    wait_runs(&redis, 2).await;
    let client = redis.stevedore().await;
    let (schedule, _) = client.schedule("static").await.unwrap().unwrap();
    assert_eq!(schedule.missed, stevedore::schedule::Missed::Skip);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_claimed_by_a_beat_that_died_before_publishing_are_published_once() {
    let redis = RedisServer::start();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    cli(
        &redis,
        &[
            "schedule",
            "add",
            "hourly",
            "tests.count_run",
            "--every",
            "1h",
        ],
    );
    let client = redis.stevedore().await;
    let broker = client.broker();
    let (schedule, due) = client.schedule("hourly").await.unwrap().unwrap();
    let due = due.unwrap();
    // A beat that takes the lease, claims the firing, and dies before publishing it.
    let token = broker
        .lease("doomed", Duration::from_millis(500))
        .await
        .unwrap()
        .unwrap();
    let firing = stevedore::broker::Firing {
        messages: vec![schedule.message(due).unwrap()],
        schedule: schedule.clone(),
        due_ms: due,
        next_due_ms: Some(due + 3_600_000),
        missed: 0,
    };
    let claimed = broker
        .claim_schedules("doomed", token, &[firing])
        .await
        .unwrap();
    assert_eq!(claimed, vec![stevedore::broker::Fired::Fired]);
    assert_eq!(run_count(&redis).await.len(), 0, "nothing published yet");

    // Two publishers of the outbox at once (a new leader and a stale one): one run.
    let other = redis.stevedore().await;
    let (a, b) = tokio::join!(broker.publish_outbox(), other.broker().publish_outbox());
    assert!(a.unwrap() + b.unwrap() >= 1);
    let run_id = schedule.run_id(due);
    let counted = wait_runs(&redis, 1).await;
    assert_eq!(counted.get(&run_id), Some(&1));

    // A real beat finds the outbox empty and fires nothing more for that time.
    let _beat = Beat::start(&redis, &[]);
    eventually("the beat to lead", WAIT, || async {
        let mut conn = redis.connection().await;
        redis::cmd("GET")
            .arg(stevedore_tests::keys().leader())
            .query_async::<Option<String>>(&mut conn)
            .await
            .unwrap()
            .filter(|holder| !holder.starts_with("doomed"))
    })
    .await;
    assert_eq!(
        broker.publish_outbox().await.unwrap(),
        0,
        "the outbox was cleared"
    );
    let (_, next) = client.schedule("hourly").await.unwrap().unwrap();
    assert_eq!(
        next,
        Some(due + 3_600_000),
        "the claim advanced the schedule"
    );
    assert_eq!(run_count(&redis).await.get(&run_id), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beat_started_before_redis_waits_for_it_then_fires() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("later.sock");
    let url = format!("unix://{}", socket.display());
    let log = dir.path().join("beat.log");
    let _beat = Beat(
        Command::new(env!("CARGO_BIN_EXE_test-beat"))
            .args(["--redis-url", &url, "--lease", "1s"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let logged = |what: &'static str| {
        let log = log.clone();
        move || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains(what).then_some(())
        }
    };
    let waiting = logged("waiting for redis");
    eventually("beat to wait for redis", WAIT, || {
        let waiting = waiting.clone();
        async move { waiting() }
    })
    .await;
    let _server = stevedore_tests::redis_server_on(&socket, dir.path());
    eventually("the server to answer", WAIT, || {
        let url = url.clone();
        async move {
            stevedore::Client::connect(&url, "stevedore")
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await;
    let _worker = WorkerProcess::start_at(test_worker_bin!(), &url, "w", &[], &[]);
    let added = stevedore_tests::run_cli(
        test_admin_bin!(),
        &url,
        &[
            "schedule",
            "add",
            "early",
            "tests.count_run",
            "--every",
            "200ms",
        ],
    );
    assert!(added.status.success(), "{:?}", added);
    let conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    eventually("a scheduled run", WAIT, || {
        let mut conn = conn.clone();
        async move { (!runs(&mut conn).await.is_empty()).then_some(()) }
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("waiting for redis").count(), 1, "{text}");
    assert!(text.contains("redis answers; starting"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_undecodable_schedule_never_silences_the_others() {
    let redis = RedisServer::start();
    let keys = stevedore_tests::keys();
    let mut conn = redis.connection().await;
    store_a_broken_schedule(&mut conn).await;
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let _beat = Beat::start(&redis, &[]);
    cli(
        &redis,
        &[
            "schedule",
            "add",
            "good",
            "tests.count_run",
            "--every",
            "200ms",
        ],
    );
    wait_runs(&redis, 2).await;

    let listed = run_cli(test_admin_bin!(), &redis.url(), &["schedule", "list"]);
    assert_eq!(listed.status.code(), Some(1), "a bad entry is reported");
    let out = String::from_utf8_lossy(&listed.stdout);
    let err = String::from_utf8_lossy(&listed.stderr);
    assert!(out.contains("good"), "the good schedule is listed: {out}");
    assert!(err.contains("\"broken\" cannot be read"), "{err}");
    let due: Option<f64> = redis::cmd("ZSCORE")
        .arg(keys.schedules_due())
        .arg("broken")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        due, None,
        "the bad schedule is parked, not looked at every tick"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondly_rrule_that_started_in_january_fires_every_second() {
    let redis = RedisServer::start();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let _beat = Beat::start(&redis, &[]);
    // Walked from DTSTART, tens of millions of times lie before now.
    let january = "DTSTART:20260101T000000Z RRULE:FREQ=SECONDLY";
    cli(
        &redis,
        &[
            "schedule",
            "add",
            "tick",
            "tests.count_run",
            "--rrule",
            january,
        ],
    );
    wait_runs(&redis, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_config_updates_and_removes_its_own_schedules_and_leaves_runtime_ones_alone() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("beat.toml");
    let entry = |name: &str, extra: &str| {
        format!(
            "[[schedule]]\nname = \"{name}\"\ntask = \"tests.count_run\"\nevery = \"1h\"\n{extra}"
        )
    };
    let first = entry("kept", "kwargs = { n = 1 }\n") + &entry("dropped", "");
    std::fs::write(&config, first).unwrap();
    let client = redis.stevedore().await;
    let stored = |name: &'static str| {
        let client = client.clone();
        async move { client.schedule(name).await.unwrap().map(|(s, _)| s) }
    };
    let beat = Beat::start(&redis, &["--config", config.to_str().unwrap()]);
    eventually("the file's schedules", WAIT, || async {
        stored("dropped").await.map(|_| ())
    })
    .await;
    drop(beat);
    cli(
        &redis,
        &[
            "schedule",
            "add",
            "runtime",
            "tests.count_run",
            "--every",
            "1h",
        ],
    );

    std::fs::write(
        &config,
        entry("kept", "kwargs = { n = 2 }\nmissed = \"skip\"\n"),
    )
    .unwrap();
    let _beat = Beat::start(&redis, &["--config", config.to_str().unwrap()]);
    let kept = eventually("the edited entry to be stored", WAIT, || async {
        stored("kept")
            .await
            .filter(|s| s.kwargs.get("n") == Some(&2.into()))
    })
    .await;
    assert_eq!(kept.missed, stevedore::schedule::Missed::Skip);
    eventually("the entry that left the file to go", WAIT, || async {
        stored("dropped").await.is_none().then_some(())
    })
    .await;
    assert!(
        stored("runtime").await.is_some(),
        "a runtime schedule is never touched"
    );
}

#[test]
fn schedule_errors_name_the_schedule_and_tz_goes_with_cron_only() {
    let redis = RedisServer::start();
    let add = |extra: &[&str]| {
        let args = [&["schedule", "add", "s", "t"][..], extra].concat();
        run_cli(test_admin_bin!(), &redis.url(), &args)
    };
    let tz = add(&["--every", "5m", "--tz", "Europe/Berlin"]);
    assert!(!tz.status.success(), "--tz with --every is refused");
    let cron = add(&["--cron", "61 * * * *"]);
    let err = String::from_utf8_lossy(&cron.stderr);
    assert!(
        err.contains("invalid schedule: cron expression `61 * * * *`"),
        "{err}"
    );
    assert!(!err.contains("publish options"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_counts_the_runs_it_fired_skipped_as_missed_and_could_not_fire() {
    const HOUR: u64 = 3_600_000;
    let redis = RedisServer::start();
    let keys = stevedore_tests::keys();
    let mut conn = redis.connection().await;
    cli(
        &redis,
        &[
            "schedule",
            "add",
            "late",
            "tests.count_run",
            "--every",
            "1h",
            "--missed",
            "skip",
        ],
    );
    // Hourly, created 10 h ago, last fired 6 h ago: the runs of 5 h ago to now (6) were
    // missed, and `skip` fires none of them.
    let client = redis.stevedore().await;
    let (mut late, _) = client.schedule("late").await.unwrap().unwrap();
    late.created_at -= 10 * HOUR;
    client.put_schedule(&late).await.unwrap();
    let due = late.created_at + 5 * HOUR;
    let _: () = redis::cmd("ZADD")
        .arg(keys.schedules_due())
        .arg(due)
        .arg("late")
        .query_async(&mut conn)
        .await
        .unwrap();
    store_a_broken_schedule(&mut conn).await;
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    cli(
        &redis,
        &[
            "schedule",
            "add",
            "good",
            "tests.count_run",
            "--every",
            "200ms",
        ],
    );
    let beat = Beat::start(&redis, &[]);
    wait_runs(&redis, 3).await;
    drop(beat);

    let counts = client.broker().schedule_run_counts().await.unwrap();
    let [("fired", fired), ("missed", missed), ("failed", failed)] = counts else {
        panic!("{counts:?}")
    };
    assert_eq!(missed, 6, "{counts:?}");
    assert_eq!(failed, 1, "the undecodable schedule, parked once");
    eventually("every fired run ran", WAIT, || async {
        (run_count(&redis).await.len() as u64 == fired).then_some(())
    })
    .await;
}
