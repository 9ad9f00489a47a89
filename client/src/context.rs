//! What a running task may ask for: its id, attempt, node, cancellation, and a client.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::Client;

/// The context of one run, passed to a task that takes a `TaskContext` parameter
/// (dispatcherd's `bind=True`).
///
/// ```no_run
/// use stevedore::{task, TaskContext, TaskError};
///
/// #[task(name = "reports.build")]
/// async fn build(ctx: TaskContext, pages: u32) -> Result<u32, TaskError> {
///     for page in 0..pages {
///         if ctx.cancellation().is_cancelled() {
///             return Err(TaskError::cancelled()); // stopped by `stevedore cancel`
///         }
///         println!("{} page {page} on {} (attempt {})", ctx.id(), ctx.node(), ctx.attempt());
///     }
///     Ok(pages)
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone)]
pub struct TaskContext {
    id: Arc<str>,
    task: Arc<str>,
    attempt: u32,
    node: Arc<str>,
    queue: Arc<str>,
    cancel: CancellationToken,
    client: Client,
    progress: Arc<crate::progress::Gate>,
}

impl TaskContext {
    /// Builds the context of one run; the worker calls this.
    pub fn new(
        id: &str,
        task: &str,
        attempt: u32,
        node: Arc<str>,
        queue: &str,
        cancel: CancellationToken,
        client: Client,
    ) -> Self {
        Self {
            id: id.into(),
            task: task.into(),
            attempt,
            node,
            queue: queue.into(),
            cancel,
            client,
            progress: Arc::default(),
        }
    }

    /// The task id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The registered task name.
    pub fn task(&self) -> &str {
        &self.task
    }

    /// The attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The node running the task.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Where the task was published (`NAME`, `node:NAME` or `broadcast`).
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Cancelled when the task should stop (cancel request, shutdown deadline).
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the task has been asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// A client to publish further tasks with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Reports how far the run got: `done` units of `total` (0: unknown), with `message`
    /// (cut to 1 KiB). Seen from [`crate::TaskHandle::progress`], `stevedore task`, the
    /// dashboard and the event stream. Throttled to one write per 200 ms (reports in between
    /// are dropped; one saying the work is done is always written), so a tight loop may
    /// call it freely.
    ///
    /// ```no_run
    /// use stevedore::{task, TaskContext, TaskError};
    ///
    /// #[task(name = "reports.render")]
    /// async fn render(ctx: TaskContext, pages: u64) -> Result<(), TaskError> {
    ///     for page in 1..=pages {
    ///         ctx.set_progress(page, pages, format!("page {page}")).await?;
    ///     }
    ///     Ok(())
    /// }
    /// # fn main() {}
    /// ```
    pub async fn set_progress(
        &self,
        done: u64,
        total: u64,
        message: impl Into<String>,
    ) -> crate::Result<()> {
        let progress = crate::Progress::new(done, total, message.into(), crate::now_ms());
        if !self.progress.admits(&progress) {
            return Ok(());
        }
        let by = crate::broker::Reporter {
            id: &self.id,
            task: &self.task,
            queue: &self.queue,
            node: &self.node,
            attempt: self.attempt,
        };
        self.client.broker().set_progress(&by, &progress).await
    }
}
