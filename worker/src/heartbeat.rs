//! The heartbeat: tells the cluster this process is alive, and what it can take.
//!
//! 1. Every `--heartbeat` records the node's beat (version, queues, capacity and units in use,
//!    pid, start time, whether it is consuming, the last time it worked), stamped with Redis's
//!    clock.
//! 2. Notices when peers declared it lost and reaped its work (its beat had been removed): the
//!    runs it still finishes are then recorded as late, not over the reaper's verdict.
//! 3. Warns when a live peer reads a newer protocol, and with `--yield-to-newer` stops taking
//!    work (AWX shuts such a node down).
//! 4. Once a minute, samples the depth of the queues it reads (waiting tasks, the oldest's
//!    age) for the dashboard's queue chart, within half a beat (a slow sample is skipped).
//! 5. Stops beating when told; the worker then removes the beat if it stopped cleanly, or
//!    leaves it to go stale so that peers reap what it abandoned.

use std::sync::Arc;
use std::time::Duration;

use stevedore::broker::Broker;
use stevedore::nodes::NodeBeat;
use tokio_util::sync::CancellationToken;

use crate::activity::Activity;
use crate::admission::Limiter;
use crate::capacity::Capacity;

/// Records this process's heartbeat.
pub struct Heartbeat {
    /// Redis.
    pub broker: Broker,
    /// What stays the same between beats.
    pub template: NodeBeat,
    /// Activity counters.
    pub activity: Arc<Activity>,
    /// The node's capacity: busy means units in use.
    pub capacity: Arc<Capacity>,
    /// The limit permits this process holds, renewed at every beat.
    pub limiter: Arc<Limiter>,
    /// Fetchers the node runs (consuming means all are up).
    pub fetchers: usize,
    /// How often to beat.
    pub every: Duration,
    /// How old a beat may be before a peer is lost.
    pub lost_after: Duration,
    /// Stop taking work when a live peer reads a newer protocol.
    pub yield_to_newer: bool,
}

impl Heartbeat {
    /// Beats until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        let mut warned_newer = false;
        let mut last_beat: Option<u64> = None;
        let mut sampled_minute = 0;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => break,
            }
            match self.beat(&mut last_beat).await {
                Ok(()) => {
                    if failing {
                        tracing::info!("heartbeat recorded again");
                        failing = false;
                    }
                }
                Err(error) => {
                    self.activity.beat_failed();
                    if !failing {
                        tracing::warn!(%error, "cannot record the heartbeat");
                        failing = true;
                    }
                    continue;
                }
            }
            if !warned_newer {
                warned_newer = self.check_versions().await;
            }
            let minute = stevedore::now_ms() / 60_000;
            if minute != sampled_minute {
                sampled_minute = minute;
                self.sample_queues().await;
            }
        }
    }

    async fn beat(&self, last_beat: &mut Option<u64>) -> stevedore::Result<()> {
        let busy = self.capacity.in_use() as usize;
        if let Err(error) = self.limiter.renew(&self.broker).await {
            tracing::warn!(%error, "cannot renew the leases of the limit permits held here");
        }
        if crate::observe::enabled() {
            crate::observe::pool(busy, self.template.max_workers);
        }
        let beat = NodeBeat {
            busy,
            consuming: self.activity.consuming(self.fetchers),
            last_work_at: self.activity.last_work_at(),
            ..self.template.clone()
        };
        let (now, was_known) = self.broker.beat(&beat).await?;
        if let (Some(previous), false) = (*last_beat, was_known) {
            tracing::error!(
                last_beat_ms = previous,
                "this node was declared lost and its work reaped; it rejoins now"
            );
            self.activity.reaped(now);
        }
        // An outage shorter than this leaves a live peer's beat younger than `lost_after`
        // (the gap plus one interval), so beats stay trustworthy across it.
        let max_gap = self
            .lost_after
            .saturating_sub(self.every)
            .max(self.every * 2)
            .as_millis() as u64;
        self.activity.beat_recorded(now, *last_beat, max_gap);
        *last_beat = Some(now);
        Ok(())
    }

    /// Samples the depth of the queues this node reads (its shared queues and its own).
    async fn sample_queues(&self) {
        let own = format!("node:{}", self.template.node);
        let queues: Vec<String> = self.template.queues.iter().cloned().chain([own]).collect();
        let sampled = tokio::time::timeout(self.every / 2, self.broker.sample_queues(&queues));
        match sampled.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(%error, "cannot sample the queues' depth"),
            Err(_) => tracing::debug!("sampling the queues' depth took too long; skipped"),
        }
    }

    /// Warns once when a live peer reads a newer protocol; returns whether it warned.
    async fn check_versions(&self) -> bool {
        let Ok(nodes) = self.broker.nodes(self.lost_after).await else {
            return false;
        };
        let newer = nodes
            .iter()
            .find(|n| !n.lost && n.beat.protocol > self.template.protocol);
        let Some(peer) = newer else {
            return false;
        };
        tracing::warn!(peer = %peer.beat.node, peer_version = %peer.beat.version,
            peer_protocol = peer.beat.protocol, protocol = self.template.protocol,
            "a peer reads a newer message protocol; upgrade this node");
        if self.yield_to_newer {
            tracing::error!("stopping taking work (--yield-to-newer)");
            self.activity.stop_taking_work();
        }
        true
    }
}
