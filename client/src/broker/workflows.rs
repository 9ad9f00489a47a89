//! Workflows in Redis: storing one, joining its steps' outcomes, publishing what becomes ready
//! exactly once, sweeping, cancelling and reading one.
//!
//! 1. A workflow's keys share one hash tag (`NS:{w:ID}:...`), so every join is one script in
//!    one slot (`scripts/workflow.lua`): it records the step's outcome, moves the counters and
//!    puts what became ready in the workflow's outbox, atomically.
//! 2. What is in the outbox is published with `publish_fired.lua` in the target queue's slot,
//!    at most once per step (a marker keyed by the step's task id), and only then removed from
//!    the outbox: a process that dies in between leaves it for the next join of the same step
//!    or for the sweeper, which publishes it; the marker makes the second publish a no-op.
//! 3. The sweeper ([`Broker::sweep_workflows`], run by every worker's reaper) looks only at
//!    workflows idle for a while (`NS:{r}:workflows`, scored by last activity).
//! 4. A step's message is sealed by whoever submitted the workflow (purpose `workflow step`),
//!    and opened with the same keys before it is published: with signing on, a step written
//!    into Redis by someone without a key is never published.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::Value;

use super::scripts::{Sending, PUBLISH_FIRED, WORKFLOW};
use super::Broker;
use crate::signing::Purpose;
use crate::{Destination, Error, Message, Result, RunRecord, TaskState};

/// The message header that ties a step's message to its workflow: `WORKFLOW_ID:STEP`.
pub const WORKFLOW_HEADER: &str = "workflow";

/// How long a workflow is idle before the sweeper publishes what its outbox still holds.
pub const SWEEP_AFTER: Duration = Duration::from_secs(30);

/// Most idle workflows one sweep looks at.
const SWEEP_BATCH: usize = 100;

/// One step of one workflow, as named by its message's `workflow` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRef {
    /// The workflow id.
    pub workflow: String,
    /// The step's index in the workflow's graph.
    pub index: u32,
}

impl StepRef {
    /// The step `message` is, if it is one.
    pub fn of(message: &Message) -> Option<Self> {
        let value = message.headers.get(WORKFLOW_HEADER)?;
        let (workflow, index) = value.rsplit_once(':')?;
        Some(Self {
            workflow: workflow.to_owned(),
            index: index.parse().ok()?,
        })
    }

    /// The header value naming this step.
    pub fn header_value(&self) -> String {
        format!("{}:{}", self.workflow, self.index)
    }
}

/// A step that became ready: its sealed message and its input (empty: none).
#[derive(Debug, Clone)]
pub struct ReadyStep {
    /// Its index in the graph.
    pub index: String,
    /// Its message as the submitter sealed it.
    pub template: Vec<u8>,
    /// The MessagePack value put before its arguments (empty: nothing).
    pub input: Vec<u8>,
}

/// What one run of the workflow script said: the workflow's status and what to publish.
#[derive(Debug, Clone, Default)]
pub struct Joined {
    /// The workflow id.
    pub workflow: String,
    /// `running`, `succeeded`, `failed`, `cancelled`, or `gone` (its keys expired).
    pub status: String,
    /// The steps to publish.
    pub ready: Vec<ReadyStep>,
}

impl Joined {
    /// Reads a script reply.
    pub(crate) fn from_reply(workflow: &str, reply: Value) -> Result<Self> {
        let parts: Vec<Vec<u8>> =
            redis::from_redis_value(reply).map_err(redis::RedisError::from)?;
        let mut parts = parts.into_iter();
        let status = String::from_utf8_lossy(&parts.next().unwrap_or_default()).into_owned();
        let mut ready = Vec::new();
        while let (Some(index), Some(template), Some(input)) =
            (parts.next(), parts.next(), parts.next())
        {
            ready.push(ReadyStep {
                index: String::from_utf8_lossy(&index).into_owned(),
                template,
                input,
            });
        }
        Ok(Self {
            workflow: workflow.to_owned(),
            status,
            ready,
        })
    }

    /// Whether the workflow has ended (or its keys are gone).
    pub fn ended(&self) -> bool {
        self.status != "running"
    }
}

/// Whether a final run succeeded, and its result or its error map (MessagePack), as the join
/// records them.
pub fn step_outcome(step: &StepRef, run: &RunRecord) -> (bool, Vec<u8>) {
    let value = if run.state == TaskState::Succeeded {
        run.result.clone().unwrap_or(rmpv::Value::Nil)
    } else {
        let text = |s: &str| rmpv::Value::from(s);
        rmpv::Value::Map(vec![
            (text("step"), rmpv::Value::from(step.index)),
            (text("task"), text(&run.task)),
            (text("id"), text(&run.id)),
            (text("state"), text(run.state.as_str())),
            (
                text("error"),
                text(run.error.as_deref().unwrap_or_default()),
            ),
        ])
    };
    let mut bytes = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut bytes, &value);
    (run.state == TaskState::Succeeded, bytes)
}

/// A workflow's status, root result and root error, as stored.
pub(crate) type WorkflowOutcome = (Option<String>, Option<Vec<u8>>, Option<Vec<u8>>);

impl Broker {
    /// Stores a workflow's graph (expiring after `ttl`) and lists it for the sweeper.
    pub(crate) async fn store_workflow(
        &self,
        id: &str,
        fields: &[(String, Vec<u8>)],
        ttl: Duration,
    ) -> Result<()> {
        let graph = self.keys().workflow_graph(id);
        let mut pipe = redis::pipe();
        for chunk in fields.chunks(1000) {
            let cmd = pipe.cmd("HSET").arg(&graph);
            for (field, value) in chunk {
                cmd.arg(field).arg(value.as_slice());
            }
            cmd.ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(&graph)
            .arg(ttl.as_millis() as u64)
            .ignore();
        pipe.cmd("ZADD")
            .arg(self.keys().workflows())
            .arg(crate::now_ms())
            .arg(id)
            .ignore();
        self.query_replicated::<()>(&pipe).await
    }

    /// Adds to `pipe` one run of the workflow script; the caller adds the mode's arguments.
    fn add_workflow_script<'p>(
        &self,
        pipe: &'p mut redis::Pipeline,
        id: &str,
        (mode, sending): (&str, Sending),
        ttl: Duration,
    ) -> &'p mut redis::Pipeline {
        let keys = self.keys();
        let names = [
            keys.workflow_graph(id),
            keys.workflow_state(id),
            keys.workflow_outbox(id),
            keys.workflow_done(id),
        ];
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        (WORKFLOW.send_in(pipe, &names, sending))
            .arg(mode)
            .arg(ttl.as_millis() as u64)
    }

    /// Adds to `pipe` the joins of `runs` (final) as their steps' outcomes, every step of
    /// workflow `workflow`, in one run of the script (joins are idempotent, so one refused as
    /// NOSCRIPT may be sent again by its body).
    pub fn add_step_joins(
        &self,
        pipe: &mut redis::Pipeline,
        workflow: &str,
        runs: &[(&StepRef, &RunRecord)],
        (ttl, sending): (Duration, Sending),
    ) {
        let cmd = self.add_workflow_script(pipe, workflow, ("step", sending), ttl);
        for (step, run) in runs {
            let (ok, bytes) = step_outcome(step, run);
            cmd.arg(step.index)
                .arg(if ok { "1" } else { "0" })
                .arg(bytes)
                .arg(&run.id);
        }
    }

    /// Runs the workflow script once on the shared connection.
    async fn workflow_script(&self, id: &str, mode: &str, ttl: Duration) -> Result<Joined> {
        let mut pipe = redis::pipe();
        self.add_workflow_script(&mut pipe, id, (mode, Sending::Body), ttl);
        let (reply,): (Value,) = self.query_replicated(&pipe).await?;
        Joined::from_reply(id, reply)
    }

    /// Starts a stored workflow: its first steps go to its outbox and are returned.
    pub(crate) async fn start_workflow(&self, id: &str, ttl: Duration) -> Result<Joined> {
        self.workflow_script(id, "start", ttl).await
    }

    /// Joins `run` as `step`'s outcome on the shared connection, then publishes what became
    /// ready (the reaper's path: a run recorded by a process that died before its join).
    pub async fn join_step(&self, step: &StepRef, run: &RunRecord, ttl: Duration) -> Result<()> {
        let mut pipe = redis::pipe();
        let body = (ttl, Sending::Body);
        self.add_step_joins(&mut pipe, &step.workflow, &[(step, run)], body);
        let (reply,): (Value,) = self.query_replicated(&pipe).await?;
        let joined = Joined::from_reply(&step.workflow, reply)?;
        self.publish_joined(&[joined], ttl).await
    }

    /// Publishes the ready steps of `joined`, then clears them from their outboxes.
    pub async fn publish_joined(&self, joined: &[Joined], ttl: Duration) -> Result<()> {
        let mut pipe = redis::pipe();
        self.add_ready(&mut pipe, joined, ttl);
        if !pipe.is_empty() {
            self.query_replicated::<()>(&pipe).await?;
        }
        let mut pipe = redis::pipe();
        self.add_outbox_clear(&mut pipe, joined);
        if !pipe.is_empty() {
            pipe.query_async::<()>(&mut self.commands()).await?;
        }
        Ok(())
    }

    /// Adds to `pipe` the publishing of every ready step of `joined`, each at most once (its
    /// marker lives `ttl`). A step whose message cannot be opened stays in its outbox, logged.
    pub fn add_ready(&self, pipe: &mut redis::Pipeline, joined: &[Joined], ttl: Duration) {
        let mut by_stream: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
        let mut queues = Vec::new();
        let steps = joined
            .iter()
            .flat_map(|j| j.ready.iter().map(move |r| (j, r)));
        for (workflow, ready) in steps {
            let built = self.ready_message(ready).and_then(|message| {
                let destination = Destination::from_wire_name(&message.queue)?;
                Ok((
                    destination,
                    message.id.clone(),
                    self.seal(&message)?,
                    message,
                ))
            });
            match built {
                Ok((destination, id, payload, message)) => {
                    if self.writes_events() {
                        self.add_message_event(pipe, "published", &message);
                    }
                    queues.push(message.queue);
                    (by_stream
                        .entry(self.keys().stream(&destination))
                        .or_default())
                    .push((self.keys().fired(&destination, &id), payload));
                }
                Err(error) => tracing::error!(
                    workflow = %workflow.workflow,
                    step = %ready.index,
                    %error,
                    "a workflow step cannot be published; it stays in the outbox"
                ),
            }
        }
        for (stream, steps) in &by_stream {
            let mut keys = vec![stream.as_str()];
            keys.extend(steps.iter().map(|(marker, _)| marker.as_str()));
            let cmd = PUBLISH_FIRED.eval_in(pipe, &keys);
            cmd.arg("0").arg(ttl.as_millis() as u64);
            for (_, payload) in steps {
                cmd.arg(payload.as_slice());
            }
            cmd.ignore();
        }
        self.add_registered(pipe, queues.iter().map(String::as_str));
    }

    /// Adds to `pipe` the removal of published steps from their outboxes, and the workflows'
    /// entries for the sweeper: dropped once ended, touched while running.
    pub fn add_outbox_clear(&self, pipe: &mut redis::Pipeline, joined: &[Joined]) {
        let registry = self.keys().workflows();
        for joined in joined {
            if !joined.ready.is_empty() {
                let indexes: Vec<&str> = joined.ready.iter().map(|r| r.index.as_str()).collect();
                (pipe.cmd("HDEL"))
                    .arg(self.keys().workflow_outbox(&joined.workflow))
                    .arg(indexes)
                    .ignore();
            }
            if joined.ended() {
                pipe.cmd("ZREM")
                    .arg(&registry)
                    .arg(&joined.workflow)
                    .ignore();
            } else if !joined.ready.is_empty() {
                (pipe.cmd("ZADD").arg(&registry).arg("XX"))
                    .arg(crate::now_ms())
                    .arg(&joined.workflow)
                    .ignore();
            }
        }
    }

    /// The message of a ready step: opened, its input put first among its arguments.
    fn ready_message(&self, ready: &ReadyStep) -> Result<Message> {
        let bytes = self.open_as(Purpose::WorkflowStep, &ready.template)?;
        let mut message = Message::decode(&bytes)?;
        if !ready.input.is_empty() {
            let input = rmpv::decode::read_value(&mut ready.input.as_slice()).map_err(|e| {
                Error::Decode {
                    what: "a workflow step's input".into(),
                    reason: e.to_string(),
                }
            })?;
            message.args.insert(0, input);
        }
        message.published_at = crate::now_ms();
        Ok(message)
    }

    /// Up to `limit` workflows that have not ended, the most recently active first, each with
    /// when it last moved (ms since the epoch).
    pub async fn active_workflows(&self, limit: usize) -> Result<Vec<(String, u64)>> {
        let rows: Vec<(String, f64)> = redis::cmd("ZREVRANGEBYSCORE")
            .arg(self.keys().workflows())
            .arg("+inf")
            .arg("-inf")
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.commands())
            .await?;
        Ok(rows.into_iter().map(|(id, at)| (id, at as u64)).collect())
    }

    /// Publishes what the outboxes of workflows idle for [`SWEEP_AFTER`] still hold (their
    /// publisher died); returns how many workflows were swept.
    pub async fn sweep_workflows(&self, ttl: Duration) -> Result<usize> {
        let before = crate::now_ms().saturating_sub(SWEEP_AFTER.as_millis() as u64);
        let idle: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys().workflows())
            .arg("-inf")
            .arg(before)
            .arg("LIMIT")
            .arg(0)
            .arg(SWEEP_BATCH)
            .query_async(&mut self.commands())
            .await?;
        for id in &idle {
            // Touched first: a workflow Redis refuses to sweep waits its turn behind the others.
            let mut touched = redis::pipe();
            (touched.cmd("ZADD").arg(self.keys().workflows()).arg("XX"))
                .arg(crate::now_ms())
                .arg(id)
                .ignore();
            touched.query_async::<()>(&mut self.commands()).await?;
            let joined = match self.workflow_script(id, "sweep", ttl).await {
                Ok(joined) => joined,
                Err(Error::Redis(e)) if e.code().is_some() => {
                    tracing::error!(workflow = %id, error = %e,
                        "cannot sweep a workflow (its state damaged by hand?); skipped");
                    continue;
                }
                Err(error) => return Err(error),
            };
            if !joined.ready.is_empty() {
                tracing::warn!(workflow = %id, steps = joined.ready.len(),
                    "publishing workflow steps left ready by a process that stopped");
            }
            self.publish_joined(&[joined], ttl).await?;
        }
        Ok(idle.len())
    }

    /// Marks workflow `id` cancelled: nothing more of it is published. Returns its status and
    /// the task ids of its steps started and not ended (for the caller to cancel).
    pub(crate) async fn cancel_workflow(&self, id: &str) -> Result<(String, Vec<String>)> {
        let mut pipe = redis::pipe();
        let cancel = ("cancel", Sending::Body);
        self.add_workflow_script(&mut pipe, id, cancel, crate::workflow::DEFAULT_TTL);
        let (reply,): (Vec<String>,) = self.query_replicated(&pipe).await?;
        let mut reply = reply.into_iter();
        let status = reply.next().unwrap_or_default();
        Ok((status, reply.collect()))
    }

    /// The stored graph and state of workflow `id` (both empty when it is unknown or expired).
    pub(crate) async fn workflow_fields(
        &self,
        id: &str,
    ) -> Result<(BTreeMap<String, Vec<u8>>, BTreeMap<String, Vec<u8>>)> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(self.keys().workflow_graph(id));
        pipe.cmd("HGETALL").arg(self.keys().workflow_state(id));
        Ok(pipe.query_async(&mut self.commands()).await?)
    }

    /// Workflow `id`'s status, its root's result and its root's error map, as stored; no
    /// status when it is unknown (never submitted, or expired).
    pub(crate) async fn workflow_outcome(&self, id: &str) -> Result<WorkflowOutcome> {
        Ok(redis::cmd("HMGET")
            .arg(self.keys().workflow_state(id))
            .arg("status")
            .arg("r:0")
            .arg("e:0")
            .query_async(&mut self.commands())
            .await?)
    }

    /// Waits until workflow `id` ends or `timeout` passes (woken by its done list, no
    /// polling); returns whether a token arrived.
    pub(crate) async fn wait_workflow(&self, id: &str, timeout: Duration) -> Result<bool> {
        self.wait_list(&self.keys().workflow_done(id), timeout)
            .await
    }
}
