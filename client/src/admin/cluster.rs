//! The rest of what operators see and do: the cluster at a glance, schedules, limits,
//! events, workflows and remote control. Each names what it reads; an unknown name is
//! [`crate::Error::NotFound`].

use std::time::Duration;

use super::{not_found, Admin, NodeView, QueueView};
use crate::broker::{LimitInfo, TaskEvent};
use crate::control::{CancelSelector, Command, NodeAnswer, Target};
use crate::limits::LimitSpec;
use crate::schedule::Schedule;
use crate::workflow::WorkflowView;
use crate::{Result, Workflow, WorkflowHandle};

/// One minute of every queue's depth: (minute = ms since the epoch / 60,000, samples by
/// queue).
pub type QueueMinutes = (
    u64,
    std::collections::BTreeMap<String, crate::broker::QueueSample>,
);

/// The cluster at a glance: what the dashboard's overview and the cluster metrics show.
#[derive(Debug, Clone)]
pub struct Overview {
    /// Every queue.
    pub queues: Vec<QueueView>,
    /// Every worker process, live and lost.
    pub nodes: Vec<NodeView>,
    /// The beat holding the leader lease (`BEAT_ID:TOKEN`), if any.
    pub beat_leader: Option<String>,
    /// Runs settled per minute, oldest minute first: (minute, runs).
    pub throughput: Vec<(u64, u64)>,
    /// Schedule runs beat counted: `fired`, `missed`, `failed`.
    pub schedule_runs: [(&'static str, u64); 3],
}

impl Admin {
    /// The cluster at a glance, with `minutes` minutes of throughput (the reads run at once).
    pub async fn overview(&self, minutes: u64) -> Result<Overview> {
        let broker = self.broker();
        let (queues, nodes, beat_leader, throughput, schedule_runs) = tokio::try_join!(
            self.queues(),
            self.nodes(),
            broker.beat_leader(),
            broker.throughput(minutes),
            broker.schedule_run_counts(),
        )?;
        Ok(Overview {
            queues,
            nodes,
            beat_leader,
            throughput,
            schedule_runs,
        })
    }

    /// Each queue's depth per minute over the last `minutes` (waiting tasks and the oldest's
    /// age, sampled by the workers reading it), oldest minute first.
    pub async fn queue_minutes(&self, minutes: u64) -> Result<Vec<QueueMinutes>> {
        self.broker().queue_minutes(minutes).await
    }

    /// Every schedule with its next due time, and the names of stored schedules that do not
    /// decode, each with why.
    pub async fn schedules(&self) -> Result<(ScheduleList, Vec<(String, String)>)> {
        self.broker().schedules().await
    }

    /// Schedule `name` with its next due time; [`crate::Error::NotFound`] when there is none.
    pub async fn schedule(&self, name: &str) -> Result<(Schedule, Option<u64>)> {
        (self.client.schedule(name).await?).ok_or_else(|| missing_schedule(name))
    }

    /// Creates or replaces a schedule.
    pub async fn put_schedule(&self, schedule: &Schedule) -> Result<()> {
        self.client.put_schedule(schedule).await
    }

    /// Removes schedule `name`; [`crate::Error::NotFound`] when there is none.
    pub async fn remove_schedule(&self, name: &str) -> Result<()> {
        match self.client.remove_schedule(name).await? {
            true => Ok(()),
            false => Err(missing_schedule(name)),
        }
    }

    /// Pauses (`true`) or resumes schedule `name`; [`crate::Error::NotFound`] when there is
    /// none.
    pub async fn pause_schedule(&self, name: &str, paused: bool) -> Result<()> {
        match self.client.pause_schedule(name, paused).await? {
            true => Ok(()),
            false => Err(missing_schedule(name)),
        }
    }

    /// Publishes schedule `name`'s task now, as beat would at a firing, outside its timing
    /// (its next due time does not move, a paused schedule stays paused); returns the task
    /// id. [`crate::Error::NotFound`] when there is no such schedule.
    pub async fn run_schedule_now(&self, name: &str) -> Result<String> {
        let (schedule, _) = self.schedule(name).await?;
        let message = schedule.message(crate::now_ms())?;
        let id = message.id.clone();
        self.client.publish(message).await?;
        Ok(id)
    }

    /// Defines (or redefines) limit `name`.
    pub async fn set_limit(&self, name: &str, spec: &LimitSpec) -> Result<()> {
        self.broker().set_limit(name, spec).await
    }

    /// Every defined limit with its use now, and the names of those whose definition does
    /// not read, each with why.
    pub async fn limits(&self) -> Result<(Vec<LimitInfo>, Vec<(String, String)>)> {
        self.broker().limits().await
    }

    /// Limit `name` with its use now; [`crate::Error::NotFound`] when it is not defined.
    pub async fn limit(&self, name: &str) -> Result<LimitInfo> {
        (self.broker().limit(name).await?).ok_or_else(|| missing_limit(name))
    }

    /// Removes limit `name`; [`crate::Error::NotFound`] when it is not defined.
    pub async fn remove_limit(&self, name: &str) -> Result<()> {
        match self.broker().remove_limit(name).await? {
            true => Ok(()),
            false => Err(missing_limit(name)),
        }
    }

    /// The newest `count` task events, oldest first.
    pub async fn recent_events(&self, count: usize) -> Result<Vec<TaskEvent>> {
        self.broker().recent_events(count).await
    }

    /// Follows the events after entry `after` (`0-0`: from the start).
    pub fn follow_events(&self, after: String) -> EventFollower {
        EventFollower {
            admin: self.clone(),
            after,
            conn: None,
        }
    }

    /// Submits a workflow.
    pub async fn submit_workflow(&self, workflow: Workflow) -> Result<WorkflowHandle> {
        self.client.submit(workflow).await
    }

    /// Workflow `id`'s steps as they stand (an error when there is no such workflow).
    pub async fn workflow(&self, id: &str) -> Result<WorkflowView> {
        self.client.workflow(id).show().await
    }

    /// Up to `limit` workflows that have not ended, the most recently active first, each with
    /// when it last moved (ms since the epoch).
    pub async fn active_workflows(&self, limit: usize) -> Result<Vec<(String, u64)>> {
        self.broker().active_workflows(limit).await
    }

    /// Cancels workflow `id`; returns the ids of the steps cancelled.
    pub async fn cancel_workflow(&self, id: &str, timeout: Duration) -> Result<Vec<String>> {
        self.client.workflow(id).cancel(timeout).await
    }

    /// Sends `command` to `target` and collects the answers until `timeout` (a lost node is
    /// reported lost, not asked).
    pub async fn ask(
        &self,
        target: Target,
        command: Command,
        timeout: Duration,
    ) -> Result<Vec<NodeAnswer>> {
        self.client.control(target, command, timeout).await
    }

    /// Cancels the tasks `selector` names, wherever they are.
    pub async fn cancel(
        &self,
        selector: CancelSelector,
        timeout: Duration,
    ) -> Result<Vec<NodeAnswer>> {
        self.client.cancel(selector, timeout).await
    }
}

/// Schedules with their next due times.
pub type ScheduleList = Vec<(Schedule, Option<u64>)>;

/// Reads task events as they come ([`Admin::follow_events`]); reconnects on the next call
/// after a failure.
pub struct EventFollower {
    admin: Admin,
    after: String,
    conn: Option<crate::broker::Connection>,
}

impl EventFollower {
    /// The events after the last one returned, waiting up to `block` for some (empty when none
    /// came). After an error, the next call reconnects and resumes where it was.
    pub async fn next(&mut self, block: Duration) -> Result<Vec<TaskEvent>> {
        let broker = self.admin.broker();
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => (self.conn).insert(broker.dedicated_connection(block, "events").await?),
        };
        match broker.events_after(conn, &self.after, block).await {
            Ok(events) => {
                if let Some(last) = events.last() {
                    self.after.clone_from(&last.entry_id);
                }
                Ok(events)
            }
            Err(error) => {
                self.conn = None;
                Err(error)
            }
        }
    }
}

fn missing_schedule(name: &str) -> crate::Error {
    not_found("schedule", name, "see `stevedore schedule list`")
}

fn missing_limit(name: &str) -> crate::Error {
    not_found("limit", name, "define it with `stevedore limit set`")
}
