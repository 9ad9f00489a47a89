//! The operator API: everything an operator sees or does, typed, in one place (asynq's
//! `Inspector`, Sidekiq's `Sidekiq::API`). The `stevedore` command line, the dashboard and
//! the cluster metrics all read through it, so every view tells the same truth.
//!
//! 1. **Nodes** ([`Admin::nodes`]): every worker process, live or lost, one [`NodeView`] each;
//!    a lost process stays listed (with when it was lost and how many entries were reaped
//!    from it) for the workers' `--lost-retention`.
//! 2. **Queues** ([`Admin::queues`], [`Admin::queue`]): counts, paused or not; a queue's
//!    tasks per state; purge; pause and resume.
//! 3. **Tasks** ([`Admin::task`]): a task's record, or where it waits when it has none;
//!    finished tasks found by state, queue, name, age and error ([`Admin::tasks`]); each
//!    task's runs, failures and run times per minute ([`Admin::task_minutes`]).
//! 4. **Dead letters** ([`Admin::dead_letters`] and the rest of `dead.rs`): list, show,
//!    requeue one, some or all (one stopping rule: the letters there when it began), delete,
//!    purge.
//! 5. **Schedules, limits, workflows, events, control**: the same reads and actions the
//!    client offers, each failing with [`Error::NotFound`] when it names nothing.
//! 6. **Formatting** ([`mod@format`]): one way to print times and durations; [`json`]: one
//!    JSON shape per view, for the command line's `--json` and the dashboard's `/api`.
//!
//! An unknown name (queue, node, task, schedule, limit, workflow, dead letter) is
//! [`Error::NotFound`]: the command line exits non-zero with one line, the dashboard answers
//! 404.

mod cluster;
mod dead;
pub mod format;
mod history;
pub mod json;
mod nodes;
mod queues;
mod tasks;

use std::time::Duration;

pub use cluster::{EventFollower, Overview, QueueMinutes};
pub use dead::RequeueReport;
pub use history::{history_state, TaskMinutes, TaskPage, TaskQuery, TaskRow};
pub(crate) use nodes::{node_views, split_live_and_lost};
pub use nodes::{NodeCounts, NodeState, NodeView};
pub use queues::QueueView;
pub use tasks::TaskView;

/// The types the operator API answers with, defined where they are read.
pub use crate::broker::{
    DeadLetter, LimitInfo, Listed, QueueInfo, QueueSample, TaskEvent, TaskMinute, Whereabouts,
    HISTORY_STATES, RUN_TIME_BUCKETS_MS,
};

use crate::broker::Broker;
use crate::{Client, Error};

/// The operator API over one client (cheap to clone: it shares the client's connections).
#[derive(Clone)]
pub struct Admin {
    client: Client,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl Admin {
    /// The operator API over `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The client underneath (to publish, or to wait for a task).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// How old a heartbeat may be before its process counts as lost (the client config's
    /// `lost_after`: set it to the workers' `--lost-after`).
    pub fn lost_after(&self) -> Duration {
        self.broker().config().lost_after
    }

    fn broker(&self) -> &Broker {
        self.client.broker()
    }
}

impl Client {
    /// The operator API over this client ([`Admin`]).
    pub fn admin(&self) -> Admin {
        Admin::new(self.clone())
    }
}

/// [`Error::NotFound`] for `kind` `name`, with what to do.
pub(crate) fn not_found(kind: &'static str, name: &str, hint: &str) -> Error {
    Error::NotFound {
        kind,
        name: name.escape_debug().to_string(),
        hint: hint.to_owned(),
    }
}
