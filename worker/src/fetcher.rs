//! The fetcher: reads messages from Redis streams through a consumer group.
//!
//! 1. Owns dedicated connections, so its blocking read never stalls other commands: one on a
//!    single server; on a cluster one per slot its streams live in ("lanes"), blocking on all
//!    at once and waking the others when one answers.
//! 2. Queue mode: reads only as many messages as the node has free units (divided by the
//!    heaviest impact of the last read), trying the streams in priority order without
//!    blocking first (a round trip per stream; more than a few streams on one connection in
//!    one script that takes the count in all from the first streams with entries), then
//!    blocking on all of them at once.
//! 3. Broadcast mode: reads the broadcast log through the node's own group; each broadcast waits
//!    for a free unit here, since no other node can run it for this one.
//! 4. Hands every message to the executor with its units of the node's capacity (waiting for
//!    them in line: see `capacity`); never drops one it read; reads nothing more while too
//!    many entries wait for their outcome to be written (backpressure).
//! 5. Survives Redis errors: drops the connection, backs off (capped), reconnects, re-creates
//!    its groups; logs once per state change.
//! 6. Stops at once when shut down: `CLIENT UNBLOCK` ends the block as a timeout, so a
//!    stop never strands a message that Redis handed out.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use stevedore::broker::{Broker, ClientId, Connection, Delivery, GroupStart};
use stevedore::Destination;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use stevedore_runtime::Backoff;

use crate::activity::Activity;
use crate::capacity::Capacity;
use crate::executor::Executor;
use crate::pause::PauseGate;
use crate::priority::{Priorities, QueueSpec};

/// What one fetcher reads.
#[derive(Debug)]
pub struct FetcherConfig {
    /// The consumer group it reads through.
    pub group: String,
    /// Its consumer name: unique per process start.
    pub consumer: String,
    /// Streams always tried first (the node's own queue).
    pub first: Vec<Destination>,
    /// The other streams, in strict or weighted order.
    pub shared: Vec<QueueSpec>,
    /// Where the group starts when it is created.
    pub start: GroupStart,
    /// Read only as many as there are free units (queues), or a fixed batch (broadcasts).
    pub mode: FetchMode,
    /// Longest server-side block of one read.
    pub block: Duration,
    /// Read nothing more while this many entries are read and not settled (backpressure).
    pub max_unsettled: usize,
}

/// How many messages one read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchMode {
    /// As many as the node has free units, at least one (waits for one first).
    FreeUnits,
    /// Up to this many; each then waits for a unit.
    Batch(usize),
}

/// Reads one set of streams and hands what it reads to the executor.
pub struct Fetcher {
    config: FetcherConfig,
    priorities: Mutex<Priorities>,
    broker: Broker,
    capacity: Arc<Capacity>,
    /// The heaviest impact in the last read: the next read asks for that many fewer.
    heaviest: AtomicU32,
    executor: Executor,
    gate: Arc<PauseGate>,
    activity: Arc<Activity>,
}

/// One connection of a fetcher and the streams it reads through it: every stream on a single
/// server, or the streams of one cluster slot.
struct Lane {
    streams: Vec<Destination>,
    conn: Connection,
    client: ClientId,
}

/// The lane that reads `stream`.
fn lane_of(lanes: &[Lane], stream: &Destination) -> usize {
    lanes
        .iter()
        .position(|lane| lane.streams.contains(stream))
        .unwrap_or(0)
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Up to this many streams in a row on one connection are read one round trip each in the
/// non-blocking pass; more go in one script. A script hands every entry back through Lua,
/// which costs Redis about 2 us per entry: more than the round trips save when the streams
/// are few (BENCHMARKS.md, "Performance II").
const FEW_STREAMS: usize = 4;

/// How one read of the non-blocking pass goes.
enum Pass {
    /// One `XREADGROUP` of the streams (each may give up to the count).
    Together,
    /// `read_in_order.lua`: the count in all, from the first streams with entries.
    InOrder,
}

impl Fetcher {
    /// A fetcher sharing the node's `capacity` with the other fetchers, reading only queues
    /// the `gate` does not hold paused.
    pub fn new(
        config: FetcherConfig,
        broker: Broker,
        capacity: Arc<Capacity>,
        executor: Executor,
        gate: Arc<PauseGate>,
        activity: Arc<Activity>,
    ) -> Self {
        Self {
            priorities: Mutex::new(Priorities::new(&config.shared)),
            config,
            broker,
            capacity,
            heaviest: AtomicU32::new(1),
            executor,
            gate,
            activity,
        }
    }

    /// Reads until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(100), MAX_BACKOFF);
        let mut failing = false;
        while !stop.is_cancelled() {
            match self.session(&stop).await {
                Ok(()) => break,
                Err(error) => {
                    if !failing {
                        tracing::warn!(group = %self.config.group, %error, "fetching stopped; reconnecting");
                        crate::observe::reconnect("fetcher");
                        failing = true;
                    }
                    if !backoff.wait(&stop).await {
                        break;
                    }
                }
            }
        }
    }

    /// One connection's life: connect, make sure the groups exist, read until stopped or an
    /// error.
    async fn session(&self, stop: &CancellationToken) -> stevedore::Result<()> {
        let mut lanes = self.open_lanes().await?;
        let clients: Vec<ClientId> = lanes.iter().map(|lane| lane.client.clone()).collect();
        self.gate.register(&self.config.group, clients.clone());
        for stream in &self.streams() {
            self.broker
                .ensure_group(stream, &self.config.group, self.config.start)
                .await?;
        }
        for lane in &mut lanes {
            self.recover_own(lane).await?;
        }
        tracing::info!(group = %self.config.group, streams = self.streams().len(), connections = lanes.len(), "fetching");
        self.activity.fetcher_up(true);
        let broker = self.broker.clone();
        let waker = stop.clone();
        let unblocker = tokio::spawn(async move {
            waker.cancelled().await;
            for client in &clients {
                if let Err(error) = broker.unblock(client).await {
                    tracing::debug!(%error, "could not unblock the fetcher's read");
                }
            }
        });
        let result = self.read_loop(&mut lanes, stop).await;
        unblocker.abort();
        self.activity.fetcher_up(false);
        result
    }

    /// One connection per cluster slot its streams live in (one in all on a single server),
    /// since a blocking read of several streams must stay within one slot.
    async fn open_lanes(&self) -> stevedore::Result<Vec<Lane>> {
        let groups = self.broker.blocking_lanes(self.streams());
        let mut lanes = Vec::with_capacity(groups.len());
        for streams in groups {
            let mut conn = self
                .broker
                .dedicated_connection(self.config.block, &self.config.group)
                .await?;
            let key = self.broker.keys().stream(&streams[0]);
            let client = self.broker.client_id(&mut conn, &key).await?;
            lanes.push(Lane {
                streams,
                conn,
                client,
            });
        }
        Ok(lanes)
    }

    async fn read_loop(
        &self,
        lanes: &mut [Lane],
        stop: &CancellationToken,
    ) -> stevedore::Result<()> {
        while !stop.is_cancelled() {
            let below = self
                .executor
                .in_flight()
                .wait_below(self.config.max_unsettled);
            tokio::select! {
                () = below => {}
                () = stop.cancelled() => return Ok(()),
            }
            if self.activity.stopped_taking_work() {
                // Told to yield to newer peers: read nothing more; look again now and then.
                tokio::select! {
                    () = tokio::time::sleep(self.config.block) => continue,
                    () = stop.cancelled() => return Ok(()),
                }
            }
            let first = match self.config.mode {
                FetchMode::FreeUnits => match self.first_unit(stop).await {
                    Some(unit) => Some(unit),
                    None => return Ok(()),
                },
                FetchMode::Batch(_) => None,
            };
            let paused = self.gate.read().await;
            let streams: Vec<Destination> = self
                .read_order()
                .into_iter()
                .filter(|s| !paused.contains(&s.base_wire_name()))
                .collect();
            if streams.is_empty() {
                let mut resumed = std::pin::pin!(self.gate.on_change());
                resumed.as_mut().enable();
                drop((paused, first));
                tokio::select! {
                    () = resumed => continue,
                    () = stop.cancelled() => return Ok(()),
                }
            }
            let read = self.read(lanes, &streams, first.is_some(), stop).await;
            drop(paused);
            let Some(deliveries) = read? else {
                return Ok(());
            };
            self.dispatch(deliveries, first).await;
        }
        Ok(())
    }

    /// Runs again this consumer's own pending entries that are not being worked on: a read
    /// whose reply was lost (a dropped connection, a Redis restart) left them on its name.
    async fn recover_own(&self, lane: &mut Lane) -> stevedore::Result<()> {
        let (group, consumer) = (&self.config.group, &self.config.consumer);
        for stream in &lane.streams {
            let pending = self
                .broker
                .read_own_pending(&mut lane.conn, group, consumer, stream, 10_000)
                .await?;
            let orphans: Vec<Delivery> = pending
                .into_iter()
                .filter(|d| {
                    !self
                        .executor
                        .in_flight()
                        .contains(&d.destination, &d.entry_id)
                })
                .collect();
            if !orphans.is_empty() {
                tracing::warn!(queue = %stream, entries = orphans.len(), "running again entries whose read was interrupted");
                self.dispatch(orphans, None).await;
            }
        }
        Ok(())
    }

    /// Every stream it reads, in the default order.
    fn streams(&self) -> Vec<Destination> {
        let shared = self.config.shared.iter().map(|q| q.destination.clone());
        self.config.first.iter().cloned().chain(shared).collect()
    }

    /// The order of the next read: the first streams, then the shared ones by priority.
    fn read_order(&self) -> Vec<Destination> {
        let mut priorities = self.priorities.lock().unwrap_or_else(|p| p.into_inner());
        let mut order = self.config.first.clone();
        order.extend(priorities.next_order());
        order
    }

    /// Waits for a free unit (the read then asks for it plus the others free); `None` when
    /// stopped.
    async fn first_unit(&self, stop: &CancellationToken) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            unit = self.capacity.take(1) => Some(unit),
            () = stop.cancelled() => None,
        }
    }

    /// Reads once: non-blocking in priority order, then a blocking read of every stream.
    /// `None` when stopped.
    async fn read(
        &self,
        lanes: &mut [Lane],
        streams: &[Destination],
        holds_unit: bool,
        stop: &CancellationToken,
    ) -> stevedore::Result<Option<Vec<Delivery>>> {
        let count = match self.config.mode {
            FetchMode::FreeUnits => {
                let free = self.capacity.free() + usize::from(holds_unit);
                let heaviest = self.heaviest.load(Ordering::Relaxed).max(1) as usize;
                (free / heaviest).max(1)
            }
            FetchMode::Batch(n) => n,
        };
        let (group, consumer) = (&self.config.group, &self.config.consumer);
        if streams.len() > 1 {
            let mut at = 0;
            while at < streams.len() {
                let (lane, end, pass) = self.next_read(lanes, streams, at);
                let (conn, read) = (&mut lanes[lane].conn, &streams[at..end]);
                let found = match pass {
                    Pass::Together => {
                        let broker = &self.broker;
                        broker
                            .read_group(conn, group, consumer, read, count, None)
                            .await?
                    }
                    Pass::InOrder => {
                        let broker = &self.broker;
                        broker
                            .read_in_order(conn, group, consumer, read, count)
                            .await?
                    }
                };
                if !found.is_empty() {
                    return Ok(Some(found));
                }
                at = end;
            }
        }
        let mut parts: Vec<Vec<Destination>> = vec![Vec::new(); lanes.len()];
        for stream in streams {
            parts[lane_of(lanes, stream)].push(stream.clone());
        }
        let found = self.block_on_lanes(lanes, parts, count).await?;
        if found.is_empty() && stop.is_cancelled() {
            return Ok(None);
        }
        Ok(Some(found))
    }

    /// The next non-blocking read of the pass from `streams[at]`: its lane, where it ends and
    /// how. The first streams (the node's queue and the queues' first lanes) that share a
    /// connection go together in one `XREADGROUP`; then each stream alone, in priority order,
    /// unless more than [`FEW_STREAMS`] in a row share the connection: those go in one script.
    fn next_read(
        &self,
        lanes: &[Lane],
        streams: &[Destination],
        at: usize,
    ) -> (usize, usize, Pass) {
        let lane = lane_of(lanes, &streams[at]);
        let same_lane = |i: &usize| lane_of(lanes, &streams[*i]) == lane;
        let first = |i: &usize| self.config.first.contains(&streams[*i]) && same_lane(i);
        let end_of = |run: &dyn Fn(&usize) -> bool| {
            (at + 1..streams.len())
                .find(|i| !run(i))
                .unwrap_or(streams.len())
        };
        if first(&at) {
            return (lane, end_of(&first), Pass::Together);
        }
        let end = end_of(&same_lane);
        if end - at > FEW_STREAMS {
            (lane, end, Pass::InOrder)
        } else {
            (lane, at + 1, Pass::Together)
        }
    }

    /// Blocks on every lane with streams to read at once; as soon as one lane answers with
    /// messages, wakes the others (`CLIENT UNBLOCK`, which ends a block as a timeout) and
    /// takes what they read too.
    async fn block_on_lanes(
        &self,
        lanes: &mut [Lane],
        parts: Vec<Vec<Destination>>,
        count: usize,
    ) -> stevedore::Result<Vec<Delivery>> {
        let (group, consumer) = (&self.config.group, &self.config.consumer);
        let block = Some(self.config.block);
        let mut blocked = Vec::new();
        let mut reads = FuturesUnordered::new();
        for (lane, streams) in lanes.iter_mut().zip(parts) {
            if streams.is_empty() {
                continue;
            }
            blocked.push(lane.client.clone());
            let conn = &mut lane.conn;
            reads.push(async move {
                self.broker
                    .read_group(conn, group, consumer, &streams, count, block)
                    .await
            });
        }
        let mut found = Vec::new();
        let mut failed = None;
        let mut woken = blocked.len() < 2;
        while let Some(read) = reads.next().await {
            match read {
                Ok(deliveries) => found.extend(deliveries),
                Err(error) => failed = Some(error),
            }
            if !woken && (!found.is_empty() || failed.is_some()) {
                woken = true;
                for client in &blocked {
                    if let Err(error) = self.broker.unblock(client).await {
                        tracing::debug!(%error, "could not wake a blocked read");
                    }
                }
            }
        }
        match failed {
            // What the other lanes read stays pending on this consumer; the next session
            // rereads it (recover_own).
            Some(error) => Err(error),
            None => Ok(found),
        }
    }

    /// Gives each delivery its units and starts it; waits in line for units beyond those free
    /// at the read. A run needing more than one unit never holds one while it waits for the
    /// rest (two such waits would each hold what the other needs).
    async fn dispatch(&self, deliveries: Vec<Delivery>, mut first: Option<OwnedSemaphorePermit>) {
        let mut heaviest = 1;
        for delivery in deliveries {
            let prepared = self.executor.prepare(delivery);
            heaviest = heaviest.max(prepared.units);
            let taken = match first.take() {
                Some(unit) if prepared.units == 1 => unit,
                held => {
                    drop(held);
                    if let Some((id, task)) = prepared.exclusive_run() {
                        self.capacity.draining_for(id, task);
                    }
                    self.capacity.take(prepared.units).await
                }
            };
            let units = self.capacity.hold(taken);
            self.executor.start(prepared, units);
        }
        self.heaviest.store(heaviest, Ordering::Relaxed);
    }
}
