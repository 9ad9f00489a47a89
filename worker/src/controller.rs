//! The controller: answers control requests for this node (AWX's `--status`, `--running`,
//! `--reload`, `--cancel`).
//!
//! 1. Reads the control stream on its own connection from where it last was, so a request
//!    sent while the connection was down is still seen; skips requests past their deadline or
//!    meant for another node.
//! 2. Answers at once, whatever the pool is doing: status, running ids, reload, cancel.
//! 3. Keeps the node's cancel records and paused queues current: reloads them after every
//!    (re)connect and when told to.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use stevedore::broker::{Broker, Connection};
use stevedore::control::{Answer, Command, NodeStatus, Reply, Request};
use stevedore::Destination;
use stevedore_runtime::Backoff;
use tokio_util::sync::CancellationToken;

use crate::cancels::CancelBook;
use crate::capacity::Capacity;
use crate::pause::PauseGate;
use crate::pool::{Pool, PoolKind};
use crate::running::{Phase, RunningTasks};

const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Most ids of tasks waiting in the node's own queue that `running` lists.
const LISTED: usize = 1000;

/// What the controller needs of the node.
pub struct Controller {
    /// This node.
    pub node: Arc<str>,
    /// Redis.
    pub broker: Broker,
    /// The pool, for status and reload.
    pub pool: Pool,
    /// Held runs, for running ids and cancels.
    pub running: RunningTasks,
    /// Cancel records.
    pub cancels: CancelBook,
    /// Paused queues (wire names), shared with the fetchers.
    pub paused: Arc<PauseGate>,
    /// The node's capacity, for units in use and its exclusive run.
    pub capacity: Arc<Capacity>,
    /// The queues this node reads (wire names).
    pub queues: Vec<String>,
    /// The tasks this node links, sorted.
    pub tasks: Arc<[String]>,
    /// Longest block of one read.
    pub block: Duration,
    /// Where it starts reading the control stream: taken before the node reports itself
    /// ready, so no request sent after that is missed.
    pub position: String,
}

impl Controller {
    /// Answers requests until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut position = Some(self.position.clone());
        let mut backoff = Backoff::new(Duration::from_millis(100), MAX_BACKOFF);
        let mut failing = false;
        while !stop.is_cancelled() {
            let session = self.session(&mut position, &stop);
            match session.await {
                Ok(()) => return,
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, "control channel down; reconnecting");
                        crate::observe::reconnect("controller");
                        failing = true;
                    }
                    if !backoff.wait(&stop).await {
                        return;
                    }
                }
            }
        }
    }

    async fn session(
        &self,
        position: &mut Option<String>,
        stop: &CancellationToken,
    ) -> stevedore::Result<()> {
        let mut conn = self
            .broker
            .dedicated_connection(self.block, "control")
            .await?;
        if position.is_none() {
            *position = Some(self.broker.control_position().await?);
        }
        self.refresh().await?;
        loop {
            let after = position.clone().unwrap_or_else(|| "0-0".into());
            let requests = tokio::select! {
                requests = self.read(&mut conn, &after) => requests?,
                () = stop.cancelled() => return Ok(()),
            };
            for (entry_id, request) in requests {
                *position = Some(entry_id);
                self.answer(request).await?;
            }
        }
    }

    async fn read(
        &self,
        conn: &mut Connection,
        after: &str,
    ) -> stevedore::Result<Vec<(String, Request)>> {
        self.broker.read_control(conn, after, self.block).await
    }

    async fn answer(&self, request: Request) -> stevedore::Result<()> {
        if !request.target.includes(&self.node) || request.deadline_ms < stevedore::now_ms() {
            return Ok(());
        }
        tracing::debug!(command = ?request.command, "control request");
        let answer = match request.command {
            Command::Status => Answer::Status(self.status().await?),
            Command::Running => {
                let mut queued = self.running.ids(Phase::Queued);
                queued.extend(self.own_queue_waiting().await?.0);
                Answer::Running {
                    running: self.running.ids(Phase::Running),
                    queued,
                }
            }
            Command::Reload => {
                let workers = self.pool.status().len();
                self.pool.reload().await;
                Answer::Reloaded { workers }
            }
            Command::Cancel(selector) => {
                self.cancels.refresh(&self.broker).await?;
                // The records just reread hold this cancel (stored before it was sent), with
                // its time and arguments: the same rule as for runs not started yet.
                let cancels = &self.cancels;
                let ids = self.running.cancel(|id, key| {
                    selector.ids.iter().any(|c| c == id) || cancels.cancels_run(id, key)
                });
                if !ids.is_empty() {
                    tracing::info!(?ids, "cancelled running tasks");
                }
                Answer::Cancelled { ids }
            }
            Command::Refresh => {
                self.refresh().await?;
                Answer::Refreshed
            }
            Command::Registered => Answer::Registered {
                tasks: self.tasks.to_vec(),
            },
        };
        let reply = Reply {
            node: self.node.to_string(),
            answer,
        };
        self.broker.reply_control(&request.reply_to, &reply).await
    }

    /// Reloads cancel records and paused queues.
    async fn refresh(&self) -> stevedore::Result<()> {
        self.cancels.refresh(&self.broker).await?;
        let paused: BTreeSet<String> = self.broker.paused_queues().await?.into_iter().collect();
        self.paused.set(paused, &self.broker).await;
        Ok(())
    }

    /// What waits in this node's own queue, not read yet (at most `LISTED` ids, and the count).
    async fn own_queue_waiting(&self) -> stevedore::Result<(Vec<String>, u64)> {
        let own = Destination::node(&self.node)?;
        self.broker.waiting_in(&own, LISTED).await
    }

    async fn status(&self) -> stevedore::Result<NodeStatus> {
        let config = self.pool.config();
        let paused = self.paused.snapshot().await;
        let waiting = self.own_queue_waiting().await?.1 as usize;
        Ok(NodeStatus {
            node: self.node.to_string(),
            pid: std::process::id(),
            pool: match config.kind {
                PoolKind::Async => "async".into(),
                PoolKind::Process => "process".into(),
            },
            min_workers: config.min_workers,
            max_workers: config.max_workers,
            queued: self.running.ids(Phase::Queued).len() + waiting,
            workers: self.pool.status(),
            queues: self
                .queues
                .iter()
                .map(|q| (q.clone(), paused.contains(q)))
                .collect::<BTreeMap<_, _>>(),
            units_in_use: self.capacity.in_use(),
            exclusive: self.capacity.exclusive(),
        })
    }
}
