//! Admission: whether a message read from a stream may start on this node, and what holds it
//! back when it may not. The executor holds one [`Admission`] and asks it twice: when the
//! fetcher hands a message over ([`Admission::prepare`]) and before its run
//! ([`Admission::may_start`]).
//!
//! ```text
//!   read ─► prepare: decode, units (impact; all when exclusive; 1 when heavier than the node)
//!             │ the fetcher takes its units
//!             ▼
//!   may_start ─► eta ahead of the clock ──────────► delayed set until its eta
//!             ─► heavier than this whole node ────► delayed set 5 s (for a bigger node)
//!             ─► limit over its rate ─────────────► delayed set until its turn
//!             ─► limit with every permit held ────► delayed set ≤ 10 s + listed as a waiter
//!             ─► on_duplicate key held by another ► parked behind the holder
//!             ─► otherwise: runs, holding its permit ─► release when it ends (wakes a waiter)
//! ```
//!
//! 1. **Prepare**: decodes the message and says how many of the node's units it takes.
//! 2. **Early expiry of the wait**: a message that came before its eta waits for it (not an
//!    attempt); broadcasts are shared by every node and run.
//! 3. **Impact and exclusive**: a message heavier than this node's whole capacity is sent on
//!    (it waits in the delayed set for a node big enough).
//! 4. **Limits** (`limits.rs`): take a permit, wait for one, release it; renew held permits at
//!    every heartbeat.
//! 5. **on_duplicate start**: takes the call's key, or parks the message behind its holder.
//!
//! Every step that writes is retried through a Redis outage ([`crate::persist`]): the message
//! keeps its units meanwhile, and stays pending if the node stops first. A message held back
//! here is never recorded: it runs later, as the same attempt.

mod limits;

use std::sync::Arc;

use stevedore::broker::{Broker, Delivery};
use stevedore::{dedup_policy, Destination, Message};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::capacity::Capacity;
use crate::persist::until_written;
use crate::task_table::TaskTable;

pub use limits::{bucket_of, Limiter, Permit};

/// How long a message heavier than its node's whole capacity waits in the delayed set before
/// a node takes it again (one with capacity enough, it is hoped).
const OVERSIZE_WAIT_MS: u64 = 5_000;

/// How long after its publish (or its eta) a message too heavy for every node that read it
/// keeps being sent on; then it goes to the dead letters with the reason (no node of the
/// fleet could run it for an hour).
pub const OVERSIZE_GIVE_UP_MS: u64 = 3_600_000;

/// How far ahead of a node's clock an `eta` may be and still run now: clocks of the node that
/// moved a delayed message and of the one that reads it differ a little.
const ETA_SLACK_MS: u64 = 1_000;

/// Whether messages may start on this node.
pub struct Admission {
    broker: Broker,
    table: Arc<TaskTable>,
    capacity: Arc<Capacity>,
    limiter: Arc<Limiter>,
    /// Cancelled at the shutdown deadline: a step still retrying gives up, the message stays
    /// pending.
    abandon: CancellationToken,
}

/// A message read and decoded, with the units of capacity it needs.
pub struct Prepared {
    /// As read.
    pub delivery: Delivery,
    /// The message, or why its bytes do not open.
    pub opened: Result<Message, String>,
    /// Units to hold while it runs (all of the node's when exclusive; 1 when it cannot run
    /// here at all, until it is sent on).
    pub units: u32,
    /// Whether it runs alone on its node.
    pub exclusive: bool,
    /// Whether it is heavier than this node's whole capacity.
    pub oversize: bool,
}

impl Prepared {
    /// The task id and name of an exclusive run.
    pub fn exclusive_run(&self) -> Option<(&str, &str)> {
        let message = self.opened.as_ref().ok().filter(|_| self.exclusive)?;
        Some((&message.id, &message.task))
    }
}

impl Admission {
    /// Admission on a node with `capacity`, running the tasks of `table`, its permits kept by
    /// `limiter`.
    pub fn new(
        broker: Broker,
        table: Arc<TaskTable>,
        capacity: Arc<Capacity>,
        limiter: Arc<Limiter>,
        abandon: CancellationToken,
    ) -> Self {
        Self {
            broker,
            table,
            capacity,
            limiter,
            abandon,
        }
    }

    /// Decodes `delivery` and says how many units it needs.
    pub fn prepare(&self, delivery: Delivery) -> Prepared {
        let opened = match delivery.payload.as_deref() {
            Some(payload) => self.broker.open(payload).map_err(|e| e.to_string()),
            None => {
                Err("stream entry has no message field `m` (or was trimmed while pending)".into())
            }
        };
        let (units, exclusive, oversize) = match &opened {
            Ok(message) => self.units_of(message),
            Err(_) => (1, false, false),
        };
        Prepared {
            delivery,
            opened,
            units,
            exclusive,
            oversize,
        }
    }

    /// Units `message` takes, whether it is exclusive, and whether it is too heavy for this
    /// node.
    fn units_of(&self, message: &Message) -> (u32, bool, bool) {
        let task = self.table.get(&message.task).map(|t| &t.options);
        let total = self.capacity.total();
        let exclusive = (message.exclusive).unwrap_or_else(|| task.is_some_and(|t| t.exclusive));
        if exclusive {
            return (total, true, false);
        }
        let impact = (message.impact)
            .or_else(|| task.and_then(|t| t.impact))
            .unwrap_or(1)
            .max(1);
        match impact > total {
            true => (1, false, true),
            false => (impact, false, false),
        }
    }

    /// Whether the message may start now, with the limit permit it then holds; `None` when
    /// it was moved to the delayed set, parked, or left pending (its outcome is not recorded).
    pub async fn may_start(
        &self,
        delivery: &Delivery,
        message: &Message,
        oversize: bool,
    ) -> Option<Option<Permit>> {
        if let Some(due) = early(message, &delivery.destination) {
            if self.defer(delivery, due).await {
                tracing::info!(due_ms = due, "arrived before its eta: delayed until then");
            }
            return None;
        }
        if oversize {
            self.send_on(delivery, message).await;
            return None;
        }
        let permit = self.admit(delivery, message).await?;
        if !self.dedup_start(delivery, message).in_current_span().await {
            if let Some(permit) = permit {
                self.release(permit).await;
            }
            return None;
        }
        Some(permit)
    }

    /// Sends a message heavier than this whole node back to wait (delayed, not an attempt)
    /// for a node with capacity enough; one no node took for [`OVERSIZE_GIVE_UP_MS`] goes to
    /// the dead letters instead. Warned of once (its first time here), not every 5 s.
    async fn send_on(&self, delivery: &Delivery, message: &Message) {
        let now = stevedore::now_ms();
        let since = message.eta.unwrap_or(0).max(message.published_at);
        let capacity = self.capacity.total();
        if now.saturating_sub(since) > OVERSIZE_GIVE_UP_MS {
            let impact =
                (message.impact).map_or_else(|| "its task's".to_owned(), |i| i.to_string());
            let reason = format!(
                "impact {impact} above the capacity of every node that read it for an hour (this one has {capacity} units)"
            );
            let moved = until_written(
                &self.abandon,
                "dead-letter a message no node can run",
                || self.broker.dead_letter(delivery, &reason),
            );
            if moved.await.is_some() {
                tracing::warn!(task = %message.task, %reason, "dead-lettered");
            }
            return;
        }
        if self.defer(delivery, now + OVERSIZE_WAIT_MS).await {
            match now.saturating_sub(since) < 2 * OVERSIZE_WAIT_MS {
                true => {
                    tracing::warn!(task = %message.task, capacity, "impact above this node's whole capacity: left waiting for a node with capacity enough")
                }
                false => {
                    tracing::debug!(task = %message.task, capacity, "still too heavy for this node")
                }
            }
        }
    }

    /// Under an on_duplicate policy, takes the message's key or parks the message behind the
    /// run holding it; returns whether to run it now.
    async fn dedup_start(&self, delivery: &Delivery, message: &Message) -> bool {
        if dedup_policy(message).is_none() {
            return true;
        }
        let payload = delivery.payload.as_deref().unwrap_or_default();
        let started = until_written(&self.abandon, "check for duplicates", || {
            let (destination, entry) = (&delivery.destination, &delivery.entry_id);
            (self.broker).dedup_start(destination, message, &delivery.group, entry, payload)
        })
        .await;
        if started == Some(false) {
            tracing::info!("parked behind a running duplicate");
        }
        started.unwrap_or(false)
    }

    /// Moves a message to the delayed set until `due` (ms), retrying while Redis refuses;
    /// returns whether it moved (else it stays pending, at shutdown).
    async fn defer(&self, delivery: &Delivery, due: u64) -> bool {
        let payload = delivery.payload.as_deref().unwrap_or_default();
        until_written(&self.abandon, "move a message to the delayed set", || {
            let (destination, entry) = (&delivery.destination, &delivery.entry_id);
            (self.broker).defer(destination, &delivery.group, entry, due, payload)
        })
        .await
        .is_some()
    }
}

/// The eta of `message` when it arrived on a stream well before it (a producer that wrote to
/// the stream directly): it must wait in the delayed set. Broadcast entries are shared by every
/// node's group and cannot be moved by one node: they run.
fn early(message: &Message, from: &Destination) -> Option<u64> {
    let eta = message.eta?;
    let early = eta > stevedore::now_ms() + ETA_SLACK_MS && *from != Destination::Broadcast;
    early.then_some(eta)
}
