//! The reaper: settles the work of lost worker processes (AWX's job reaping).
//!
//! ```text
//!   process beats ──► live: keeps every claim, however long its tasks run
//!        │ no beat for --lost-after
//!        ▼
//!      lost ──► each entry it holds, in every group of every queue it read:
//!                 never started ─► queued again as it was (no attempt counted)
//!                 succeeded/failed/cancelled/timed out, not acked ─► dropped
//!                 does not open ─► dead letters, with the reason
//!                 started, retries left ─► queued again as its next attempt (record: retrying)
//!                 started, none left    ─► dropped, recorded failed "lost: ..." (AWX's rule)
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
//! 6. Only a run that started is subject to the failed-as-lost rule: an entry whose record shows
//!    no run of its attempt on the lost node (read, never started) is queued again as it was,
//!    without counting an attempt (a run that died before its start was recorded counts as not
//!    started and may run twice, which at-least-once allows); one recorded succeeded, failed,
//!    cancelled or timed out (only its acknowledgement was lost) is dropped, but one recorded
//!    `retrying` or `dead` is treated as started, since its retry or dead letter is written
//!    after the record; bytes that do not open go to the dead letters with the reason.
//! 7. A reaped workflow step whose run ended for good is joined here (its process may have
//!    died between its record and its join; the join is idempotent), and every pass sweeps
//!    the outboxes of idle workflows, publishing what a dead process left ready.

use std::sync::Arc;
use std::time::Duration;

use stevedore::broker::{Broker, Fate, Keys, NewDeadLetter, PendingEntry, StepRef};
use stevedore::nodes::{GoneProcess, GoneState, NodeBeat};
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
    /// How long a gone process is kept before it, and its node's broadcast group, are deleted.
    pub lost_retention: Duration,
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
        let mut failing: Option<String> = None;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => return,
            }
            match self.pass().await {
                // One line per state change: a reaper that cannot reap must be seen, not spam.
                Err(error) if failing.as_deref() != Some(&error.to_string()) => {
                    tracing::warn!(%error, "reaping failed; trying again later");
                    failing = Some(error.to_string());
                }
                Err(_) => {}
                Ok(_) if failing.take().is_some() => tracing::info!("reaping again"),
                Ok(_) => {}
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
        let live: Vec<&str> = (nodes.iter().filter(|n| !n.lost))
            .map(|n| n.beat.node.as_str())
            .collect();
        for node in self.broker.expire_gone(self.lost_retention, &live).await? {
            tracing::info!(node = %node, "node gone longer than --lost-retention: its broadcast group is deleted");
        }
        self.broker.sweep_workflows(self.record_ttl).await?;
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
        let gone = GoneProcess {
            beat: lost.clone(),
            state: GoneState::Lost,
            at: stevedore::now_ms(),
            reaped: reaped as u64,
        };
        self.broker.forget_consumer(&gone).await?;
        if reaped > 0 {
            tracing::warn!(node = %lost.node, consumer = %lost.consumer, reaped, "reaped a lost process's work");
            crate::observe::reaped(reaped);
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
        let opened = payload.as_deref().map(|p| self.broker.open(p));
        let (fate, verdict) = match (&opened, payload) {
            (Some(Ok(message)), Some(payload)) => {
                self.fate_of(destination, message, lost, payload).await?
            }
            (Some(Err(error)), Some(payload)) => {
                let reason = format!(
                    "reaped from lost node {} and cannot be opened: {error}",
                    lost.node
                );
                let letter = NewDeadLetter {
                    reason,
                    raw: payload,
                    source_id: entry.entry_id.clone(),
                    task: None,
                };
                (Fate::DeadLetter(letter), None)
            }
            // Trimmed from the stream while pending: nothing is left to keep.
            _ => (Fate::Drop, None),
        };
        let reaped = self
            .broker
            .reap_entry(destination, group, &entry.entry_id, &lost.consumer, fate)
            .await?;
        if let (true, Some(requeued), Some(Ok(message))) = (reaped, verdict, &opened) {
            if !requeued {
                // Its run ended for good here: the same call may run again (rule 5). Released
                // before the record says so, so that whoever reads `failed` may publish again.
                self.broker.release_duplicate(destination, message).await?;
            }
            self.record_lost(message, lost, requeued).await?;
            // Its limit permit, if it held one, comes back now and wakes the next waiter.
            let task = self.table.get(&message.task);
            if let Some((bucket, _)) = crate::admission::bucket_of(task, message) {
                let holder = stevedore::limits::permit_holder(message);
                self.broker.release_limit(&bucket, &holder).await?;
            }
        }
        if let (true, Some(Ok(message))) = (reaped, &opened) {
            self.join_workflow_step(message).await?;
        }
        Ok(reaped)
    }

    /// Joins a reaped workflow step whose run ended for good, as its record now says (rule 7).
    async fn join_workflow_step(&self, message: &Message) -> stevedore::Result<()> {
        let Some(step) = StepRef::of(message) else {
            return Ok(());
        };
        let record = self.broker.task_record(&message.id).await?;
        if let Some(run) = record.task_run().filter(|run| run.state.is_final()) {
            self.broker.join_step(&step, run, self.record_ttl).await?;
        }
        Ok(())
    }

    /// What becomes of `message` (as `payload`) held by `lost`, and the verdict to record:
    /// `Some(requeued)` for a run that started there (AWX's rule: run again if its task allows,
    /// else failed as lost), `None` when there is nothing to record: a run that never started
    /// is queued again as it was (rule 6), and one whose outcome is recorded is only dropped.
    async fn fate_of(
        &self,
        destination: &Destination,
        message: &Message,
        lost: &NodeBeat,
        payload: Vec<u8>,
    ) -> stevedore::Result<(Fate, Option<bool>)> {
        let record = self.broker.task_record(&message.id).await?;
        let field = RecordField::of(message).name(&lost.node);
        let this_attempt = record
            .runs
            .get(&field)
            .filter(|run| run.attempt == message.attempt() && run.node == lost.node);
        // Settled for good with nothing written after the record but the acknowledgement. Not
        // `retrying` or `dead`: their retry or dead letter is written after the record, and
        // the process may have died in between (then only a requeue keeps the task).
        let settled = |state: TaskState| {
            matches!(
                state,
                TaskState::Succeeded
                    | TaskState::Failed
                    | TaskState::Cancelled
                    | TaskState::TimedOut
                    | TaskState::Expired
            )
        };
        Ok(match this_attempt.map(|run| settled(run.state)) {
            Some(true) => (Fate::Drop, None),
            None if *destination != Destination::Broadcast => (Fate::Requeue(payload), None),
            _ => match self.next_attempt(destination, message) {
                Some(next) => (Fate::Requeue(next), Some(true)),
                None => (Fate::Drop, Some(false)),
            },
        })
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
        let task = self.table.get(&message.task).map_or("unknown", |t| t.name);
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
        if message.record_policy() != stevedore::RecordPolicy::None {
            // (A run that keeps no record keeps none of a loss either: the reap is logged.)
            let field = RecordField::of(message).name(&lost.node);
            // After the requeue: its next attempt may be recorded already, and wins.
            self.broker
                .record_lost(&run, &field, requeued, self.record_ttl)
                .await?;
        }
        // Counted once recorded: whoever sees the count finds the record and its event.
        crate::observe::run_lost(&message.queue, task);
        Ok(())
    }
}

/// Every (stream, group) a process read: its node's queue and its shared queues (with their
/// first lanes) through the queue group, and the broadcasts through its node's group.
pub(crate) fn streams_of(beat: &NodeBeat) -> Vec<(Destination, String)> {
    let own = Destination::node(&beat.node).ok();
    let shared = beat
        .queues
        .iter()
        .filter_map(|q| Destination::queue(q).ok())
        .flat_map(|q| q.first_lane().into_iter().chain([q]));
    own.into_iter()
        .chain(shared)
        .chain([Destination::Broadcast])
        .map(|destination| {
            let group = Keys::group(&destination, &beat.node);
            (destination, group)
        })
        .collect()
}
