//! The reaper: settles the work of lost worker processes (AWX's job reaping).
//!
//! ```text
//!   process beats ──► live: keeps every claim, however long its tasks run
//!        │ no beat for --lost-after
//!        ▼
//!      lost ──► each entry it holds, in every group of every queue it read:
//!                 retries left ─► queued again as its next attempt   (record: retrying, lost)
//!                 none left    ─► dropped, recorded failed "lost: ..."  (AWX's rule)
//!                 a broadcast  ─► dropped for that node, recorded lost
//!               then its consumers and its beat are removed
//! ```
//!
//! 1. Liveness is the heartbeat, not idle time: a long task of a live process is never taken.
//! 2. Each entry is reaped by one atomic script that first checks the lost consumer still holds
//!    it, so any number of reapers at once reap it exactly once.
//! 3. Tasks waiting in a lost node's own queue stay there for the node to come back (its queue
//!    is named after the node, not the process), or, with `--adopt-lost-node-queue QUEUE`,
//!    move to that shared queue once no process of the node is alive.
//! 4. After an outage (Redis down, a failover slower than `--lost-after`) every beat is stale at
//!    once. A reaper reaps only once its own beat has been fresh for `--lost-after` in a row, so
//!    live peers have beaten again by then and only the truly lost are reaped.
//! 5. A reaped run that is not run again releases its on_duplicate key (and queues the copy
//!    parked behind it), so a lost holder does not block the same call for the key's hour.

use std::sync::Arc;
use std::time::Duration;

use stevedore::broker::{Broker, Keys, PendingEntry};
use stevedore::nodes::NodeBeat;
use stevedore::{Destination, Message, RecordField, RunRecord, TaskState};
use tokio_util::sync::CancellationToken;

use crate::retry;
use crate::task_table::TaskTable;

/// Entries read per XPENDING call.
const PAGE: usize = 100;

/// Reaps lost processes' work.
pub struct Reaper {
    /// Redis.
    pub broker: Broker,
    /// This process (never reaped by itself).
    pub consumer: String,
    /// This node (recorded as the reaper).
    pub node: Arc<str>,
    /// How old a beat may be before its process is lost.
    pub lost_after: Duration,
    /// How often to look.
    pub every: Duration,
    /// For the tasks' default retry budgets.
    pub table: Arc<TaskTable>,
    /// How long records are kept.
    pub record_ttl: Duration,
    /// Where tasks waiting in a lost node's own queue go: kept for the node (`None`), or moved
    /// to this shared queue once no process of that node is alive.
    pub adopt_to: Option<Destination>,
    /// This process's heartbeat record: since when it has beaten without a gap (rule 4).
    pub activity: Arc<crate::activity::Activity>,
}

impl Reaper {
    /// Looks for lost processes every so often until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => return,
            }
            if let Err(error) = self.pass().await {
                tracing::debug!(%error, "reaping failed; trying again later");
            }
        }
    }

    /// Reaps every lost process once; returns how many entries this pass reaped.
    pub async fn pass(&self) -> stevedore::Result<usize> {
        let mut reaped = 0;
        let nodes = self.broker.nodes(self.lost_after).await?;
        let own_beat_at = nodes
            .iter()
            .find(|n| n.beat.consumer == self.consumer && !n.lost)
            .map(|n| n.beat_at);
        if !self.trusts_beats(own_beat_at) {
            return Ok(0);
        }
        for health in &nodes {
            if health.lost && health.beat.consumer != self.consumer {
                reaped += self.reap_process(&health.beat).await?;
                let node_alive = nodes
                    .iter()
                    .any(|n| !n.lost && n.beat.node == health.beat.node);
                if !node_alive {
                    self.adopt_node_queue(&health.beat.node).await?;
                }
            }
        }
        Ok(reaped)
    }

    /// Whether beats can be judged now: this process's own beat (last at `own_beat_at`, Redis
    /// ms) has been recorded without a gap for at least `lost_after`, so a live peer has had as
    /// long to beat too (after an outage every beat is stale, the living ones too).
    fn trusts_beats(&self, own_beat_at: Option<u64>) -> bool {
        own_beat_at
            .and_then(|at| self.activity.beating_for(at))
            .is_some_and(|beating| beating >= self.lost_after.as_millis() as u64)
    }

    async fn reap_process(&self, lost: &NodeBeat) -> stevedore::Result<usize> {
        tracing::warn!(node = %lost.node, consumer = %lost.consumer, "worker process lost: reaping its work");
        let mut reaped = 0;
        for (destination, group) in streams_of(lost) {
            loop {
                let entries = self
                    .broker
                    .pending_of(&destination, &group, &lost.consumer, PAGE)
                    .await?;
                if entries.is_empty() {
                    break;
                }
                for entry in &entries {
                    reaped +=
                        usize::from(self.reap_entry(&destination, &group, lost, entry).await?);
                }
            }
            self.broker
                .delete_consumer(&destination, &group, &lost.consumer)
                .await?;
        }
        self.broker.forget_consumer(&lost.consumer).await?;
        if reaped > 0 {
            tracing::warn!(node = %lost.node, consumer = %lost.consumer, reaped, "reaped a lost process's work");
        }
        Ok(reaped)
    }

    /// Moves what waits in lost `node`'s own queue to the adopting queue, when one is set.
    async fn adopt_node_queue(&self, node: &str) -> stevedore::Result<()> {
        let Some(to) = &self.adopt_to else {
            return Ok(());
        };
        let from = Destination::node(node)?;
        let moved = self.broker.move_waiting(&from, to, &self.consumer).await?;
        if moved > 0 {
            tracing::warn!(%node, to = %to, moved, "moved the tasks waiting for a lost node");
        }
        Ok(())
    }

    /// Reaps one entry; returns whether this reaper did it.
    async fn reap_entry(
        &self,
        destination: &Destination,
        group: &str,
        lost: &NodeBeat,
        entry: &PendingEntry,
    ) -> stevedore::Result<bool> {
        let payload = self
            .broker
            .entry_payload(destination, &entry.entry_id)
            .await?;
        let message = payload.as_deref().and_then(|p| self.broker.open(p).ok());
        let requeue = message
            .as_ref()
            .and_then(|m| self.next_attempt(destination, m));
        let requeued = requeue.is_some();
        let reaped = self
            .broker
            .reap_entry(destination, group, &entry.entry_id, &lost.consumer, requeue)
            .await?;
        if let (true, Some(message)) = (reaped, message) {
            self.record_lost(&message, lost, requeued).await?;
            if !requeued {
                // Its run ended for good here: the same call may run again (rule 5).
                self.broker.release_duplicate(destination, &message).await?;
            }
        }
        Ok(reaped)
    }

    /// The encoded next attempt of `message` when its task allows a retry.
    fn next_attempt(&self, destination: &Destination, message: &Message) -> Option<Vec<u8>> {
        if *destination == Destination::Broadcast {
            return None;
        }
        let options = self.table.get(&message.task).map(|t| &t.options);
        let retries = retry::Policy::of(message, options).retries_left;
        if retries == 0 {
            return None;
        }
        let mut next = retry::next_attempt(message.clone(), retries, 0);
        next.eta = None;
        self.broker.seal(&next).ok()
    }

    async fn record_lost(
        &self,
        message: &Message,
        lost: &NodeBeat,
        requeued: bool,
    ) -> stevedore::Result<()> {
        let now = stevedore::now_ms();
        let mut run = RunRecord::starting(message, &lost.node);
        run.state = if requeued {
            TaskState::Retrying
        } else {
            TaskState::Failed
        };
        run.finished_at = Some(now);
        run.error = Some(format!(
            "lost: node {} (process {}) stopped heartbeating while holding it; reaped by {}",
            lost.node, lost.consumer, self.node
        ));
        run.retry_at = requeued.then_some(now);
        let field = RecordField::of(message).name(&lost.node);
        // After the requeue: its next attempt may be recorded already, and wins.
        self.broker
            .record_lost(&run, &field, requeued, self.record_ttl)
            .await?;
        Ok(())
    }
}

/// Every (stream, group) a process read: its node's queue and its shared queues through the
/// queue group, and the broadcasts through its node's group.
fn streams_of(beat: &NodeBeat) -> Vec<(Destination, String)> {
    let own = Destination::node(&beat.node).ok();
    let shared = beat
        .queues
        .iter()
        .filter_map(|q| Destination::queue(q).ok());
    own.into_iter()
        .chain(shared)
        .chain([Destination::Broadcast])
        .map(|destination| {
            let group = Keys::group(&destination, &beat.node);
            (destination, group)
        })
        .collect()
}
