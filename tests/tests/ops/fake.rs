//! `Client::fake()`: code that publishes is tested with no Redis at all; what it publishes is
//! kept in order, from `#[task]` stubs, `publish_many` and workflows alike; what needs Redis
//! fails at once in one line.

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
