//! Nodes as operators see them: every worker process, live or lost, in one list.
//!
//! ```text
//!   beats ──► live ──(no beat for lost_after)──► lost, not yet reaped ──(a peer reaps)──►
//!   lost, reaped N  ──(--lost-retention)──► forgotten
//! ```
//!
//! A process that stopped cleanly is not listed: it held nothing and nobody needs to act.

use serde::Serialize;

use super::Admin;
use crate::nodes::{GoneState, NodeBeat};
use crate::Result;

/// Whether a worker process is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Its heartbeat is fresh.
    Live,
    /// Its heartbeat stopped: its capacity counts as zero and its work is (or was) reaped.
    Lost,
}

impl NodeState {
    /// `live` or `lost`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Lost => "lost",
        }
    }
}

/// One worker process (the row of `stevedore nodes --json`, documented in docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    /// What it said in its last heartbeat.
    #[serde(flatten)]
    pub beat: NodeBeat,
    /// Live or lost.
    pub state: NodeState,
    /// When Redis received its last heartbeat (ms since the epoch; `None` once reaped).
    pub beat_at: Option<u64>,
    /// When it was found lost (ms since the epoch): its last beat plus `lost_after` while not
    /// yet reaped, then when a peer reaped it.
    pub lost_at: Option<u64>,
    /// Entries peers reaped from it (0 while not yet reaped; `None` while live).
    pub reaped: Option<u64>,
    /// Units it could start a task on now (0 when lost or not consuming).
    pub free: usize,
}

impl NodeView {
    /// Whether it is lost.
    pub fn is_lost(&self) -> bool {
        self.state == NodeState::Lost
    }
}

/// How many processes are live and lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NodeCounts {
    /// Processes with a fresh heartbeat.
    pub live: usize,
    /// Processes lost within the retention (reaped or not yet).
    pub lost: usize,
}

impl NodeCounts {
    /// The counts of `nodes`.
    pub fn of(nodes: &[NodeView]) -> Self {
        let lost = nodes.iter().filter(|n| n.is_lost()).count();
        Self {
            live: nodes.len() - lost,
            lost,
        }
    }
}

impl Admin {
    /// Every worker process: live ones, lost ones not yet reaped, and lost ones reaped within
    /// the workers' `--lost-retention`; sorted by node, live before lost.
    pub async fn nodes(&self) -> Result<Vec<NodeView>> {
        node_views(self.broker(), self.lost_after()).await
    }

    /// Whether a process of `node` beats now or was lost or stopped within the retention.
    pub async fn node_seen(&self, node: &str) -> Result<bool> {
        let broker = self.broker();
        let beating = (broker.nodes(self.lost_after()).await?.iter()).any(|n| n.beat.node == node);
        Ok(beating || (broker.gone_processes().await?.iter()).any(|g| g.beat.node == node))
    }
}

/// The node list ([`Admin::nodes`]) read through `broker`.
pub(crate) async fn node_views(
    broker: &crate::broker::Broker,
    lost_after: std::time::Duration,
) -> Result<Vec<NodeView>> {
    let (beating, gone) = tokio::try_join!(broker.nodes(lost_after), broker.gone_processes())?;
    let lost_after = lost_after.as_millis() as u64;
    let mut views: Vec<NodeView> = (beating.into_iter())
        .map(|n| NodeView {
            free: n.free(),
            state: if n.lost {
                NodeState::Lost
            } else {
                NodeState::Live
            },
            lost_at: n.lost.then_some(n.beat_at + lost_after),
            reaped: n.lost.then_some(0),
            beat_at: Some(n.beat_at),
            beat: n.beat,
        })
        .collect();
    let listed =
        |consumer: &str, views: &[NodeView]| views.iter().any(|v| v.beat.consumer == consumer);
    for g in gone.into_iter().filter(|g| g.state == GoneState::Lost) {
        if !listed(&g.beat.consumer, &views) {
            views.push(NodeView {
                beat: g.beat,
                state: NodeState::Lost,
                beat_at: None,
                lost_at: Some(g.at),
                reaped: Some(g.reaped),
                free: 0,
            });
        }
    }
    views.sort_by(|a, b| {
        (&a.beat.node, a.is_lost(), &a.beat.consumer).cmp(&(
            &b.beat.node,
            b.is_lost(),
            &b.beat.consumer,
        ))
    });
    Ok(views)
}

/// The live nodes' names, and those of nodes whose every listed process is lost.
pub(crate) fn split_live_and_lost(nodes: &[NodeView]) -> (Vec<String>, Vec<String>) {
    let (mut live, mut lost) = (Vec::new(), Vec::new());
    for view in nodes {
        let set = if view.is_lost() { &mut lost } else { &mut live };
        if !set.contains(&view.beat.node) {
            set.push(view.beat.node.clone());
        }
    }
    lost.retain(|node| !live.contains(node));
    (live, lost)
}
