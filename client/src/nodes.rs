//! Node health as other nodes and the CLI see it: heartbeats with capacity (AWX's heartbeat
//! and capacity check).

use serde::{Deserialize, Serialize};

/// What a worker process says about itself every few seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeBeat {
    /// The node name.
    pub node: String,
    /// The consumer name of this process: unique per process start.
    pub consumer: String,
    /// The stevedore version.
    pub version: String,
    /// The message format version it reads.
    pub protocol: u32,
    /// Its process id.
    pub pid: u32,
    /// When the process started (ms since the epoch).
    pub started_at: u64,
    /// The shared queues it reads.
    pub queues: Vec<String>,
    /// `async` or `process`.
    pub pool: String,
    /// Workers at most.
    pub max_workers: usize,
    /// Workers busy now.
    pub busy: usize,
    /// Whether its fetchers are reading (false while Redis connections are down, or when it
    /// stopped taking work).
    pub consuming: bool,
    /// The last time it took or finished a task (ms since the epoch), if ever.
    pub last_work_at: Option<u64>,
}

impl NodeBeat {
    /// Free capacity: workers it could start a task on now.
    pub fn free(&self) -> usize {
        if self.consuming {
            self.max_workers.saturating_sub(self.busy)
        } else {
            0
        }
    }
}

/// A node's last heartbeat, and whether it is lost.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeHealth {
    /// What it said.
    pub beat: NodeBeat,
    /// When Redis received its last heartbeat (ms, Redis's clock).
    pub beat_at: u64,
    /// Whether the heartbeat is older than the grace period: its capacity counts as zero and
    /// its work is reaped.
    pub lost: bool,
}

impl NodeHealth {
    /// Free capacity: zero for a lost node.
    pub fn free(&self) -> usize {
        if self.lost {
            0
        } else {
            self.beat.free()
        }
    }
}
