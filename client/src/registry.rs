//! The link-time task registry: `#[task]` submits one [`TaskRegistration`] per task.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;

use crate::{TaskContext, TaskError};

/// How a task's body runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// An `async fn`: polled on the worker's runtime.
    Async,
    /// A plain `fn`: run on tokio's blocking thread pool so it never stalls the runtime.
    Blocking,
}

/// One call of a task, as the worker hands it to the task's handler.
#[derive(Debug)]
pub struct Invocation {
    /// Positional arguments from the message.
    pub args: Vec<rmpv::Value>,
    /// Keyword arguments from the message.
    pub kwargs: BTreeMap<String, rmpv::Value>,
    /// The run's context.
    pub context: TaskContext,
}

/// Decodes the arguments, runs the task, and encodes its return value.
pub type Handler = fn(Invocation) -> BoxFuture<'static, Result<rmpv::Value, TaskError>>;

/// A task as registered at link time by `#[task]`.
#[derive(Debug)]
pub struct TaskRegistration {
    /// The task name, unique in a worker.
    pub name: &'static str,
    /// Async or blocking.
    pub kind: TaskKind,
    /// Options from the attribute.
    pub options: TaskOptions,
    /// Runs one invocation.
    pub handler: Handler,
    /// Where it was declared (`file:line`), to explain duplicate names.
    pub location: &'static str,
}

/// What `#[task(...)]` says about a task; a call's [`crate::PublishOptions`] win over it.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskOptions {
    /// The queue the stub publishes to when the call names none.
    pub default_queue: Option<&'static str>,
    /// Soft time limit of one run in milliseconds: the task's cancellation token fires.
    pub timeout_ms: Option<u64>,
    /// Hard time limit of one run in milliseconds: the run is aborted (or its child killed).
    pub hard_timeout_ms: Option<u64>,
    /// Whether the task takes a `TaskContext`, and so can see its cancellation and clean up.
    pub uses_context: bool,
    /// Retries after a failed attempt.
    pub retries: Option<u32>,
    /// First retry delay in milliseconds.
    pub backoff_ms: Option<u64>,
    /// Longest retry delay in milliseconds.
    pub max_backoff_ms: Option<u64>,
    /// What the stub does with duplicates (a call's options win).
    pub on_duplicate: crate::OnDuplicate,
    /// Other names a worker runs this task under: names it had before a rename, so that
    /// messages already queued under them still run.
    pub aliases: &'static [&'static str],
    /// Which runs leave a record (`record = "failures"`; a call's options win).
    pub record: crate::RecordPolicy,
    /// Units of a node's capacity one run takes (`impact = 5`); `None`: 1.
    pub impact: Option<u32>,
    /// Whether a run has its node to itself (`exclusive`): the node takes nothing else until
    /// it ends.
    pub exclusive: bool,
    /// The cluster-wide limit its runs are under (`rate_limit`, `concurrency`, `limit`).
    pub limit: Option<crate::limits::TaskLimit>,
}

impl TaskOptions {
    /// No options.
    pub const fn new() -> Self {
        Self {
            default_queue: None,
            timeout_ms: None,
            hard_timeout_ms: None,
            uses_context: false,
            retries: None,
            backoff_ms: None,
            max_backoff_ms: None,
            on_duplicate: crate::OnDuplicate::Parallel,
            aliases: &[],
            record: crate::RecordPolicy::All,
            impact: None,
            exclusive: false,
            limit: None,
        }
    }
}

impl TaskRegistration {
    /// Builds a registration; `#[task]` calls this in a `const` context.
    pub const fn new(
        name: &'static str,
        kind: TaskKind,
        options: TaskOptions,
        handler: Handler,
        location: &'static str,
    ) -> Self {
        Self {
            name,
            kind,
            options,
            handler,
            location,
        }
    }
}

inventory::collect!(TaskRegistration);

/// Every task linked into this binary, in no particular order (duplicates included: the worker
/// rejects them at start).
pub fn registered_tasks() -> impl Iterator<Item = &'static TaskRegistration> {
    inventory::iter::<TaskRegistration>.into_iter()
}
