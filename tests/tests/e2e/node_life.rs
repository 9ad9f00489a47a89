//! Hooks, start-up tasks, and the built-in `stevedore.command` task with its allow-list.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use stevedore::control::CancelSelector;
use stevedore::{Client, PublishOptions, TaskState};
use stevedore_tests::{
    eventually, finished, publish_and_run, running, tasks, test_worker_bin, RedisServer,
    WorkerProcess,
};

const WAIT: Duration = Duration::from_secs(30);

async fn hook_calls(redis: &RedisServer) -> Vec<String> {
    let mut conn = redis.connection().await;
    redis::cmd("LRANGE")
        .arg("tests:hooks")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_and_start_up_tasks_run() {
    let redis = RedisServer::start();
    let mut worker = WorkerProcess::start_with_env(
        test_worker_bin!(),
        &redis,
        "h",
        &[],
        &[("STEVEDORE_TEST_HOOKS", "1")],
    );
    let mut conn = redis.connection().await;
    let started =
        eventually("the start-up task to run on its node", WAIT, || {
            let mut conn = conn.clone();
            async move {
                Some(stevedore_tests::ran_on(&mut conn, "h").await).filter(|ran| ran.len() == 1)
            }
        })
        .await;
    let client = redis.stevedore().await;
    let handle = tasks::add::apply_async(&client, (1, 2), PublishOptions::new().notify(true))
        .await
        .unwrap();
    handle.wait(WAIT).await.unwrap();
    worker.signal(Signal::SIGTERM);
    assert!(worker.wait_exit(WAIT).success());

    let calls = hook_calls(&redis).await;
    let id = handle.id();
    let position = |entry: &str| {
        calls
            .iter()
            .position(|c| c == entry)
            .unwrap_or_else(|| panic!("no `{entry}` in {calls:?}"))
    };
    assert_eq!(position("start:h"), 0);
    assert!(position(&format!("before:{id}")) < position(&format!("after:{id}:succeeded")));
    assert!(position(&format!("after:{}:succeeded", started[0])) > 0);
    assert_eq!(calls.last().map(String::as_str), Some("shutdown:h"));
    assert_eq!(
        stevedore_tests::runs(&mut conn).await.len(),
        1,
        "the start-up task ran once"
    );
}

fn command(program: &str, args: &[&str], options: &PublishOptions) -> stevedore::Message {
    let args: Vec<rmpv::Value> = vec![
        program.into(),
        args.iter()
            .map(|a| rmpv::Value::from(*a))
            .collect::<Vec<_>>()
            .into(),
    ];
    Client::message("stevedore.command", args, Default::default(), options).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_task_runs_only_allowed_programs_and_records_their_output() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(
        test_worker_bin!(),
        &redis,
        "c",
        &["--allow-command", "echo", "--allow-command", "sh"],
    );
    let client = redis.stevedore().await;
    let notify = PublishOptions::new().notify(true);

    let run = publish_and_run(&client, command("echo", &["hello", "world"], &notify), WAIT).await;
    assert_eq!(run.state, TaskState::Succeeded);
    let result = serde_json::to_value(run.result.unwrap()).unwrap();
    assert_eq!(
        result,
        serde_json::json!({"exit_code": 0, "output": "hello world\n"})
    );

    let run = publish_and_run(
        &client,
        command("sh", &["-c", "echo oops >&2; exit 3"], &notify),
        WAIT,
    )
    .await;
    assert_eq!(run.state, TaskState::Failed);
    let error = run.error.unwrap();
    assert!(
        error.contains("exit status: 3") && error.contains("oops"),
        "{error}"
    );

    let run = publish_and_run(
        &client,
        command("rm", &["-rf", "/tmp/nothing"], &notify),
        WAIT,
    )
    .await;
    assert_eq!(run.state, TaskState::Failed);
    assert!(run.error.unwrap().contains(
        "program `rm` is not allowed on node c; start the worker with --allow-command rm"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_or_timed_out_command_takes_its_process_group_down() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start(test_worker_bin!(), &redis, "c", &["--allow-command", "sh"]);
    let client = redis.stevedore().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let script = format!("sleep 600 & echo $! > {}; wait", pid_file.display());
    let cancelled = client
        .publish(command("sh", &["-c", &script], &PublishOptions::new()))
        .await
        .unwrap();
    running(&client, cancelled.id()).await;
    let grandchild: i32 = eventually("the grandchild's pid", WAIT, || {
        let path = pid_file.clone();
        async move { std::fs::read_to_string(path).ok()?.trim().parse().ok() }
    })
    .await;

    let asked = Instant::now();
    client
        .cancel(CancelSelector::ids([cancelled.id()]), WAIT)
        .await
        .unwrap();
    assert_eq!(
        finished(&client, cancelled.id(), WAIT).await.state(),
        TaskState::Cancelled
    );
    assert!(asked.elapsed() < Duration::from_secs(10));
    eventually(
        "the grandchild to die with its group",
        Duration::from_secs(5),
        || async move { dead_or_zombie(grandchild).then_some(()) },
    )
    .await;

    let limited = PublishOptions::new().timeout(Duration::from_millis(300));
    let slow = client
        .publish(command("sh", &["-c", "sleep 600"], &limited))
        .await
        .unwrap();
    assert_eq!(
        finished(&client, slow.id(), WAIT).await.state(),
        TaskState::TimedOut
    );
}

/// Whether process `pid` is gone, or dead and waiting to be reaped (a zombie is no longer
/// running; who reaps it is up to PID 1 of this machine).
fn dead_or_zombie(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// A `stevedore.command` call with an environment.
fn command_with_env(program: &str, env: &[(&str, &str)]) -> stevedore::Message {
    let env: Vec<(rmpv::Value, rmpv::Value)> = env
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    let args: Vec<rmpv::Value> = vec![
        program.into(),
        Vec::<rmpv::Value>::new().into(),
        rmpv::Value::Map(env),
    ];
    let notify = PublishOptions::new().notify(true);
    Client::message("stevedore.command", args, Default::default(), &notify).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_gets_only_the_environment_its_node_names_and_never_stevedores_own() {
    let redis = RedisServer::start();
    let _w = WorkerProcess::start_with_env(
        test_worker_bin!(),
        &redis,
        "c",
        &["--allow-command", "printenv", "--command-env", "SHOWN"],
        &[
            ("SHOWN", "shown-value"),
            ("HIDDEN", "hidden-value"),
            ("STEVEDORE_TEST_SECRET", "s3cret"),
        ],
    );
    let client = redis.stevedore().await;

    let run = publish_and_run(&client, command_with_env("printenv", &[]), WAIT).await;
    assert_eq!(run.state, TaskState::Succeeded, "{:?}", run.error);
    let output = serde_json::to_value(run.result.unwrap()).unwrap()["output"].to_string();
    assert!(output.contains("SHOWN=shown-value"), "{output}");
    for leaked in ["hidden-value", "s3cret", "STEVEDORE_", "PATH="] {
        assert!(
            !output.contains(leaked),
            "`{leaked}` reached the command: {output}"
        );
    }

    let run = publish_and_run(
        &client,
        command_with_env("printenv", &[("SHOWN", "from-call")]),
        WAIT,
    )
    .await;
    let output = serde_json::to_value(run.result.unwrap()).unwrap()["output"].to_string();
    assert!(
        output.contains("SHOWN=from-call"),
        "a call may set a named variable: {output}"
    );

    for name in ["PATH", "LD_PRELOAD", "BASH_ENV", "STEVEDORE_TEST_SECRET"] {
        let run = publish_and_run(
            &client,
            command_with_env("printenv", &[(name, "/tmp/evil")]),
            WAIT,
        )
        .await;
        assert_eq!(run.state, TaskState::Failed, "a call set {name}");
        let error = run.error.unwrap();
        assert!(
            error.contains(&format!("--command-env {name}")) && !error.contains("/tmp/evil"),
            "{error}"
        );
    }
}

#[test]
fn a_worker_refuses_a_program_it_cannot_find_and_stevedores_own_variables() {
    for (flags, says) in [
        (
            &["--allow-command", "no-such-program-here"][..],
            "--allow-command no-such-program-here: not found",
        ),
        (
            &["--command-env", "STEVEDORE_REDIS_PASSWORD"][..],
            "--command-env STEVEDORE_REDIS_PASSWORD",
        ),
    ] {
        // Redis is unreachable: a worker that does not refuse at once waits for it.
        let mut worker = std::process::Command::new(test_worker_bin!())
            .args(["--redis-url", "redis://127.0.0.1:1", "--node", "c"])
            .args(flags)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = stevedore_tests::exit_within(&mut worker, WAIT)
            .unwrap_or_else(|| panic!("the worker started with {flags:?} instead of refusing to"));
        let output = worker.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!status.success() && stderr.contains(says), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanly_stopped_processes_leave_no_consumer_in_their_groups() {
    let redis = RedisServer::start();
    for _ in 0..3 {
        let mut worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
        worker.signal(Signal::SIGTERM);
        assert!(worker.wait_exit(WAIT).success());
    }
    let mut conn = redis.connection().await;
    for (stream, group) in [
        (stevedore_tests::stream_of("default"), "workers".to_owned()),
        (
            stevedore_tests::keys().stream(&stevedore::Destination::Broadcast),
            "node:w".to_owned(),
        ),
    ] {
        let consumers: Vec<redis::Value> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&stream)
            .arg(&group)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(consumers.is_empty(), "{stream} {group}: {consumers:?}");
    }
}
