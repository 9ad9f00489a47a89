//! The one door to Redis: every command stevedore sends goes through [`Broker`].
//!
//! Split by concern: [`keys`] names every key, `connect` opens connections, `enqueue`
//! publishes, `fetch` reads through consumer groups, `outcome` records results and
//! acknowledges, `dead_letter` moves bad entries aside, `inspect` reads records and queue
//! statistics. Lua scripts live in `scripts/`, one atomic operation each.

mod address;
mod connect;
mod connection;
mod connector;
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
mod replicated;
mod schedules;
mod shared;

use std::sync::Arc;

pub use connect::{redact_url, BrokerConfig, ClientId};
pub use connection::{slot_of, Connection};
pub use dead_letters::DeadLetter;
pub use dedup::{policy_of, DEDUP_TTL};
pub use delayed::MoveDue;
pub use fetch::{Delivery, GroupStart};
pub use health::PendingEntry;
pub use inspect::QueueInfo;
pub use keys::Keys;
pub use outcome::{OutcomeBatch, RecordSlot, Settle};
pub use schedules::{Fired, Firing};
pub use shared::SharedConnection;

/// Talks to stevedore's Redis. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    config: BrokerConfig,
    keys: Keys,
    connector: Arc<connector::Connector>,
    /// Shared, auto-reconnecting connection for short commands (never blocking ones).
    commands: SharedConnection,
    /// Connections for blocking waits (BLMOVE, BLPOP), checked out per wait.
    blocking: shared::BlockingPool,
    /// Keys to sign and check messages with.
    signing: Option<crate::signing::SigningKeys>,
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

    /// Encodes `message` for Redis, signed when signing keys are configured.
    pub fn seal(&self, message: &crate::Message) -> crate::Result<Vec<u8>> {
        let bytes = message.encode()?;
        Ok(match &self.inner.signing {
            Some(keys) => keys.sign(&bytes),
            None => bytes,
        })
    }

    /// Decodes a payload read from Redis. With signing keys, an unsigned or tampered payload
    /// is refused ([`crate::Error::Signature`]); without, signed and unsigned are both read.
    pub fn open(&self, payload: &[u8]) -> crate::Result<crate::Message> {
        let bytes = match &self.inner.signing {
            Some(keys) => keys.verify(payload)?,
            None => crate::signing::unwrap_unchecked(payload)?,
        };
        crate::Message::decode(&bytes)
    }

    /// Whether messages are signed and checked.
    pub fn signs_messages(&self) -> bool {
        self.inner.signing.is_some()
    }

    /// The shared connection for short commands (never blocking ones).
    pub fn commands(&self) -> SharedConnection {
        self.inner.commands.clone()
    }
}
