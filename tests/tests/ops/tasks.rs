//! `#[task]` stubs and handlers end to end: typed arguments, kinds of task, and bad input.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::time::Duration;

use stevedore::{Client, PublishOptions, TaskRecord, TaskState};
use stevedore_tests::{tasks, test_worker_bin, RedisServer, WorkerProcess};

const WAIT: Duration = Duration::from_secs(20);

/// A call that must fail: task, args, kwargs, and the text its error must contain.
type BadCall = (
    &'static str,
    Vec<rmpv::Value>,
    Vec<(&'static str, rmpv::Value)>,
    &'static str,
);

fn notify() -> PublishOptions {
    PublishOptions::new().notify(true)
}

async fn outcome(record: &TaskRecord) -> (TaskState, Option<rmpv::Value>, Option<String>) {
    let run = record.task_run().expect("a queued task has one run");
    (run.state, run.result.clone(), run.error.clone())
}

/// Publishes `task` with dynamic arguments (as the CLI does) and waits for it.
async fn run_dynamic(
    client: &Client,
    task: &str,
    args: Vec<rmpv::Value>,
    kwargs: &[(&str, rmpv::Value)],
) -> TaskRecord {
    let kwargs = kwargs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let message = Client::message(task, args, kwargs, &notify()).unwrap();
    client
        .publish(message)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_task_runs_through_its_stub() {
    let redis = RedisServer::start();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;

    let add = tasks::add::apply_async(&client, (40, 2), notify())
        .await
        .unwrap();
    let join = tasks::join::apply_async(
        &client,
        (vec!["a".into(), "b".into()], "-".into()),
        notify(),
    )
    .await
    .unwrap();
    let greet = tasks::Greeter::apply_async(&client, ("ada".into(),), notify())
        .await
        .unwrap();
    let whoami = tasks::whoami::apply_async(&client, (), notify())
        .await
        .unwrap();
    let named = tasks::default_named::apply_async(&client, (7,), notify())
        .await
        .unwrap();

    let result = |r: TaskRecord| r.task_run().unwrap().result.clone().unwrap();
    assert_eq!(result(add.wait(WAIT).await.unwrap()), 42.into());
    assert_eq!(result(join.wait(WAIT).await.unwrap()), "a-b".into());
    assert_eq!(result(greet.wait(WAIT).await.unwrap()), "hello, ada".into());
    let expected_whoami: rmpv::Value =
        vec![rmpv::Value::from(whoami.id()), "w".into(), 1.into()].into();
    assert_eq!(result(whoami.wait(WAIT).await.unwrap()), expected_whoami);
    let named_record = named.wait(WAIT).await.unwrap();
    assert_eq!(
        named_record.task_run().unwrap().task,
        "stevedore_tests::tasks::default_named"
    );
    assert_eq!(
        tasks::default_named::NAME,
        "stevedore_tests::tasks::default_named"
    );
    assert_eq!(tasks::Greeter::TASK_NAME, "tests.greet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_publishes_another_through_its_context() {
    let redis = RedisServer::start();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;
    let parent = tasks::spawn_add::apply_async(&client, (9,), notify())
        .await
        .unwrap();
    let record = parent.wait(WAIT).await.unwrap();
    let child_id = record.task_run().unwrap().result.clone().unwrap();
    let child_id = child_id.as_str().unwrap();
    let child = stevedore_tests::eventually("the child task to finish", WAIT, || {
        let client = client.clone();
        async move { Some(client.task(child_id).await.ok()?).filter(|r| r.state().is_final()) }
    })
    .await;
    assert_eq!(child.task_run().unwrap().result, Some(10.into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_calls_fail_the_task_with_a_clear_error_and_the_worker_goes_on() {
    let redis = RedisServer::start();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;

    let cases: Vec<BadCall> = vec![
        ("no.such.task", vec![], vec![], "unknown task no.such.task"),
        (
            "tests.add",
            vec!["one".into(), 2.into()],
            vec![],
            "task `tests.add`: argument `a` has the wrong type",
        ),
        (
            "tests.add",
            vec![1.into()],
            vec![],
            "task `tests.add`: missing argument `b`",
        ),
        (
            "tests.add",
            vec![1.into(), 2.into(), 3.into()],
            vec![],
            "task `tests.add` takes 2 argument(s) but 3 were given",
        ),
        (
            "tests.add",
            vec![1.into(), 2.into()],
            vec![("c", 3.into())],
            "task `tests.add` has no parameter `c`",
        ),
        (
            "tests.join",
            vec![rmpv::Value::Array(vec![]), "".into()],
            vec![],
            "nothing to join",
        ),
        (
            "tests.panics",
            vec![],
            vec![],
            "task panicked: deliberate panic",
        ),
    ];
    for (task, args, kwargs, expected) in cases {
        let record = run_dynamic(&client, task, args, &kwargs).await;
        let (state, _, error) = outcome(&record).await;
        assert_eq!(state, TaskState::Failed, "{task}");
        let error = error.unwrap();
        assert!(
            error.contains(expected),
            "{task}: `{error}` lacks `{expected}`"
        );
    }
    let by_name = run_dynamic(
        &client,
        "tests.add",
        vec![],
        &[("b", 2.into()), ("a", 1.into())],
    )
    .await;
    assert_eq!(
        outcome(&by_name).await.1,
        Some(3.into()),
        "keyword arguments match by name"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_records_expire_after_the_configured_ttl() {
    let redis = RedisServer::start();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--record-ttl", "1h"]);
    let client = redis.stevedore().await;
    let handle = tasks::add::apply_async(&client, (1, 1), notify())
        .await
        .unwrap();
    handle.wait(WAIT).await.unwrap();
    let mut conn = redis.connection().await;
    let key = stevedore_tests::keys().record(handle.id());
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (3_500_000..=3_600_000).contains(&ttl),
        "record TTL {ttl} ms"
    );
    let done_ttl: i64 = redis::cmd("PTTL")
        .arg(stevedore_tests::keys().done(handle.id()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        done_ttl > 0 && done_ttl <= 3_600_000,
        "wake-up list TTL {done_ttl} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_sleep_stops_when_cancelled() {
    let redis = RedisServer::start();
    let client = redis.stevedore().await;
    let table = stevedore_worker::TaskTable::linked().unwrap();
    let sleep = table
        .get("stevedore.sleep")
        .expect("the worker crate links its built-in tasks");
    let cancel = stevedore::CancellationToken::new();
    let context = stevedore::TaskContext::new(
        "id",
        "stevedore.sleep",
        1,
        "n".into(),
        "default",
        cancel.clone(),
        client,
    );
    let invocation = stevedore::Invocation {
        args: vec![600_000.into()],
        kwargs: Default::default(),
        context,
    };
    let run = tokio::spawn((sleep.handler)(invocation));
    cancel.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("sleep ignored its cancellation");
    let error = outcome.unwrap().unwrap_err();
    assert_eq!(error.kind(), stevedore::TaskErrorKind::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argument_values_and_forged_names_never_reach_logs_or_records() {
    let redis = RedisServer::start();
    let worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;

    let record = run_dynamic(
        &client,
        "tests.add",
        vec!["SECRET-XYZ".into(), 2.into()],
        &[],
    )
    .await;
    let (state, _, error) = outcome(&record).await;
    assert_eq!(state, TaskState::Failed);
    let error = error.unwrap();
    assert!(
        error.contains("argument `a` has the wrong type: expected i64, found a string"),
        "{error}"
    );

    let mut forged = Client::message("tests.add", vec![], Default::default(), &notify()).unwrap();
    forged.task = "no.such\nERROR forged line".into();
    let record = client
        .publish(forged)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    assert_eq!(record.state(), TaskState::Failed);

    let log = worker.log_lines();
    assert!(
        log.iter().all(|line| !line.contains("SECRET-XYZ")),
        "an argument reached the log:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter().all(|line| !line.starts_with("ERROR forged")),
        "a task name forged a log line:\n{}",
        log.join("\n")
    );
    assert!(!error.contains("SECRET-XYZ"));
}

#[test]
fn the_stub_writes_the_tasks_retry_budget_into_the_message() {
    // So a reaper on a node that does not link the task still knows the budget.
    let message = tasks::flaky::message((), &PublishOptions::new()).unwrap();
    assert_eq!(
        (message.retries, message.backoff, message.max_backoff),
        (Some(3), Some(100), Some(200))
    );
    let overridden = tasks::flaky::message((), &PublishOptions::new().retries(1)).unwrap();
    assert_eq!(overridden.retries, Some(1), "the call's own budget wins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_handles_give_the_result_the_failure_or_a_timeout_and_each_nodes_outcome() {
    let redis = RedisServer::start();
    let _a = WorkerProcess::start(test_worker_bin!(), &redis, "a", &[]);
    let _b = WorkerProcess::start(test_worker_bin!(), &redis, "b", &[]);
    let client = redis.stevedore().await;
    let wait = std::time::Duration::from_secs(30);

    // Without notify: waiting reads the record until it is final.
    let sum: i64 = tasks::add::delay(&client, 2, 3)
        .await
        .unwrap()
        .get(wait)
        .await
        .unwrap();
    assert_eq!(sum, 5);
    let words = (vec!["a".to_owned(), "b".to_owned()], "-".to_owned());
    let joined = tasks::join::apply_async(&client, words, PublishOptions::new().notify(true));
    assert_eq!(joined.await.unwrap().get(wait).await.unwrap(), "a-b");

    let failing = tasks::flaky::delay(&client).await.unwrap();
    match failing.get(wait).await {
        Err(stevedore::Error::Task(failure)) => {
            assert_eq!(failure.state, stevedore::TaskState::Dead);
            assert_eq!(failure.message, "flaky failed again");
            assert!(failure.attempt > 1, "{failure}");
        }
        other => panic!("expected a task failure, got {other:?}"),
    }
    let blocked = tasks::block::delay(&client).await.unwrap();
    let short = std::time::Duration::from_millis(300);
    assert!(matches!(
        blocked.get(short).await,
        Err(stevedore::Error::Timeout { .. })
    ));

    let nodes = client.live_nodes().await.unwrap();
    assert_eq!(nodes, ["a", "b"]);
    let everywhere = PublishOptions::new().broadcast();
    let broadcast = tasks::whoami::apply_async(&client, (), everywhere)
        .await
        .unwrap();
    let outcomes = broadcast.get_all(&nodes, wait).await.unwrap();
    assert_eq!(outcomes.len(), 2);
    for (node, outcome) in outcomes {
        let (_, ran_on, attempt) = outcome.unwrap();
        assert_eq!((ran_on, attempt), (node, 1));
    }
    // A handle rebuilt from a stored id decodes the same way.
    let again = client.handle::<()>(failing.id());
    assert!(matches!(
        again.get(wait).await,
        Err(stevedore::Error::Task(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_queued_under_a_tasks_old_name_runs_through_its_alias() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let client = redis.stevedore().await;
    let wait = std::time::Duration::from_secs(30);
    let old = Client::message(
        "tests.before_rename",
        vec![],
        Default::default(),
        &PublishOptions::new(),
    )
    .unwrap();
    let handle = client.publish(old).await.unwrap().typed::<String>();
    assert_eq!(handle.get(wait).await.unwrap(), "renamed");
    let unknown = Client::message(
        "tests.never_was",
        vec![],
        Default::default(),
        &PublishOptions::new(),
    )
    .unwrap();
    let handle = client.publish(unknown).await.unwrap();
    assert!(matches!(
        handle.get(wait).await,
        Err(stevedore::Error::Task(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_of_a_json_mode_worker_parses_and_task_lines_carry_the_task_and_trace_ids() {
    let redis = RedisServer::start();
    let mut worker =
        WorkerProcess::start(test_worker_bin!(), &redis, "w", &["--log-format", "json"]);
    let client = redis.stevedore().await;
    let wait = std::time::Duration::from_secs(30);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traced =
        PublishOptions::new().header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"));
    let failing = tasks::flaky::apply_async(&client, (), traced)
        .await
        .unwrap();
    assert!(failing.get(wait).await.is_err());
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(worker.wait_exit(wait).success());

    let lines = worker.log_lines();
    assert!(lines.len() > 3, "{lines:?}");
    let parsed: Vec<serde_json::Value> = (lines.iter())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let task_lines: Vec<&serde_json::Value> = (parsed.iter())
        .filter(|l| l["span"]["name"] == "task")
        .collect();
    assert!(
        !task_lines.is_empty(),
        "the failed attempts are logged: {lines:?}"
    );
    for line in task_lines {
        assert_eq!(line["span"]["task.id"], failing.id(), "{line}");
        assert_eq!(line["span"]["trace.id"], trace, "{line}");
    }
    // What became of each attempt is a task line too (the README's promise of `task.id`).
    let settled: Vec<&serde_json::Value> = (parsed.iter())
        .filter(|l| {
            let message = l["fields"]["message"].as_str().unwrap_or_default();
            message.contains("retry scheduled") || message.contains("out of retries")
        })
        .collect();
    assert!(!settled.is_empty(), "{lines:?}");
    for line in settled {
        assert_eq!(line["span"]["task.id"], failing.id(), "{line}");
    }
}
