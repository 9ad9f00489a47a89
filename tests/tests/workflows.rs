//! Workflows against a real redis-server and worker processes: results flow through chains,
//! groups and chords; links run on success, failure and always; a chord's callback runs
//! exactly once while workers are SIGKILLed; a cancelled workflow publishes nothing more.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::time::Duration;

use stevedore::{PublishOptions, Signature, Workflow};
use stevedore_tests::{tasks, test_worker_bin, RedisServer, WorkerProcess};

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
