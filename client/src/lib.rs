//! stevedore: Redis-backed background tasks for Rust, in the Celery style.
//!
//! This crate is everything a producer needs and the base the worker builds on:
//!
//! - [`task`]: the `#[task]` attribute, which keeps a function callable and generates a stub
//!   beside it (`add::delay(&client, 1, 2)`) that publishes a [`Message`] instead of running it;
//! - [`Client`]: connect to Redis, publish to a shared queue, a node's queue or every node, in
//!   one pipelined round trip for many tasks, and read task records and queue statistics;
//! - [`Message`]: the versioned MessagePack record that travels (see `docs/protocol.md`);
//! - [`broker`]: the only module that talks to Redis; it names every key.
//!
//! ```no_run
//! use stevedore::{task, Client, TaskError};
//!
//! #[task]
//! async fn add(a: i64, b: i64) -> Result<i64, TaskError> {
//!     Ok(a + b)
//! }
//!
//! async fn publish() -> stevedore::Result<()> {
//!     let client = Client::connect("redis://127.0.0.1:6379", "stevedore").await?;
//!     let handle = add::delay(&client, 1, 2).await?;
//!     println!("published {}", handle.id());
//!     Ok(())
//! }
//! # fn main() {}
//! ```

pub mod admin;
pub mod broker;
mod client;
mod context;
pub mod control;
mod dedup;
mod error;
mod fake;
mod handle;
mod inline;
pub mod limits;
mod message;
pub mod nodes;
mod options;
pub mod progress;
mod queue;
mod record;
mod registry;
pub mod schedule;
pub mod signing;
mod task_error;
mod time;
pub mod trace;
pub mod workflow;

#[doc(hidden)]
pub mod __private;

pub use client::{Client, ClientConfig, QueueStats, CANCEL_TTL};
pub use context::TaskContext;
pub use dedup::{dedup_key, dedup_policy, OnDuplicate};
pub use error::{Error, Result};
pub use handle::{TaskFailure, TaskHandle, POLL_AT_MOST};
pub use message::{Message, MESSAGE_VERSION};
pub use options::PublishOptions;
pub use progress::Progress;
pub use queue::{Destination, QueueName};
pub use record::{RecordField, RecordPolicy, RunRecord, TaskRecord, TaskState};
pub use registry::{
    registered_tasks, Handler, Invocation, TaskKind, TaskOptions, TaskRegistration,
};
pub use stevedore_macros::task;
pub use task_error::{TaskError, TaskErrorKind};
pub use time::now_ms;
pub use tokio_util::sync::CancellationToken;
pub use workflow::{Signature, Workflow, WorkflowHandle};
