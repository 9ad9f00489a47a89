//! The one door to Redis: every command stevedore sends goes through [`Broker`].
//!
//! **Internal.** This module is public so that `stevedore-worker`, `stevedore-beat`, the tests
//! and the benchmark can reach Redis through it; it is not part of the semver-stable API.
//! Applications use [`crate::Client`]; operators' tools (the `stevedore` command line, the
//! dashboard) use [`crate::admin`], which reads through it.
//!
//! Split by concern:
//!
//! | file | holds |
//! |---|---|
//! | [`keys`] | the key table: every key, one function each |
//! | `scripts.rs`, `scripts/*.lua` | every Lua script, one atomic operation each, and how it is sent |
//! | `reply.rs` | parsing stream replies (RESP2 and RESP3) |
//! | `config.rs` | [`BrokerConfig`]: URL, credentials, TLS, caps; [`redact_url`] |
//! | `address.rs` | parsing URLs into a single server, Sentinel or Cluster address |
//! | `deployment.rs` | opening connections to the deployment an address names |
//! | `connection.rs` | [`Connection`]: one server or a cluster, pipelines split per hash slot |
//! | `shared.rs` | [`SharedConnection`] (reconnecting, for short commands), the blocking pool |
//! | `replicated.rs` | writes confirmed by replicas (`WAIT` in the same pipeline) |
//! | `connect.rs` | [`Broker::connect`], dedicated connections, `CLIENT ID`/`UNBLOCK` |
//! | `enqueue.rs` | publishing, one pipelined round trip per batch |
//! | `dedup.rs` | on_duplicate: publish, start and finish scripts |
//! | `delayed.rs` | delayed and retrying messages: moving them when due, the wake-up channel |
//! | `fetch.rs` | reading streams through consumer groups; blocking lanes per hash slot |
//! | `outcome.rs` | [`Outcome`] and [`OutcomeBatch`]: records, retries, dead letters, acks |
//! | `limits.rs` | cluster-wide limits: definitions, taking and giving back a start |
//! | `dead_letters.rs` | writing, reading, requeueing and purging dead letters |
//! | `health.rs` | heartbeats, pending entries, reaping, the reaper's verdicts |
//! | `control.rs` | control requests and replies, cancel records, paused queues |
//! | `schedules.rs` | schedules, beat's lease, claiming and publishing fired runs |
//! | `inspect.rs` | task records and queue statistics |
//! | `find.rs` | finding a task without a record: waiting, delayed or rejected |
//! | `listing.rs` | a queue's tasks by state (`queue show`), purging what waits |
//! | `events.rs` | the task event stream: writing events with outcomes, reading them |
//! | `throughput.rs` | runs settled per minute (the dashboard's chart) |
//! | `workflows.rs` | workflow graphs: submitting, joining steps, the outbox sweeper, cancel |

mod address;
mod config;
mod connect;
mod connection;
mod control;
mod dead_letters;
mod dedup;
mod delayed;
mod deployment;
mod enqueue;
mod events;
mod fetch;
mod find;
mod health;
mod history;
mod inspect;
pub mod keys;
mod limits;
mod listing;
mod outcome;
mod progress;
mod replicated;
mod reply;
mod retry_failed;
mod schedules;
mod scripts;
mod shared;
mod throughput;
mod workflows;

use std::sync::Arc;

use crate::signing::Purpose;

pub use config::{redact_url, BrokerConfig};
pub use connect::ClientId;
pub use connection::{hash_slot, Connection};
pub use dead_letters::{DeadLetter, NewDeadLetter};
pub use dedup::DEDUP_TTL;
pub use delayed::MoveDue;
pub use events::{run_event, TaskEvent, EVENTS_CAP};
pub use fetch::{Delivery, GroupStart};
pub use find::Whereabouts;
pub use health::{Fate, PendingEntry};
pub use history::{TaskMinute, DEFAULT_HISTORY, HISTORY_STATES, RUN_TIME_BUCKETS_MS};
pub use inspect::QueueInfo;
pub use keys::Keys;
pub use limits::{Bucket, LimitInfo, Take};
pub use listing::Listed;
pub use outcome::{Entry, Outcome, OutcomeBatch, Settle};
pub use progress::Reporter;
pub use retry_failed::{KEPT_MESSAGE_FIELD, KEPT_MESSAGE_MAX, NOT_RUNS, WORKFLOW_FIELD};
pub use schedules::{Fired, Firing};
pub use scripts::Sending;
pub use shared::SharedConnection;
pub use throughput::QueueSample;
pub use workflows::{step_outcome, Joined, ReadyStep, StepRef, SWEEP_AFTER, WORKFLOW_HEADER};

/// Talks to stevedore's Redis. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    config: BrokerConfig,
    keys: Keys,
    deployment: Arc<deployment::Deployment>,
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
        Ok(self.seal_as(Purpose::Message, message.encode()?))
    }

    /// Decodes a payload read from Redis. With signing keys, an unsigned or tampered payload
    /// is refused ([`crate::Error::Signature`]); without, signed and unsigned are both read.
    pub fn open(&self, payload: &[u8]) -> crate::Result<crate::Message> {
        crate::Message::decode(&self.open_as(Purpose::Message, payload)?)
    }

    /// `bytes` (an encoded `purpose`) as written to Redis: signed when signing keys are set.
    pub(crate) fn seal_as(&self, purpose: Purpose, bytes: Vec<u8>) -> Vec<u8> {
        match &self.inner.signing {
            Some(keys) => keys.sign_as(purpose, &bytes),
            None => bytes,
        }
    }

    /// The encoded `purpose` inside `payload`. With signing keys, one without a valid MAC for
    /// that purpose is refused; without, signed and unsigned are both read.
    pub(crate) fn open_as(&self, purpose: Purpose, payload: &[u8]) -> crate::Result<Vec<u8>> {
        Ok(match &self.inner.signing {
            Some(keys) => keys.verify_as(purpose, payload)?,
            None => crate::signing::unwrap_unchecked(payload)?,
        })
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
