//! Hooks: app code run at a node's start and shutdown and around each task, and tasks to
//! publish once at each node's start (dispatcherd's worker hooks and start-up tasks).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use stevedore::{Client, Message, TaskState};

/// A node, as its hooks see it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node's name.
    pub node: String,
    /// A client to publish with.
    pub client: Client,
}

/// A run, as the task hooks see it (never its arguments).
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The task id.
    pub id: String,
    /// The task name.
    pub task: String,
    /// The node.
    pub node: String,
    /// The attempt, from 1.
    pub attempt: u32,
    /// How it ended (`running` for the before-task hook).
    pub state: TaskState,
}

type NodeHook = Arc<dyn Fn(NodeInfo) -> BoxFuture<'static, ()> + Send + Sync>;
type RunHook = Arc<dyn Fn(RunInfo) -> BoxFuture<'static, ()> + Send + Sync>;
type StartTask = Arc<dyn Fn(&str) -> stevedore::Result<Message> + Send + Sync>;

/// The hooks of a worker; build them with [`crate::Worker`].
#[derive(Clone, Default)]
pub struct Hooks {
    pub(crate) on_start: Vec<NodeHook>,
    pub(crate) on_shutdown: Vec<NodeHook>,
    pub(crate) before_task: Vec<RunHook>,
    pub(crate) after_task: Vec<RunHook>,
    pub(crate) start_tasks: Vec<StartTask>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("on_start", &self.on_start.len())
            .field("on_shutdown", &self.on_shutdown.len())
            .field("before_task", &self.before_task.len())
            .field("after_task", &self.after_task.len())
            .field("start_tasks", &self.start_tasks.len())
            .finish()
    }
}

impl Hooks {
    /// Runs the start hooks, then publishes the start-up tasks.
    pub(crate) async fn started(&self, info: &NodeInfo) -> stevedore::Result<()> {
        for hook in &self.on_start {
            hook(info.clone()).await;
        }
        let messages = self
            .start_tasks
            .iter()
            .map(|make| make(&info.node))
            .collect::<stevedore::Result<Vec<_>>>()?;
        if !messages.is_empty() {
            info.client.publish_many(messages).await?;
        }
        Ok(())
    }

    /// Runs the shutdown hooks.
    pub(crate) async fn stopping(&self, info: &NodeInfo) {
        for hook in &self.on_shutdown {
            hook(info.clone()).await;
        }
    }

    /// Whether any task hook is set (so runs skip building [`RunInfo`] when none is).
    pub(crate) fn has_task_hooks(&self) -> bool {
        !self.before_task.is_empty() || !self.after_task.is_empty()
    }

    /// Runs the before-task hooks.
    pub(crate) async fn before(&self, info: &RunInfo) {
        for hook in &self.before_task {
            hook(info.clone()).await;
        }
    }

    /// Runs the after-task hooks.
    pub(crate) async fn after(&self, info: &RunInfo) {
        for hook in &self.after_task {
            hook(info.clone()).await;
        }
    }
}
