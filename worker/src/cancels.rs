//! The cancel records this node knows, kept in memory so that checking a message costs no
//! round trip. Reloaded from Redis at start, after every reconnect of the controller, and when a
//! cancel request arrives.

use std::sync::{Arc, RwLock};

use stevedore::broker::Broker;
use stevedore::control::CancelRecord;
use stevedore::Message;

use crate::running::{args_digest, RunKey};

/// The live cancel records. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CancelBook {
    records: Arc<RwLock<Vec<CancelRecord>>>,
}

impl CancelBook {
    /// Reloads the records from Redis, keeping those that have not lapsed.
    pub async fn refresh(&self, broker: &Broker) -> stevedore::Result<()> {
        let now = stevedore::now_ms();
        let live: Vec<CancelRecord> = broker
            .cancel_records()
            .await?
            .into_iter()
            .map(|(_, record)| record)
            .filter(|record| record.until_ms > now)
            .collect();
        *self.records.write().unwrap_or_else(|p| p.into_inner()) = live;
        Ok(())
    }

    /// Whether held run `id` (its arguments moved to the task; `key` keeps their digest) is
    /// cancelled, by the same rule as [`CancelBook::cancels`].
    pub fn cancels_run(&self, id: &str, key: &RunKey) -> bool {
        let now = stevedore::now_ms();
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        records.iter().filter(|r| r.until_ms > now).any(|r| {
            let selector = &r.selector;
            selector.ids.iter().any(|cancelled| cancelled == id)
                || (selector.task.as_deref() == Some(key.task.as_str())
                    && key.published_at <= r.at_ms
                    && (selector.args.as_ref())
                        .is_none_or(|args| args_digest(args) == key.args_digest))
        })
    }

    /// Whether `message` is cancelled: its id is, or its task name was cancelled after it was
    /// published (with the same arguments, when the cancel names them).
    pub fn cancels(&self, message: &Message) -> bool {
        let now = stevedore::now_ms();
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        records.iter().filter(|r| r.until_ms > now).any(|r| {
            let selector = &r.selector;
            selector.ids.contains(&message.id)
                || (selector.task.as_deref() == Some(message.task.as_str())
                    && message.published_at <= r.at_ms
                    && selector
                        .args
                        .as_ref()
                        .is_none_or(|args| *args == message.args))
        })
    }
}
