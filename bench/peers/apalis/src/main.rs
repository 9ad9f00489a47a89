//! apalis-redis draining no-ops, for `bench/peers/run.sh` (issue 22, point 6; not built by CI).
//!
//!     stevedore-peer-apalis push URL N   # queues N no-ops
//!     stevedore-peer-apalis work URL     # one worker process, until killed
//!
//! As the Python peers: each task INCRs `peers:done`, so `peers.py` knows the end without a
//! result backend. apalis-redis 0.7 with its defaults (fetches of 10, 100 ms polls), namespace
//! `noop`. Not 1.0: its pushes all go to the scheduled set, and its fetch script promotes every
//! due one with one `unpack`, which Lua refuses past about 8,000 ("too many results to
//! unpack"): a 1.0 worker fails on any backlog this size.

use std::sync::OnceLock;

use apalis::prelude::*;
use apalis_redis::{Config, RedisStorage};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

/// The no-op task's arguments.
#[derive(Debug, Serialize, Deserialize)]
struct Noop {}

/// The connection the tasks count themselves on.
static DONE: OnceLock<ConnectionManager> = OnceLock::new();

async fn noop(_: Noop) -> Result<(), BoxDynError> {
    let mut conn = DONE.get().ok_or("no connection")?.clone();
    redis::cmd("INCR")
        .arg("peers:done")
        .query_async::<()>(&mut conn)
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxDynError> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: stevedore-peer-apalis push URL N | work URL";
    let (mode, url) = match (args.get(1), args.get(2)) {
        (Some(mode), Some(url)) => (mode.as_str(), url.as_str()),
        _ => return Err(usage.into()),
    };
    let conn = apalis_redis::connect(url).await?;
    // PEERS_APALIS_BUFFER / PEERS_APALIS_POLL_MS tune the fetch; unset, apalis's defaults.
    let mut config = Config::default().set_namespace("noop");
    if let Ok(buffer) = std::env::var("PEERS_APALIS_BUFFER") {
        config = config.set_buffer_size(buffer.parse()?);
    }
    if let Ok(poll) = std::env::var("PEERS_APALIS_POLL_MS") {
        config = config.set_poll_interval(std::time::Duration::from_millis(poll.parse()?));
    }
    let mut storage: RedisStorage<Noop> = RedisStorage::new_with_config(conn.clone(), config);
    match mode {
        "push" => {
            let n: usize = args.get(3).ok_or(usage)?.parse()?;
            for _ in 0..n {
                storage.push(Noop {}).await?;
            }
        }
        "work" => {
            DONE.set(conn).map_err(|_| "set twice")?;
            let name = format!("peer-{}", std::process::id());
            Monitor::new()
                .register(WorkerBuilder::new(name).backend(storage).build_fn(noop))
                .run()
                .await?;
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
