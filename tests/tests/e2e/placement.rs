//! Placement: impact on a node's capacity, exclusive tasks, and the cluster-wide rate,
//! concurrency and keyed limits, with several real worker processes.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::time::Duration;

use stevedore::{Client, PublishOptions, TaskHandle, TaskState};
use stevedore_tests::{
    eventually, finished, node_status, run_cli, running, tasks, test_admin_bin, test_worker_bin,
    RedisServer, WorkerProcess,
};

const WAIT: Duration = Duration::from_secs(60);
const FAST: [&str; 4] = ["--heartbeat", "200ms", "--lost-after", "1s"];

async fn number(redis: &RedisServer, key: &str) -> u64 {
    let value: Option<u64> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut redis.connection().await)
        .await
        .unwrap();
    value.unwrap_or(0)
}

async fn starts(redis: &RedisServer, key: &str) -> Vec<u64> {
    redis::cmd("LRANGE")
        .arg(format!("tests:starts:{key}"))
        .arg(0)
        .arg(-1)
        .query_async(&mut redis.connection().await)
        .await
        .unwrap()
}

async fn all_succeed<T>(client: &Client, handles: &[TaskHandle<T>]) {
    for handle in handles {
        let record = finished(client, handle.id(), WAIT).await;
        assert_eq!(record.state(), TaskState::Succeeded, "{record:?}");
    }
}

fn notify() -> PublishOptions {
    PublishOptions::new().notify(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_four_units_runs_two_impact_two_tasks_at_once_and_never_three() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--max-workers", "4"]);
    let client = redis.stevedore().await;
    let mut handles = Vec::new();
    for _ in 0..6 {
        let args = ("pack".to_owned(), 300);
        handles.push(
            tasks::occupy_double::apply_async(&client, args, notify())
                .await
                .unwrap(),
        );
    }
    all_succeed(&client, &handles).await;
    assert_eq!(
        number(&redis, "tests:max:pack").await,
        2,
        "two at once, never three"
    );
    // An impact given on the call counts as well: 4 units hold one run of impact 3.
    let mut handles = Vec::new();
    for _ in 0..3 {
        let options = notify().impact(3);
        let args = ("three".to_owned(), 200);
        handles.push(
            tasks::occupy::apply_async(&client, args, options)
                .await
                .unwrap(),
        );
    }
    all_succeed(&client, &handles).await;
    assert_eq!(number(&redis, "tests:max:three").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heavy_task_is_not_starved_by_a_flood_of_light_ones() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--max-workers", "4"]);
    let client = redis.stevedore().await;
    let light = |n: usize| {
        let client = client.clone();
        async move {
            let mut handles = Vec::new();
            for _ in 0..n {
                let args = ("light".to_owned(), 100);
                handles.push(
                    tasks::occupy::apply_async(&client, args, notify())
                        .await
                        .unwrap(),
                );
            }
            handles
        }
    };
    let before = light(20).await;
    let heavy = tasks::occupy::apply_async(&client, ("heavy".to_owned(), 100), notify().impact(4))
        .await
        .unwrap();
    let after = light(60).await;
    let heavy_started = finished(&client, heavy.id(), WAIT)
        .await
        .task_run()
        .unwrap()
        .started_at
        .unwrap();
    all_succeed(&client, &before).await;
    for handle in &after {
        let record = finished(&client, handle.id(), WAIT).await;
        let started = record.task_run().unwrap().started_at.unwrap();
        assert!(
            started >= heavy_started,
            "a light task published after the heavy one started first ({started} < {heavy_started})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_auto_picks_a_node_where_the_impact_fits_and_refuses_one_that_fits_nowhere() {
    let redis = RedisServer::start();
    let _small = WorkerProcess::start(test_worker_bin!(), &redis, "small", &["--max-workers", "2"]);
    let _big = WorkerProcess::start(test_worker_bin!(), &redis, "big", &["--max-workers", "6"]);
    let client = redis.stevedore().await;
    eventually("both nodes consuming", WAIT, || {
        let client = client.clone();
        async move {
            let nodes = client.nodes(Duration::from_secs(15)).await.ok()?;
            (nodes.iter().filter(|n| n.beat.consuming).count() == 2).then_some(())
        }
    })
    .await;
    let admin = test_admin_bin!();
    let enqueue = [
        "enqueue",
        "tests.occupy",
        "--args",
        r#"["auto", 0]"#,
        "--node",
        "auto",
    ];
    let out = run_cli(
        admin,
        &redis.url(),
        &[&enqueue[..], &["--impact", "4", "--wait"]].concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let record = finished(&client, &id, WAIT).await;
    assert_eq!(record.task_run().unwrap().node, "big");

    let out = run_cli(
        admin,
        &redis.url(),
        &[&enqueue[..], &["--impact", "7"]].concat(),
    );
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("exceeds every live node's capacity (the largest has 6)"),
        "{error}"
    );
    assert_eq!(error.trim().lines().count(), 1, "{error}");

    // Published to a shared queue, a task no node can hold waits, visibly, and is not dropped.
    let options = notify().impact(7);
    let waiting = tasks::occupy::apply_async(&client, ("huge".to_owned(), 0), options)
        .await
        .unwrap();
    eventually("the huge task sent back to wait", WAIT, || {
        let client = client.clone();
        async move {
            let stats = client.queues().await.ok()?;
            let default = stats
                .iter()
                .find(|q| q.destination.wire_name() == "default")?;
            (default.delayed == 1).then_some(())
        }
    })
    .await;
    let state = client.task(waiting.id()).await.map(|r| r.state()).ok();
    assert!(
        !matches!(state, Some(TaskState::Failed | TaskState::Dead)),
        "{state:?}"
    );
    let out = run_cli(admin, &redis.url(), &["queues"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.lines().any(|l| l.starts_with("default")),
        "{listing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_task_runs_alone_on_its_node_while_the_other_node_keeps_working() {
    let redis = RedisServer::start();
    let _a = WorkerProcess::start(test_worker_bin!(), &redis, "a", &["--max-workers", "4"]);
    let _b = WorkerProcess::start(test_worker_bin!(), &redis, "b", &["--max-workers", "4"]);
    let client = redis.stevedore().await;
    let on_a = || notify().node("a");
    let mut busy = Vec::new();
    for _ in 0..2 {
        let args = ("a-busy".to_owned(), 1_500);
        busy.push(
            tasks::occupy::apply_async(&client, args, on_a())
                .await
                .unwrap(),
        );
    }
    for handle in &busy {
        running(&client, handle.id()).await;
    }
    let exclusive = tasks::alone::apply_async(&client, ("alone".to_owned(), 1_000), on_a())
        .await
        .unwrap();
    eventually("node a draining for the exclusive task", WAIT, || {
        let client = client.clone();
        async move {
            let status = node_status(&client, "a").await;
            status
                .exclusive
                .filter(|e| !e.running)
                .map(|e| assert_eq!(e.task, "tests.alone"))
        }
    })
    .await;
    let out = run_cli(test_admin_bin!(), &redis.url(), &["status", "--node", "a"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "exclusive: draining for tests.alone {}",
            exclusive.id()
        )),
        "{text}"
    );
    // Meanwhile node a takes nothing new from its queue, and node b works on.
    let later_on_a = tasks::occupy::apply_async(&client, ("a-later".to_owned(), 0), on_a())
        .await
        .unwrap();
    let on_b = tasks::occupy::apply_async(&client, ("b".to_owned(), 0), notify())
        .await
        .unwrap();
    let b_run = finished(&client, on_b.id(), WAIT).await;
    assert_eq!(b_run.task_run().unwrap().node, "b");

    let record = finished(&client, exclusive.id(), WAIT).await;
    let result = record.task_run().unwrap().result.clone().unwrap();
    let (before, after): (u64, u64) = rmpv::ext::from_value(result).unwrap();
    assert_eq!(
        before, after,
        "something else started on node a while the exclusive task ran"
    );
    let started = record.task_run().unwrap().started_at.unwrap();
    for handle in &busy {
        let ended = finished(&client, handle.id(), WAIT)
            .await
            .task_run()
            .unwrap()
            .finished_at
            .unwrap();
        assert!(
            ended <= started,
            "the exclusive task started before node a drained"
        );
    }
    // Afterwards the node resumes.
    let later = finished(&client, later_on_a.id(), WAIT).await;
    assert_eq!(later.state(), TaskState::Succeeded);
    assert!(
        later.task_run().unwrap().started_at.unwrap()
            >= record.task_run().unwrap().finished_at.unwrap()
    );
    assert!(node_status(&client, "a").await.exclusive.is_none());
}

// Runs alone under nextest (.config/nextest.toml): it asserts on time, which a busy core
// beside it would skew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_four_workers_within_five_percent_even_through_a_sigkill() {
    let redis = RedisServer::start();
    let mut workers: Vec<WorkerProcess> = ["w1", "w2", "w3", "w4"]
        .iter()
        .map(|node| WorkerProcess::start(test_worker_bin!(), &redis, node, &FAST))
        .collect();
    let client = redis.stevedore().await;
    let out = run_cli(
        test_admin_bin!(),
        &redis.url(),
        &["limit", "set", "paced", "20/s"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut messages = Vec::new();
    for _ in 0..300 {
        let options = PublishOptions::new().limit("paced");
        let call = vec![rmpv::Value::from("rate"), rmpv::Value::from(0)];
        messages.push(Client::message("tests.occupy", call, Default::default(), &options).unwrap());
    }
    let handles = client.publish_many(messages).await.unwrap();
    let first = eventually("the first start", WAIT, || async {
        starts(&redis, "rate").await.first().copied()
    })
    .await;
    // A worker dies a third of the way through the window.
    eventually("60 starts", WAIT, || async {
        (starts(&redis, "rate").await.len() >= 60).then_some(())
    })
    .await;
    workers[1].kill_hard();
    let window_end = first + 11_000;
    eventually("the measured window to pass", WAIT, || async {
        (stevedore::now_ms() > window_end + 500).then_some(())
    })
    .await;
    let starts = starts(&redis, "rate").await;
    let in_window = starts
        .iter()
        .filter(|s| (first + 1_000..window_end).contains(*s))
        .count();
    eprintln!("{in_window} starts in the 10 s window");
    assert!(
        (190..=210).contains(&in_window),
        "{in_window} starts in 10 s at 20/s"
    );
    // Held back by the rate, a task is not charged an attempt.
    let some = &handles[150];
    let record = finished(&client, some.id(), WAIT).await;
    assert_eq!(record.task_run().unwrap().attempt, 1, "{record:?}");
}

// Runs alone under nextest (.config/nextest.toml): it asserts on time, which a busy core
// beside it would skew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_of_the_tasks_own_paces_its_runs() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;
    let mut handles = Vec::new();
    for _ in 0..12 {
        handles.push(
            tasks::paced::apply_async(&client, ("own".to_owned(),), notify())
                .await
                .unwrap(),
        );
    }
    all_succeed(&client, &handles).await;
    let mut starts = starts(&redis, "own").await;
    starts.sort_unstable();
    // 10/s with a burst of 2: 2 at once, then one every 100 ms: 12 runs take at least 1 s.
    let span = starts.last().unwrap() - starts.first().unwrap();
    assert!(
        (950..3_000).contains(&span),
        "12 runs at 10/s spanned {span} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_is_never_exceeded_across_nodes() {
    let redis = RedisServer::start();
    let _a = WorkerProcess::start(test_worker_bin!(), &redis, "a", &["--max-workers", "4"]);
    let _b = WorkerProcess::start(test_worker_bin!(), &redis, "b", &["--max-workers", "4"]);
    let client = redis.stevedore().await;
    let mut handles = Vec::new();
    for _ in 0..12 {
        let args = ("two".to_owned(), 200);
        handles.push(
            tasks::two_at_once::apply_async(&client, args, notify())
                .await
                .unwrap(),
        );
    }
    all_succeed(&client, &handles).await;
    assert_eq!(number(&redis, "tests:max:two").await, 2);
    for handle in &handles {
        let record = client.task(handle.id()).await.unwrap();
        assert_eq!(
            record.task_run().unwrap().attempt,
            1,
            "waiting is not an attempt"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_held_by_a_lost_node_comes_back_when_it_is_reaped() {
    let redis = RedisServer::start();
    let mut doomed = WorkerProcess::start(test_worker_bin!(), &redis, "doomed", &FAST);
    let client = redis.stevedore().await;
    let holder = tasks::one_at_once::apply_async(&client, ("solo".to_owned(), 60_000), notify())
        .await
        .unwrap();
    running(&client, holder.id()).await;
    let _survivor = WorkerProcess::start(test_worker_bin!(), &redis, "survivor", &FAST);
    let waiter = tasks::one_at_once::apply_async(&client, ("solo".to_owned(), 0), notify())
        .await
        .unwrap();
    let waiting = stevedore_tests::keys().limit_part("task.tests.one_at_once", "waiting", None);
    eventually(
        "the second run listed as waiting for the permit",
        WAIT,
        || {
            let redis = &redis;
            let waiting = waiting.clone();
            async move {
                let mut conn = redis.connection().await;
                let n: u64 = redis::cmd("LLEN")
                    .arg(&waiting)
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                (n == 1).then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        client.task(waiter.id()).await.map(|r| r.state()).ok(),
        Some(TaskState::Pending),
        "the waiter waits while the permit is held"
    );
    doomed.kill_hard();
    let record = finished(&client, waiter.id(), WAIT).await;
    assert_eq!(record.state(), TaskState::Succeeded);
    assert_eq!(record.task_run().unwrap().node, "survivor");
    let lost = finished(&client, holder.id(), WAIT).await;
    assert_eq!(lost.state(), TaskState::Failed);
    let reaped_at = lost.task_run().unwrap().finished_at.unwrap();
    let started = record.task_run().unwrap().started_at.unwrap();
    assert!(
        started >= reaped_at,
        "the waiter ran while the lost holder's permit was held"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_limit_gives_each_key_its_own_permits() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--max-workers", "8"]);
    let client = redis.stevedore().await;
    let out = run_cli(
        test_admin_bin!(),
        &redis.url(),
        &["limit", "set", "per_customer", "--concurrency", "1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut acme = Vec::new();
    for _ in 0..3 {
        let args = ("acme".to_owned(), 600);
        acme.push(
            tasks::tenant::apply_async(&client, args, notify())
                .await
                .unwrap(),
        );
    }
    let globex = tasks::tenant::apply_async(&client, ("globex".to_owned(), 0), notify())
        .await
        .unwrap();
    let globex = finished(&client, globex.id(), WAIT).await;
    let first_acme = finished(&client, acme[0].id(), WAIT).await;
    assert!(
        globex.task_run().unwrap().started_at.unwrap()
            < first_acme.task_run().unwrap().finished_at.unwrap(),
        "globex waited behind acme"
    );
    all_succeed(&client, &acme).await;
    assert_eq!(
        number(&redis, "tests:max:acme").await,
        1,
        "acme's runs overlapped"
    );
}

#[test]
fn limits_are_set_listed_shown_and_removed_from_the_shell() {
    let redis = RedisServer::start();
    let admin = test_admin_bin!();
    let run = |args: &[&str]| run_cli(admin, &redis.url(), args);
    let out = run(&[
        "limit",
        "set",
        "api",
        "100/s",
        "--burst",
        "10",
        "--concurrency",
        "5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["limit", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "api");
    assert_eq!(list[0]["rate"], "100/s");
    assert_eq!(list[0]["burst"], 10);
    assert_eq!(list[0]["concurrency"], 5);
    let out = run(&["limit", "show", "api"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("rate 100/s burst 10, concurrency 5"));
    for (args, expected) in [
        (&["limit", "set", "api", "100/d"][..], "write COUNT/UNIT"),
        (&["limit", "set", "api"][..], "a limit needs a rate"),
        (&["limit", "set", "bad name", "1/s"][..], "limit"),
        (
            &["enqueue", "tests.add", "--limit", "nope"][..],
            "no limit `nope`",
        ),
        (&["enqueue", "tests.add", "--impact", "0"][..], "0"),
    ] {
        let out = run(args);
        let error = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && error.contains(expected),
            "{args:?}: {error}"
        );
    }
    assert!(run(&["limit", "remove", "api"]).status.success());
    let out = run(&["limit", "show", "api"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no limit `api`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_parked_behind_its_duplicate_gives_its_permit_back() {
    let redis = RedisServer::start();
    let w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--max-workers", "4"]);
    let client = redis.stevedore().await;
    let serial = || notify().on_duplicate(stevedore::OnDuplicate::Serial);
    let args = || ("dup".to_owned(), 1_500);
    let first = tasks::two_at_once::apply_async(&client, args(), serial())
        .await
        .unwrap();
    running(&client, first.id()).await;
    let copy = tasks::two_at_once::apply_async(&client, args(), serial())
        .await
        .unwrap();
    // The copy takes the second permit, then parks behind the first: it must give it back.
    w.wait_for_log("parked behind a running duplicate", 1, WAIT);
    let other = tasks::two_at_once::apply_async(&client, ("other".to_owned(), 0), notify())
        .await
        .unwrap();
    let other = finished(&client, other.id(), WAIT).await;
    let first = finished(&client, first.id(), WAIT).await;
    assert!(
        other.task_run().unwrap().started_at.unwrap()
            < first.task_run().unwrap().finished_at.unwrap(),
        "the parked copy kept its permit"
    );
    assert_eq!(
        finished(&client, copy.id(), WAIT).await.state(),
        TaskState::Succeeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_tasks_are_taken_ahead_of_the_others_waiting_in_their_queue() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--max-workers", "1"]);
    let client = redis.stevedore().await;
    let blocker = tasks::occupy::apply_async(&client, ("first".to_owned(), 500), notify())
        .await
        .unwrap();
    running(&client, blocker.id()).await;
    let mut light = Vec::new();
    for _ in 0..5 {
        let args = ("light".to_owned(), 0);
        light.push(
            tasks::occupy::apply_async(&client, args, notify())
                .await
                .unwrap(),
        );
    }
    let exclusive = tasks::alone::apply_async(&client, ("ahead".to_owned(), 0), notify())
        .await
        .unwrap();
    let record = finished(&client, exclusive.id(), WAIT).await;
    let started = record.task_run().unwrap().started_at.unwrap();
    for handle in &light {
        let run = finished(&client, handle.id(), WAIT).await;
        assert!(
            run.task_run().unwrap().started_at.unwrap() > started,
            "a task published before the exclusive one started first"
        );
    }
    // So does an exclusive call of an ordinary task.
    let options = notify().exclusive(true);
    let call = tasks::occupy::apply_async(&client, ("lane".to_owned(), 0), options)
        .await
        .unwrap();
    assert_eq!(
        finished(&client, call.id(), WAIT).await.state(),
        TaskState::Succeeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_of_one_holds_when_the_holders_node_is_killed() {
    concurrency_holds_through_a_kill(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_of_three_holds_when_the_holders_node_is_killed() {
    concurrency_holds_through_a_kill(3).await;
}

/// A node holding all `n` permits of a limit is killed; its runs come back as their next
/// attempts while others wait: the survivor, counting its runs at once from the tasks' own
/// counters, never runs more than `n`.
async fn concurrency_holds_through_a_kill(n: u32) {
    let redis = RedisServer::start();
    let client = redis.stevedore().await;
    let spec = stevedore::limits::LimitSpec {
        rate: None,
        concurrency: Some(n),
    };
    client.admin().set_limit("held", &spec).await.unwrap();
    let workers = n.to_string();
    let fast = [&FAST[..], &["--max-workers", &workers]].concat();
    let mut doomed = WorkerProcess::start(test_worker_bin!(), &redis, "doomed", &fast);
    let key = format!("held{n}");
    let under = |ms: u64| {
        let ms1 = Duration::from_millis(1);
        let options = notify().limit("held").retries(3).backoff(ms1, ms1);
        tasks::occupy::apply_async(&client, (key.clone(), ms), options)
    };
    let mut handles = Vec::new();
    for _ in 0..n {
        handles.push(under(1_500).await.unwrap());
    }
    let now_on_doomed = format!("tests:now:{key}:doomed");
    eventually("the doomed node to hold every permit", WAIT, || async {
        (number(&redis, &now_on_doomed).await == u64::from(n)).then_some(())
    })
    .await;
    let many = (4 * n).to_string();
    let survivor_args = [&FAST[..], &["--max-workers", &many]].concat();
    let _survivor = WorkerProcess::start(test_worker_bin!(), &redis, "survivor", &survivor_args);
    for _ in 0..2 * n {
        handles.push(under(300).await.unwrap());
    }
    doomed.kill_hard();
    all_succeed(&client, &handles).await;
    let at_once = number(&redis, &format!("tests:max:{key}:survivor")).await;
    assert_eq!(at_once, u64::from(n), "runs at once on the survivor");
    let info = client.admin().limit("held").await.unwrap();
    assert_eq!(
        (info.held, info.waiting),
        (0, 0),
        "nothing held or waiting at the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_limit_is_named_and_the_others_still_listed() {
    let redis = RedisServer::start();
    let run = |args: &[&str]| run_cli(test_admin_bin!(), &redis.url(), args);
    assert!(run(&["limit", "set", "good", "5/s"]).status.success());
    assert!(run(&["limit", "set", "bad", "5/s"]).status.success());
    let _: () = redis::cmd("HSET")
        .arg(stevedore_tests::keys().limit_def("bad"))
        .arg("count")
        .arg("many")
        .query_async(&mut redis.connection().await)
        .await
        .unwrap();
    let out = run(&["limit", "list", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["name"], "good");
    assert!(String::from_utf8_lossy(&out.stderr).contains("limit \"bad\" cannot be read"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impact_no_node_can_take_is_refused_at_publish_and_dead_lettered_after_an_hour() {
    let redis = RedisServer::start();
    let _small = WorkerProcess::start(test_worker_bin!(), &redis, "small", &["--max-workers", "2"]);
    let out = run_cli(
        test_admin_bin!(),
        &redis.url(),
        &[
            "enqueue",
            "tests.add",
            "--args",
            "[1, 2]",
            "--impact",
            "4294967295",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("exceeds every live node's capacity"),
        "{error}"
    );
    // Published from code (no such check), an hour ago: the node gives it up.
    let client = redis.stevedore().await;
    let mut message = tasks::add::message((1, 2), &PublishOptions::new().impact(1_000)).unwrap();
    message.published_at -= 2 * 3_600_000;
    let id = client.publish(message).await.unwrap().id().to_owned();
    let letters = eventually("the dead letter", WAIT, || async {
        let letters = client
            .admin()
            .dead_letters(&stevedore::Destination::queue("default").unwrap(), None, 10)
            .await
            .unwrap();
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert!(
        letters[0].reason.contains("above the capacity"),
        "{letters:?}"
    );
    let opened = stevedore::Message::decode(&letters[0].raw).unwrap();
    assert_eq!(opened.id, id, "the message itself is kept");
}
