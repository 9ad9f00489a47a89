//! How a task says it failed: retry later, fail for good, or stop because it was cancelled.

use std::fmt;
use std::time::Duration;

/// The error a task returns. Any `std::error::Error` converts into it with `?`.
///
/// ```no_run
/// use std::time::Duration;
/// use stevedore::{task, TaskError};
///
/// #[task(name = "mail.send", retries = 5, backoff = "1s")]
/// async fn send(to: String) -> Result<(), TaskError> {
///     if !to.contains('@') {
///         return Err(TaskError::fatal("not an address")); // no retry
///     }
///     if to.ends_with("@busy.example") {
///         // Retried after this delay instead of the backoff.
///         return Err(TaskError::retry_after(Duration::from_secs(30), "mailbox busy"));
///     }
///     std::fs::read_to_string("/etc/mail.conf")?; // an io::Error fails the attempt (retried)
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// It deliberately does not implement `std::error::Error` itself (as `anyhow::Error` does not),
/// so that the blanket conversion can exist.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskError {
    kind: TaskErrorKind,
    message: String,
}

/// What the worker should do with a failed task.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskErrorKind {
    /// Failed; retried if the task has retries left.
    Failed,
    /// Failed; never retried, whatever the retry budget.
    Fatal,
    /// Asked to be run again after this delay.
    RetryAfter(Duration),
    /// Stopped because it was cancelled.
    Cancelled,
}

impl TaskError {
    /// A failure that may be retried.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            kind: TaskErrorKind::Failed,
            message: message.into(),
        }
    }

    /// A failure that must not be retried (bad input, a task that cannot succeed).
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            kind: TaskErrorKind::Fatal,
            message: message.into(),
        }
    }

    /// Ask to be run again after `delay`.
    pub fn retry_after(delay: Duration, message: impl Into<String>) -> Self {
        Self {
            kind: TaskErrorKind::RetryAfter(delay),
            message: message.into(),
        }
    }

    /// The task stopped because it was cancelled.
    pub fn cancelled() -> Self {
        Self {
            kind: TaskErrorKind::Cancelled,
            message: "cancelled".into(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> TaskErrorKind {
        self.kind
    }

    /// The message recorded in the task record.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for TaskError {
    fn from(error: E) -> Self {
        Self::new(error.to_string())
    }
}
