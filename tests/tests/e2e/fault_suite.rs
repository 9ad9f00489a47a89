//! The fault suite: 20,000 tasks published while worker processes are SIGKILLed and restarted
//! at random and redis-server (AOF on) is restarted twice. At the end every task has succeeded,
//! none is lost or stuck, and a task ran more than once only if a killed process had run it.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use stevedore::{PublishOptions, RunRecord, TaskState};
use stevedore_tests::{
    eventually, pending, ran_on, stream_len, tasks, test_worker_bin, try_runs, RedisServer,
    WorkerProcess,
};

const TASKS: usize = 20_000;
const BATCH: usize = 500;
const WORKERS: usize = 3;
const ARGS: [&str; 6] = [
    "--heartbeat",
    "200ms",
    "--lost-after",
    "1s",
    "--max-workers",
    "16",
];

/// A small deterministic generator, so a failing run can be replayed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

struct Fleet {
    workers: Vec<(String, WorkerProcess)>,
    killed: HashSet<String>,
    starts: usize,
}

impl Fleet {
    fn start(&mut self, redis: &RedisServer, slot: usize) -> (String, WorkerProcess) {
        self.starts += 1;
        let name = format!("w{slot}-{}", self.starts);
        let worker = WorkerProcess::start(test_worker_bin!(), redis, &name, &ARGS);
        (name, worker)
    }

    fn kill_and_replace(&mut self, redis: &RedisServer, slot: usize) {
        let (name, mut worker) = self.workers.remove(slot);
        worker.signal(Signal::SIGKILL);
        worker.wait_exit(Duration::from_secs(10));
        self.killed.insert(name);
        let replacement = self.start(redis, slot);
        self.workers.insert(slot, replacement);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_tasks_survive_sigkills_and_redis_restarts() {
    let began = Instant::now();
    let mut redis = RedisServer::start_with_aof();
    let mut fleet = Fleet {
        workers: Vec::new(),
        killed: HashSet::new(),
        starts: 0,
    };
    for slot in 0..WORKERS {
        let worker = fleet.start(&redis, slot);
        fleet.workers.push(worker);
    }
    let mut dice = Dice(0x5eed_cafe_f00d);
    let mut client = redis.stevedore().await;
    let mut ids = Vec::with_capacity(TASKS);
    let mut restarts = 0;
    for batch in 0..TASKS / BATCH {
        let messages = (0..BATCH)
            .map(|_| tasks::count_run::message((), &PublishOptions::new().retries(20)))
            .collect::<stevedore::Result<Vec<_>>>()
            .unwrap();
        ids.extend(messages.iter().map(|m| m.id.clone()));
        client.publish_many(messages).await.unwrap();
        if dice.roll(4) == 0 {
            let slot = dice.roll(WORKERS as u64) as usize;
            fleet.kill_and_replace(&redis, slot);
        }
        if batch == 13 || batch == 26 {
            redis.restart();
            restarts += 1;
            client = eventually(
                "a client after the restart",
                Duration::from_secs(20),
                || async {
                    stevedore::Client::connect(&redis.url(), "stevedore")
                        .await
                        .ok()
                },
            )
            .await;
        }
    }
    // One more kill while the last tasks run.
    fleet.kill_and_replace(&redis, 0);

    let mut conn = redis.connection().await;
    let counted = eventually("every task to run", Duration::from_secs(240), || {
        let mut conn = conn.clone();
        async move { try_runs(&mut conn).await.filter(|r| r.len() == TASKS) }
    })
    .await;
    eventually(
        "every queue to be empty and nothing pending",
        Duration::from_secs(60),
        || {
            let mut conn = conn.clone();
            async move {
                let queue = &stevedore_tests::stream_of("default");
                let idle = stream_len(&mut conn, queue).await == 0
                    && pending(&mut conn, queue, "workers").await == 0;
                idle.then_some(())
            }
        },
    )
    .await;
    let records = records(&mut conn, &ids).await;
    let succeeded = records
        .values()
        .filter(|r| r.state == TaskState::Succeeded)
        .count();
    let missing = ids.len() - records.len();

    let mut ran_where: HashMap<String, Vec<String>> = HashMap::new();
    let mut nodes: Vec<String> = fleet.killed.iter().cloned().collect();
    nodes.extend(fleet.workers.iter().map(|(name, _)| name.clone()));
    for node in &nodes {
        for id in ran_on(&mut conn, node).await {
            ran_where.entry(id).or_default().push(node.clone());
        }
    }
    let twice: Vec<&String> = counted
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    let unexplained: Vec<&&String> = twice
        .iter()
        .filter(|id| {
            !ran_where[**id]
                .iter()
                .any(|node| fleet.killed.contains(node))
        })
        .collect();

    writeln!(
        std::io::stderr().lock(),
        "fault suite: {TASKS} published, {succeeded} succeeded, {missing} without a record, \
         {} ran more than once (all on a killed process: {}), {} workers killed, {restarts} Redis restarts, {:?}",
        twice.len(),
        unexplained.is_empty(),
        fleet.killed.len(),
        began.elapsed()
    )
    .unwrap();
    assert_eq!(missing, 0, "tasks without a record");
    assert_eq!(succeeded, TASKS, "tasks not succeeded");
    assert!(
        unexplained.is_empty(),
        "ran twice without a kill: {unexplained:?}"
    );
    assert!(fleet.killed.len() >= 2, "the suite must kill workers");
}

/// The `task` run record of each id.
async fn records(
    conn: &mut redis::aio::MultiplexedConnection,
    ids: &[String],
) -> HashMap<String, RunRecord> {
    let mut found = HashMap::new();
    for chunk in ids.chunks(1000) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("HGET")
                .arg(stevedore_tests::keys().record(id))
                .arg("task");
        }
        let values: Vec<Option<Vec<u8>>> = pipe.query_async(conn).await.unwrap();
        for (id, bytes) in chunk.iter().zip(values) {
            if let Some(run) = bytes.and_then(|b| RunRecord::decode(id, &b).ok()) {
                found.insert(id.clone(), run);
            }
        }
    }
    found
}
