//! Workflows against a real redis-server and worker processes: results flow through chains,
//! groups and chords; links run on success, failure and always; a chord's callback runs
//! exactly once while workers are SIGKILLed; a cancelled workflow publishes nothing more.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::time::Duration;

use nix::sys::signal::Signal;
use stevedore::{Error, PublishOptions, Workflow};
use stevedore_tests::{
    eventually, keys, run_cli, tasks, test_admin_bin, test_worker_bin, RedisServer, WorkerProcess,
};

const WAIT: Duration = Duration::from_secs(60);

/// Two worker processes on `redis`, reaping each other quickly.
fn two_workers(redis: &RedisServer) -> Vec<WorkerProcess> {
    let args = ["--heartbeat", "200ms", "--lost-after", "1s"];
    (0..2)
        .map(|n| WorkerProcess::start(test_worker_bin!(), redis, &format!("wf{n}"), &args))
        .collect()
}

fn int(value: &rmpv::Value) -> i64 {
    value.as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_passes_each_result_first_to_the_next_step() {
    let redis = RedisServer::start();
    let _workers = two_workers(&redis);
    let client = redis.stevedore().await;
    let chain = Workflow::chain([
        tasks::add::sig((1, 2)),
        tasks::add::partial((10,)),
        tasks::add::partial((100,)),
    ]);
    let handle = client.submit(chain).await.unwrap();
    assert_eq!(int(&handle.wait(WAIT).await.unwrap()), 113);
    assert_eq!(handle.status().await.unwrap(), "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_chords_nest_and_a_group_returns_its_members_results_in_order() {
    let redis = RedisServer::start();
    let _workers = two_workers(&redis);
    let client = redis.stevedore().await;
    let workflow = Workflow::group([
        Workflow::chain([tasks::add::sig((1, 2)), tasks::add::partial((3,))]),
        Workflow::group([tasks::add::sig((0, 1)), tasks::add::sig((0, 2))]),
        Workflow::chord(
            [tasks::add::sig((1, 1)), tasks::add::sig((2, 2))],
            tasks::total::partial(()),
        ),
        Workflow::chain([
            Workflow::group([tasks::add::sig((5, 5)), tasks::add::sig((6, 6))]),
            tasks::total::partial(()).into(),
            tasks::add::partial((1,)).into(),
        ]),
    ]);
    let result = client
        .submit(workflow)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    let json = serde_json::to_value(&result).unwrap();
    assert_eq!(json, serde_json::json!([6, [1, 2], 6, 23]));
}

/// The JSON lines `tests.keep_input` kept under `key`.
async fn inputs(redis: &RedisServer, key: &str) -> Vec<serde_json::Value> {
    let mut conn = redis.connection().await;
    let lines: Vec<String> = redis::cmd("LRANGE")
        .arg(format!("tests:input:{key}"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn keep(key: &str) -> stevedore::Signature {
    tasks::keep_input::partial((key.to_owned(),))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_run_on_success_on_failure_and_always_with_what_the_step_ended_with() {
    let redis = RedisServer::start();
    let _workers = two_workers(&redis);
    let client = redis.stevedore().await;
    let succeeding = tasks::add::sig((1, 2))
        .on_success(keep("ok"))
        .on_failure(keep("ok-failure"))
        .always(keep("ok-always"));
    let result = client
        .submit(succeeding)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap();
    assert_eq!(result.as_i64(), Some(3), "a step's links leave its result");
    assert_eq!(inputs(&redis, "ok").await, [serde_json::json!(3)]);
    assert_eq!(
        inputs(&redis, "ok-failure").await,
        Vec::<serde_json::Value>::new()
    );
    assert_eq!(
        inputs(&redis, "ok-always").await,
        [serde_json::json!({"state": "succeeded", "result": 3})]
    );

    let failing = Workflow::chain([
        tasks::join::sig((vec![], "-".to_owned()))
            .on_success(keep("bad-success"))
            .on_failure(keep("bad"))
            .always(keep("bad-always")),
        tasks::add::partial((1,)).into(),
    ]);
    let handle = client.submit(failing).await.unwrap();
    let error = handle.wait(WAIT).await.unwrap_err();
    assert!(
        matches!(&error, Error::WorkflowFailed { status, error, .. }
            if status == "failed" && error.contains("nothing to join")),
        "{error}"
    );
    let failure = serde_json::json!({
        "step": 1, "task": "tests.join", "id": failure_id(&handle).await,
        "state": "failed", "error": "nothing to join",
    });
    assert_eq!(inputs(&redis, "bad").await, std::slice::from_ref(&failure));
    assert_eq!(
        inputs(&redis, "bad-always").await,
        [serde_json::json!({"state": "failed", "error": failure})]
    );
    assert_eq!(
        inputs(&redis, "bad-success").await,
        Vec::<serde_json::Value>::new()
    );
    let view = handle.show().await.unwrap();
    assert_eq!(
        view.root.children[1].state, "not started",
        "a chain stops at a failure"
    );
}

/// The task id of the failed step of `handle`'s chain.
async fn failure_id(handle: &stevedore::WorkflowHandle) -> String {
    let view = handle.show().await.unwrap();
    view.root.children[0].id.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_step_continues_its_chain_once_with_the_retry_s_result() {
    let redis = RedisServer::start();
    let _workers = two_workers(&redis);
    let client = redis.stevedore().await;
    let chain = Workflow::chain([tasks::fail_times::sig((1,)), keep("retried")]);
    let handle = client.submit(chain).await.unwrap();
    handle.wait(WAIT).await.unwrap();
    assert_eq!(inputs(&redis, "retried").await, [serde_json::json!(2)]);
}

/// How many times `tests.total` ran, any id (`tests:totals`); `None`: never.
async fn totals(redis: &RedisServer) -> Option<i64> {
    let mut conn = redis.connection().await;
    redis::cmd("GET")
        .arg("tests:totals")
        .query_async(&mut conn)
        .await
        .unwrap()
}

async fn outstanding(redis: &RedisServer, workflow: &str) -> i64 {
    let mut conn = redis.connection().await;
    redis::cmd("HGET")
        .arg(keys().workflow_state(workflow))
        .arg("o")
        .query_async::<Option<i64>>(&mut conn)
        .await
        .unwrap()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chord_of_a_thousand_runs_its_callback_exactly_once_while_workers_are_sigkilled() {
    let redis = RedisServer::start();
    let args = ["--heartbeat", "200ms", "--lost-after", "1s"];
    let start = |name: &str| WorkerProcess::start(test_worker_bin!(), &redis, name, &args);
    let mut workers = vec![start("chord-a"), start("chord-b")];
    let client = redis.stevedore().await;
    // A started run of a lost node is run again only if it has retries left (AWX's rule).
    let retried = PublishOptions::new().retries(3);
    let members = (0..1_000).map(|n| tasks::echo_after::sig((n, 20)).options(retried.clone()));
    let chord = Workflow::chord(members, tasks::total::partial(()));
    let handle = client.submit(chord).await.unwrap();
    for (round, below) in [(0, 800), (1, 400)] {
        let id = handle.id().to_owned();
        eventually("members to end", WAIT, || {
            let (redis, id) = (&redis, id.clone());
            async move { (outstanding(redis, &id).await < below).then_some(()) }
        })
        .await;
        let mut doomed = workers.remove(0);
        doomed.signal(Signal::SIGKILL);
        doomed.wait_exit(Duration::from_secs(10));
        workers.push(start(&format!("chord-{round}")));
    }
    let result = handle.wait(Duration::from_secs(120)).await.unwrap();
    assert_eq!(
        result.as_i64(),
        Some(499_500),
        "every member's result, once"
    );
    assert_eq!(
        totals(&redis).await,
        Some(1),
        "the callback ran exactly once"
    );
    let members = handle
        .show()
        .await
        .unwrap()
        .root
        .children
        .remove(0)
        .children;
    let mut run_again = 0;
    for member in members {
        let record = client.task(member.id.as_deref().unwrap()).await.unwrap();
        assert_eq!(record.state(), stevedore::TaskState::Succeeded);
        assert_eq!(member.state, "succeeded");
        run_again += usize::from(!record.attempts.is_empty());
    }
    // The kills hit members in flight: runs started and retried, or entries held and reaped
    // (a run killed before its start was recorded is queued again as it was, no attempt).
    let nodes = client.admin().nodes().await.unwrap();
    let reaped: u64 = nodes.iter().filter_map(|n| n.reaped).sum();
    assert!(
        run_again + reaped as usize > 0,
        "the SIGKILLs hit members in flight"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_workflow_cancels_its_running_step_and_starts_nothing_more() {
    let redis = RedisServer::start();
    let _workers = two_workers(&redis);
    let client = redis.stevedore().await;
    let chain = Workflow::chain([tasks::block::sig(()), tasks::count_run::sig(()).immutable()]);
    let handle = client.submit(chain).await.unwrap();
    let mut conn = redis.connection().await;
    let started: String = eventually("the first step to start", WAIT, || {
        let mut conn = conn.clone();
        async move {
            let first: Option<String> = redis::cmd("LINDEX")
                .arg("tests:started")
                .arg(0)
                .query_async(&mut conn)
                .await
                .ok()?;
            first
        }
    })
    .await;
    let cancelled = handle.cancel(Duration::from_secs(5)).await.unwrap();
    assert_eq!(cancelled, [started]);
    let error = handle.wait(WAIT).await.unwrap_err();
    assert!(
        matches!(&error, Error::WorkflowFailed { status, .. } if status == "cancelled"),
        "{error}"
    );
    let view = handle.show().await.unwrap();
    assert_eq!(view.root.children[0].state, "failed");
    assert_eq!(view.root.children[1].state, "not started");
    let runs: i64 = redis::cmd("HLEN")
        .arg("tests:runs")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(runs, 0, "nothing after the cancelled step ran");
    let again = handle.cancel(Duration::from_secs(1)).await.unwrap();
    assert!(
        again.is_empty(),
        "an ended workflow has nothing left to cancel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_submits_a_json_workflow_waits_for_it_and_shows_it() {
    let redis = RedisServer::start();
    let _workers = two_workers(&redis);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("workflow.json");
    let description = serde_json::json!({"chord": {
        "group": [
            {"task": "tests.add", "args": [1, 2]},
            {"chain": [{"task": "tests.add", "args": [1, 1]}, {"task": "tests.add", "args": [5]}]},
        ],
        "callback": {"task": "tests.total"},
    }});
    std::fs::write(&file, description.to_string()).unwrap();
    let url = redis.url();
    let output = run_cli(
        test_admin_bin!(),
        &url,
        &["workflow", "submit", file.to_str().unwrap(), "--wait"],
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[1], "10", "the callback's result last");

    let output = run_cli(
        test_admin_bin!(),
        &url,
        &["workflow", "show", lines[0], "--json"],
    );
    let view: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(view["status"], "succeeded");
    assert_eq!(view["root"]["kind"], "chord");
    assert_eq!(view["root"]["children"][0]["children"][1]["kind"], "chain");

    std::fs::write(
        &file,
        r#"{"chain": [{"task": "tests.add", "args": [1, 2], "eta": 5}]}"#,
    )
    .unwrap();
    let output = run_cli(
        test_admin_bin!(),
        &url,
        &["workflow", "submit", file.to_str().unwrap()],
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!output.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("workflow.chain[0]") && stderr.contains("eta"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_step_requeued_from_the_dead_letters_continues_its_failed_workflow() {
    let redis = RedisServer::start();
    let _workers = two_workers(&redis);
    let client = redis.stevedore().await;
    let fast = PublishOptions::new()
        .retries(1)
        .backoff(Duration::from_millis(1), Duration::from_millis(1));
    let chain = Workflow::chain([tasks::fail_times::sig((2,)).options(fast), keep("requeued")]);
    let handle = client.submit(chain).await.unwrap();
    let error = handle.wait(WAIT).await.unwrap_err();
    assert!(
        matches!(&error, Error::WorkflowFailed { status, .. } if status == "failed"),
        "{error}"
    );
    assert!(inputs(&redis, "requeued").await.is_empty());

    let output = run_cli(
        test_admin_bin!(),
        &redis.url(),
        &["dead", "requeue", "--all", "--queue", "default"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Ended once already: wait would return that failure, so poll the status.
    eventually("the workflow to succeed", WAIT, || async {
        (handle.status().await.unwrap() == "succeeded").then_some(())
    })
    .await;
    let result = handle.result().await.unwrap();
    assert_eq!(
        result,
        Some(rmpv::Value::Nil),
        "keep_input's result ends the chain"
    );
    assert_eq!(
        inputs(&redis, "requeued").await.len(),
        1,
        "the chain went on once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chord_with_a_failed_member_runs_its_error_handler_with_that_member_not_its_callback() {
    let redis = RedisServer::start();
    let _workers = two_workers(&redis);
    let client = redis.stevedore().await;
    let chord = Workflow::chord(
        [
            tasks::add::sig((1, 2)),
            tasks::join::sig((vec![], "-".to_owned())),
        ],
        tasks::total::partial(()),
    )
    .on_failure(keep("chord"));
    let handle = client.submit(chord).await.unwrap();
    let error = handle.wait(WAIT).await.unwrap_err();
    assert!(matches!(&error, Error::WorkflowFailed { .. }), "{error}");
    let view = handle.show().await.unwrap();
    let failed = &view.root.children[0].children[1];
    let handled = inputs(&redis, "chord").await;
    assert_eq!(handled.len(), 1, "{handled:?}");
    assert_eq!(handled[0]["task"], "tests.join");
    assert_eq!(handled[0]["id"], failed.id.clone().unwrap().as_str());
    assert_eq!(view.root.children[1].state, "not started", "no callback");
    assert_eq!(totals(&redis).await, None, "the callback never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_no_worker_takes_shows_waiting_and_an_unknown_task_fails_its_step() {
    let redis = RedisServer::start();
    let _workers = two_workers(&redis);
    let client = redis.stevedore().await;
    let nowhere = stevedore::PublishOptions::new().queue("nobody-reads-this");
    let stuck = Workflow::chain([
        tasks::add::sig((1, 2)),
        tasks::add::partial((3,)).options(nowhere),
    ]);
    let handle = client.submit(stuck).await.unwrap();
    let view = eventually("the second step to be published", WAIT, || async {
        let view = handle.show().await.unwrap();
        (view.root.children[1].state == "waiting").then_some(view)
    })
    .await;
    assert_eq!(view.status, "running");
    assert_eq!(view.root.children[0].state, "succeeded");
    assert!(view.render().contains("[waiting]"), "{}", view.render());

    let unknown = Workflow::chain([
        tasks::add::sig((1, 2)),
        stevedore::Signature::new("tests.no_such_task", vec![], Default::default()),
    ]);
    let error = client
        .submit(unknown)
        .await
        .unwrap()
        .wait(WAIT)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unknown task tests.no_such_task"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_only_carries_a_steps_header_does_not_join_the_workflow() {
    let redis = RedisServer::start();
    let _workers = two_workers(&redis);
    let client = redis.stevedore().await;
    let chain = Workflow::chain([
        tasks::echo_after::sig((7, 1_500)),
        tasks::add::partial((10,)),
    ]);
    let handle = client.submit(chain).await.unwrap();
    // Step 1 is the chain's first task; a copied or forged header names it.
    let forged = PublishOptions::new()
        .notify(true)
        .header("workflow", format!("{}:1", handle.id()));
    let forger = tasks::add::apply_async(&client, (1_000, 0), forged)
        .await
        .unwrap();
    assert_eq!(
        forger.get(WAIT).await.unwrap(),
        1_000,
        "it runs as a plain task"
    );
    assert_eq!(
        int(&handle.wait(WAIT).await.unwrap()),
        17,
        "the step's own result flows on, not the forger's"
    );
}
