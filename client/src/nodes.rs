//! Node health as other nodes and the CLI see it: heartbeats with capacity (AWX's heartbeat
//! and capacity check).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The workers' default grace period (`--lost-after`): a heartbeat older than this is lost.
pub const DEFAULT_LOST_AFTER: Duration = Duration::from_secs(15);

/// How long a gone process is kept (`--lost-retention`): lost ones are listed by `nodes` that
/// long, and a node's broadcast group is deleted once the node has been gone that long.
pub const DEFAULT_LOST_RETENTION: Duration = Duration::from_secs(3600);

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

/// How a worker process went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoneState {
    /// Its heartbeat stopped; a peer reaped its work.
    Lost,
    /// It stopped cleanly, holding nothing.
    Stopped,
}

impl GoneState {
    /// `lost` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lost => "lost",
            Self::Stopped => "stopped",
        }
    }
}

/// A worker process that is gone, kept for the retention (AWX keeps lost instances too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoneProcess {
    /// Its last heartbeat.
    pub beat: NodeBeat,
    /// How it went.
    pub state: GoneState,
    /// When it was found lost or stopped (ms since the epoch).
    pub at: u64,
    /// Entries reaped from it (0 when stopped).
    pub reaped: u64,
}
