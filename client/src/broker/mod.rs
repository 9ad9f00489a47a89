//! The one door to Redis: every command stevedore sends goes through [`Broker`].
//!
//! Split by concern: [`keys`] names every key, `connect` opens connections, `enqueue`
//! publishes, `fetch` reads through consumer groups, `outcome` records results and
//! acknowledges, `dead_letter` moves bad entries aside, `inspect` reads records and queue
//! statistics. Lua scripts live in `scripts/`, one atomic operation each.

mod connect;
mod control;
mod dead_letter;
mod dead_letters;
mod dedup;
mod delayed;
mod enqueue;
mod fetch;
mod health;
mod inspect;
pub mod keys;
mod outcome;
mod schedules;

use std::sync::Arc;

pub use connect::{redact_url, BrokerConfig};
pub use dead_letters::DeadLetter;
pub use dedup::{policy_of, DEDUP_TTL};
pub use delayed::MoveDue;
pub use fetch::{Delivery, GroupStart};
pub use health::PendingEntry;
pub use inspect::QueueInfo;
pub use keys::Keys;
pub use outcome::{OutcomeBatch, RecordSlot, Settle};
pub use schedules::Fired;

/// A multiplexed connection owned by one component (blocking reads, the outcome writer).
pub type Connection = redis::aio::MultiplexedConnection;

/// Talks to stevedore's Redis. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    config: BrokerConfig,
    keys: Keys,
    client: redis::Client,
    /// Shared, auto-reconnecting connection for short commands (never blocking ones).
    commands: redis::aio::ConnectionManager,
    /// Connections for blocking waits (BLMOVE), checked out per wait.
    blocking: deadpool_redis::Pool,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("url", &redact_url(&self.inner.config.url))
            .field("namespace", &self.inner.keys.namespace())
            .finish()
    }
}

impl Broker {
    /// The key builder of this broker's namespace.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    fn commands(&self) -> redis::aio::ConnectionManager {
        self.inner.commands.clone()
    }
}
