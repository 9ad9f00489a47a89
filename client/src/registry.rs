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
    /// The queue the stub publishes to when the call names none.
    pub default_queue: Option<&'static str>,
    /// Runs one invocation.
    pub handler: Handler,
    /// Where it was declared (`file:line`), to explain duplicate names.
    pub location: &'static str,
}

impl TaskRegistration {
    /// Builds a registration; `#[task]` calls this in a `const` context.
    pub const fn new(
        name: &'static str,
        kind: TaskKind,
        default_queue: Option<&'static str>,
        handler: Handler,
        location: &'static str,
    ) -> Self {
        Self {
            name,
            kind,
            default_queue,
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
