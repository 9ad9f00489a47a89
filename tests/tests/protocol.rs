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

    // The record, read as another language would: a hash field `task` holding a map.
    let raw: Vec<u8> = redis::cmd("HGET")
        .arg(format!("stevedore:{{t:{id}}}:record"))
        .arg("task")
        .query_async(&mut conn)
        .await
        .unwrap();
    let Value::Map(fields) = rmpv::decode::read_value(&mut raw.as_slice()).unwrap() else {
        panic!("a run record is a map");
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(field("state"), Some(Value::from("succeeded")));
    assert_eq!(field("node"), Some(Value::from("w")));
    assert_eq!(
        field("result"),
        Some(Value::Array(vec![Value::from(1), Value::from("two")]))
    );
}
