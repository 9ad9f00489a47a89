//! Testing without Redis: `Client::fake()` keeps what is published, in order, from `#[task]`
//! stubs, `publish_many` and workflows alike, and what needs Redis fails at once in one line;
//! `Client::inline()` runs each task as it is published (retries, tasks published by tasks).

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::time::{Duration, Instant};

use stevedore::{Client, PublishOptions, Workflow};
use stevedore_tests::tasks;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_client_keeps_what_stubs_publish_many_and_workflows_publish_in_order() {
    let client = Client::fake();
    assert!(client.is_fake() && client.published().is_empty());
    let handle = tasks::add::delay(&client, 1, 2).await.unwrap();
    let options = PublishOptions::new().queue("mail").retries(3);
    tasks::add::apply_async(&client, (3, 4), options)
        .await
        .unwrap();
    let many = (0..2)
        .map(|n| {
            Client::message(
                "tests.echo_any",
                vec![n.into()],
                Default::default(),
                &PublishOptions::new(),
            )
            .unwrap()
        })
        .collect();
    client.publish_many(many).await.unwrap();
    let chain = Workflow::chain([tasks::add::sig((5, 6)), tasks::add::partial((7,))]);
    client.submit(chain).await.unwrap();
    let published = client.published();
    let tasks: Vec<&str> = published.iter().map(|m| m.task.as_str()).collect();
    assert_eq!(
        tasks,
        [
            "tests.add",
            "tests.add",
            "tests.echo_any",
            "tests.echo_any",
            "tests.add",
            "tests.add"
        ]
    );
    assert_eq!(published[0].id, handle.id());
    assert_eq!(
        published[0].args,
        [rmpv::Value::from(1), rmpv::Value::from(2)]
    );
    assert_eq!(
        (published[1].queue.as_str(), published[1].retries),
        ("mail", Some(3))
    );
    client.clear();
    assert!(client.published().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_client_checks_what_a_real_one_checks_and_never_pretends_a_task_ran() {
    let client = Client::fake();
    let bad = Client::message(
        "tests.add",
        vec![],
        Default::default(),
        &PublishOptions::new().queue("bad name"),
    );
    assert!(
        bad.is_err(),
        "a bad queue name is refused before anything is kept"
    );
    let handle = tasks::add::delay(&client, 1, 2).await.unwrap();
    let started = Instant::now();
    let error = handle
        .get(Duration::from_secs(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fails at once, never waits"
    );
    assert!(
        error.contains("this is a fake client") && !error.contains('\n'),
        "{error}"
    );
    assert!(handle.progress().await.is_err() && handle.record().await.is_err());
    assert!(client.admin().queues().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_client_runs_each_task_at_once_with_retries_and_the_tasks_it_publishes() {
    let client = Client::inline();
    let sum = tasks::add::delay(&client, 2, 3).await.unwrap();
    assert_eq!(sum.get(Duration::from_secs(1)).await.unwrap(), 5);
    // A task that publishes a task: the child ran before the parent's handle came back.
    let parent = tasks::spawn_add::delay(&client, 41).await.unwrap();
    let child_id = parent.get(Duration::from_secs(1)).await.unwrap();
    let child = client.handle::<i64>(child_id.as_str());
    assert_eq!(child.get(Duration::from_secs(1)).await.unwrap(), 42);
    // Retries run at once; out of them, dead, and `get` says so.
    let flaky = tasks::flaky::delay(&client).await.unwrap();
    let error = flaky.get(Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(error, stevedore::Error::Task(_)), "{error}");
    let record = flaky.record().await.unwrap();
    assert_eq!(record.state(), stevedore::TaskState::Dead);
    assert_eq!(
        record.attempts.len(),
        4,
        "the first attempt and three retries"
    );
    // A fatal error fails at once; an unknown task fails with a reason.
    let join = tasks::join::delay(&client, vec![], ",".into())
        .await
        .unwrap();
    let record = join.record().await.unwrap();
    assert_eq!(
        (record.state(), record.attempts.len()),
        (stevedore::TaskState::Failed, 0)
    );
    let unknown = Client::message(
        "no.such.task",
        vec![],
        Default::default(),
        &PublishOptions::new(),
    );
    let unknown = client.publish(unknown.unwrap()).await.unwrap();
    let run = unknown.record().await.unwrap();
    assert!(run
        .task_run()
        .unwrap()
        .error
        .as_deref()
        .unwrap()
        .contains("unknown task"));
    assert_eq!(
        client.published().len(),
        6,
        "every published message is kept too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_client_runs_workflows_to_their_end_with_the_workers_rules() {
    let client = Client::inline();
    let chain = Workflow::chain([
        tasks::add::sig((1, 2)),
        tasks::add::partial((10,)),
        tasks::add::partial((100,)),
    ]);
    let handle = client.submit(chain).await.unwrap();
    assert_eq!(
        handle.wait(Duration::from_secs(1)).await.unwrap(),
        rmpv::Value::from(113)
    );
    let group = Workflow::group([
        Workflow::chain([tasks::add::sig((1, 2)), tasks::add::partial((3,))]),
        Workflow::group([tasks::add::sig((0, 1)), tasks::add::sig((0, 2))]),
        Workflow::chord(
            [tasks::add::sig((1, 1)), tasks::add::sig((2, 2))],
            tasks::identity::partial(()),
        ),
    ]);
    let result = client
        .submit(group)
        .await
        .unwrap()
        .wait(Duration::from_secs(1))
        .await
        .unwrap();
    let json = serde_json::to_value(&result).unwrap();
    assert_eq!(json, serde_json::json!([6, [1, 2], [2, 4]]));
    // A failed step stops its chain, fails the workflow and runs its on_failure link.
    let failing = Workflow::chain([
        tasks::join::sig((vec![], ",".to_owned())),
        tasks::add::partial((1,)),
    ])
    .on_failure(tasks::identity::partial(()));
    let handle = client.submit(failing).await.unwrap();
    let error = handle
        .wait(Duration::from_secs(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("tests.join") && error.contains("nothing to join"),
        "{error}"
    );
    assert_eq!(handle.status().await.unwrap(), "failed");
    assert!(client.workflow("never-submitted").status().await.is_err());
}
