//! A message built by hand from docs/protocol.md alone, as another language would, is decoded
//! and run.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::time::Duration;

use rmpv::Value;
use stevedore::{Message, TaskState};
use stevedore_tests::{test_worker_bin, RedisServer, WorkerProcess};

/// The map of docs/protocol.md's example, built with MessagePack primitives only.
fn hand_built(id: &str) -> Vec<u8> {
    let s = |text: &str| Value::from(text);
    let map = Value::Map(vec![
        (s("v"), Value::from(1)),
        (s("id"), s(id)),
        (s("task"), s("stevedore.echo")),
        (s("args"), Value::Array(vec![Value::from(1), s("two")])),
        (s("kwargs"), Value::Map(vec![])),
        (s("queue"), s("default")),
        (s("published_at"), Value::from(1_767_225_600_000u64)),
        (s("headers"), Value::Map(vec![(s("notify"), s("1"))])),
    ]);
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &map).unwrap();
    bytes
}

#[test]
fn hand_built_message_decodes() {
    let id = "0b7c1b0e-6a8e-4a43-9d1b-1f5f6f2f0a11";
    let message = Message::decode(&hand_built(id)).unwrap();
    assert_eq!(message.id, id);
    assert_eq!(message.task, "stevedore.echo");
    assert_eq!(message.args, vec![Value::from(1), Value::from("two")]);
    assert_eq!(message.queue, "default");
    assert_eq!(
        (message.retries, message.tried, message.eta, message.timeout),
        (None, 0, None, None)
    );
    assert!(message.wants_notify());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_built_message_is_run_and_its_record_reads_as_documented() {
    let redis = RedisServer::start();
    let _worker = WorkerProcess::start(test_worker_bin!(), &redis, "w", &[]);
    let id = uuid::Uuid::new_v4().to_string();
    let mut conn = redis.connection().await;
    let _: String = redis::cmd("XADD")
        .arg("stevedore:{q:default}:stream")
        .arg("*")
        .arg("m")
        .arg(hand_built(&id))
        .query_async(&mut conn)
        .await
        .unwrap();

    let client = redis.stevedore().await;
    let record = client
        .handle::<rmpv::Value>(&id)
        .wait(Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(record.state(), TaskState::Succeeded);

    // The record, read as another language would: a hash field `task` holding the compact
    // array of section 3 (task, queue, node, state, attempt, published_at, started and
    // finished in ms after it, result).
    let raw: Vec<u8> = redis::cmd("HGET")
        .arg(format!("stevedore:{{t:{id}}}:record"))
        .arg("task")
        .query_async(&mut conn)
        .await
        .unwrap();
    let Value::Array(fields) = rmpv::decode::read_value(&mut raw.as_slice()).unwrap() else {
        panic!("a run record is an array");
    };
    assert_eq!(
        fields.len(),
        9,
        "trailing nils (error, retry_at) left out: {fields:?}"
    );
    assert_eq!(fields[0], Value::from("stevedore.echo"));
    assert_eq!(fields[1], Value::from("default"));
    assert_eq!(fields[2], Value::from("w"));
    assert_eq!(fields[3], Value::from("succeeded"));
    assert_eq!(fields[4], Value::from(1));
    assert_eq!(fields[5], Value::from(1_767_225_600_000u64));
    let (started, finished) = (fields[6].as_u64().unwrap(), fields[7].as_u64().unwrap());
    assert!(
        started <= finished,
        "offsets from published_at: {started} <= {finished}"
    );
    assert_eq!(
        fields[8],
        Value::Array(vec![Value::from(1), Value::from("two")])
    );
}
