//! Where a message may start: the units it takes on this node, and the checks before its run.
//!
//! 1. When the fetcher hands a message over, decodes it and says how many of the node's units
//!    it needs: its impact (the call's, else the task's, else 1), all of them when it is
//!    exclusive, and 1 when it is heavier than the whole node (it is then sent on).
//! 2. Before its run: a message that came before its eta waits in the delayed set; one too
//!    heavy for this node waits there for a bigger node; then its limit (see `limiter`) and its
//!    on_duplicate policy may hold it. Only a message that passes all of them runs.

use stevedore::broker::Delivery;
use stevedore::Message;
use tracing::Instrument;

use crate::executor::{early, Executor, ExecutorParts};
use crate::limiter::{Admission, Permit};

/// A message read and decoded, with the units of capacity it needs.
pub struct Prepared {
    /// As read.
    pub delivery: Delivery,
    pub(crate) opened: Result<Message, String>,
    /// Units to hold while it runs (all of the node's when exclusive; 1 when it cannot run
    /// here at all, until it is sent on).
    pub units: u32,
    /// Whether it runs alone on its node.
    pub exclusive: bool,
    pub(crate) oversize: bool,
}

impl Prepared {
    /// The task id and name of an exclusive run.
    pub fn exclusive_run(&self) -> Option<(&str, &str)> {
        let message = self.opened.as_ref().ok().filter(|_| self.exclusive)?;
        Some((&message.id, &message.task))
    }
}

/// How long a message heavier than its node's whole capacity waits in the delayed set before
/// a node takes it again (one with capacity enough, it is hoped).
const OVERSIZE_WAIT_MS: u64 = 5_000;

impl Executor {
    /// Decodes `delivery` and says how many units it needs.
    pub fn prepare(&self, delivery: Delivery) -> Prepared {
        let opened = match delivery.payload.as_deref() {
            Some(payload) => self
                .shared
                .broker()
                .open(payload)
                .map_err(|e| e.to_string()),
            None => {
                Err("stream entry has no message field `m` (or was trimmed while pending)".into())
            }
        };
        let (units, exclusive, oversize) = match &opened {
            Ok(message) => self.shared.units_of(message),
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
}

impl ExecutorParts {
    /// Units `message` takes, whether it is exclusive, and whether it is too heavy for this
    /// node.
    fn units_of(&self, message: &Message) -> (u32, bool, bool) {
        let task = self.table.get(&message.task).map(|t| &t.options);
        let total = self.capacity.total();
        let exclusive = message
            .exclusive
            .unwrap_or_else(|| task.is_some_and(|t| t.exclusive));
        if exclusive {
            return (total, true, false);
        }
        let impact = message
            .impact
            .or_else(|| task.and_then(|t| t.impact))
            .unwrap_or(1)
            .max(1);
        if impact > total {
            (1, false, true)
        } else {
            (impact, false, false)
        }
    }

    /// Whether the message may start now, with the limit permit it then holds; `None` when
    /// it was moved to the delayed set, parked, or left pending (its outcome is not recorded).
    pub(crate) async fn may_start(
        &self,
        delivery: &Delivery,
        group: &str,
        message: &Message,
        oversize: bool,
    ) -> Option<Option<Permit>> {
        if let Some(due) = early(message, &delivery.destination) {
            if self.defer(delivery, group, due).await {
                tracing::info!(due_ms = due, "arrived before its eta: delayed until then");
            }
            return None;
        }
        if oversize {
            self.send_on(delivery, group, message).await;
            return None;
        }
        let permit = match self.admit(delivery, group, message).await {
            Admission::Run(permit) => permit,
            Admission::Held => return None,
        };
        if !self
            .dedup_start(delivery, group, message)
            .in_current_span()
            .await
        {
            if let Some(permit) = permit {
                self.release(permit).await;
            }
            return None;
        }
        Some(permit)
    }

    /// Sends a message heavier than this whole node back to wait (delayed, not an attempt)
    /// for a node with capacity enough.
    async fn send_on(&self, delivery: &Delivery, group: &str, message: &Message) {
        let due = stevedore::now_ms() + OVERSIZE_WAIT_MS;
        if self.defer(delivery, group, due).await {
            tracing::warn!(task = %message.task, capacity = self.capacity.total(), "impact above this node's whole capacity: left waiting for a node with capacity enough");
        }
    }
}
