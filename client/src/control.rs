//! Remote control of worker nodes (AWX's `run_dispatcher --status/--running/--reload/--cancel`):
//! the requests, the replies, and what a node reports about its pool.
//!
//! A request is appended to the control stream, which every node reads from where it last was;
//! each addressed node replies onto the request's reply list. The asker waits for the replies up
//! to a deadline and reports the nodes that did not answer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which nodes a request is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Every node.
    All,
    /// One node.
    Node(String),
}

impl Target {
    /// Whether `node` should answer.
    pub fn includes(&self, node: &str) -> bool {
        match self {
            Self::All => true,
            Self::Node(n) => n == node,
        }
    }
}

/// What a request asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// The pool: every worker with its counters and current task.
    Status,
    /// Ids of running and queued tasks.
    Running,
    /// Recycle every worker; each finishes its current task first.
    Reload,
    /// Stop these tasks wherever they run or wait.
    Cancel(CancelSelector),
    /// Reread the cancel records and paused queues (sent after they change).
    Refresh,
    /// The tasks the node can run (Celery's `inspect registered`).
    Registered,
}

/// Which tasks a cancel selects: ids, or a task name (optionally with exact arguments).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CancelSelector {
    /// Task ids.
    pub ids: Vec<String>,
    /// A task name: every task of that name published before the cancel.
    pub task: Option<String>,
    /// With `task`: only calls with exactly these positional arguments.
    pub args: Option<Vec<rmpv::Value>>,
}

impl CancelSelector {
    /// Cancels these ids.
    pub fn ids(ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            ids: ids.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Cancels every task named `task` published before now.
    pub fn task(task: impl Into<String>) -> Self {
        Self {
            task: Some(task.into()),
            ..Self::default()
        }
    }

    /// Whether it selects something in particular (a cancel of everything is refused).
    pub fn is_specific(&self) -> bool {
        !self.ids.is_empty() || self.task.as_deref().is_some_and(|t| !t.is_empty())
    }
}

/// One control request as it travels on the control stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Request id (a UUID).
    pub id: String,
    /// Who should answer.
    pub target: Target,
    /// What to do.
    pub command: Command,
    /// The list key the answers go to.
    pub reply_to: String,
    /// Answers after this time (ms since the epoch) are useless; nodes skip the request.
    pub deadline_ms: u64,
}

/// One node's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The node.
    pub node: String,
    /// What it says.
    pub answer: Answer,
}

/// The body of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    /// For [`Command::Status`].
    Status(NodeStatus),
    /// For [`Command::Running`].
    Running {
        /// Tasks on a worker.
        running: Vec<String>,
        /// Tasks read and waiting for a worker.
        queued: Vec<String>,
    },
    /// For [`Command::Registered`]: task names, sorted.
    Registered {
        /// The names.
        tasks: Vec<String>,
    },
    /// For [`Command::Reload`].
    Reloaded {
        /// Workers recycled at once (idle); busy ones follow when their run ends.
        workers: usize,
    },
    /// For [`Command::Cancel`]: the ids this node stopped.
    Cancelled {
        /// Ids that were running or queued here.
        ids: Vec<String>,
    },
    /// For [`Command::Refresh`].
    Refreshed,
}

/// What a node says about itself and its pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node.
    pub node: String,
    /// Its process id.
    pub pid: u32,
    /// `async` or `process`.
    pub pool: String,
    /// Workers at least.
    pub min_workers: usize,
    /// Workers at most.
    pub max_workers: usize,
    /// Runs read and waiting for a worker.
    pub queued: usize,
    /// Every worker.
    pub workers: Vec<WorkerStatus>,
    /// The queues it reads, with `paused` ones marked.
    pub queues: BTreeMap<String, bool>,
    /// Units of its capacity (`max_workers`) held by runs now.
    #[serde(default)]
    pub units_in_use: u32,
    /// The exclusive run it drains for or runs alone, if any.
    #[serde(default)]
    pub exclusive: Option<ExclusiveRun>,
}

/// A run that has (or waits to have) its node to itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExclusiveRun {
    /// The task id.
    pub id: String,
    /// The task name.
    pub task: String,
    /// Whether it runs (else its node drains for it).
    pub running: bool,
}

/// One worker of a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Its id in the pool.
    pub id: u32,
    /// Its process id (process pool).
    pub pid: Option<u32>,
    /// Runs handed to it.
    pub sent: u64,
    /// Runs it finished.
    pub finished: u64,
    /// Runs it holds (0 or 1: a run goes only to an idle worker).
    pub queued: u64,
    /// Resident memory in bytes (process pool).
    pub rss_bytes: Option<u64>,
    /// What it runs now.
    pub current: Option<CurrentTask>,
}

/// The task a worker runs now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentTask {
    /// The task id.
    pub id: String,
    /// The task name.
    pub task: String,
    /// A short shape of the call, never its arguments: `tests.add(<2 args>)`.
    pub shape: String,
    /// Since when (ms since the epoch).
    pub since_ms: u64,
}

/// A node's answer, or the fact that it did not answer in time.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeAnswer {
    /// It answered.
    Answered(Reply),
    /// It did not answer before the deadline.
    NotAnswering(String),
    /// Its heartbeat is older than the grace period: it was not waited for.
    Lost(String),
}

/// A cancel or pause record kept durably in Redis (the `cancels` hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelRecord {
    /// What it cancels.
    pub selector: CancelSelector,
    /// When it was made (ms since the epoch): name cancels hit tasks published before it.
    pub at_ms: u64,
    /// When it lapses (ms since the epoch).
    pub until_ms: u64,
}
