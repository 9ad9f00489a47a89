//! Recording outcomes and settling messages, many tasks in one pipelined round trip.
//!
//! The order of the writes is the at-least-once rule: every record is written, and every
//! retry or dead letter stored, before any entry is acknowledged; so a crash in between runs a
//! task again, never loses it or its outcome. Records are written before retries are stored,
//! so a retry never runs before the record of the attempt that scheduled it is final. A
//! workflow step's final outcome is joined right after the records and the steps it made
//! ready are published before the acks (see `workflows.rs`), so a crash in between leaves
//! the step pending for the reaper, whose join finds the outbox the dead process left.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::dead_letters::NewDeadLetter;
use super::scripts::{resend_refused, Sending, DUP_FINISH};
use super::workflows::{Joined, StepRef};
use super::{Broker, Connection};
use crate::{Destination, RecordField, RecordPolicy, Result, RunRecord, TaskRecord, TaskState};

/// A finished run on its way from the executor to Redis, passed through the recorder unchanged.
#[derive(Debug)]
pub struct Outcome {
    /// The run, in its final state.
    pub run: RunRecord,
    /// Where in its task's record the run is stored.
    pub field: RecordField,
    /// Whether waiters asked to be woken when the task ends.
    pub notify: bool,
    /// The stream entry the run came from.
    pub entry: Entry,
    /// What becomes of the message.
    pub settle: Settle,
    /// The on_duplicate key the run held, released now that it ended for good.
    pub release: Option<String>,
    /// The workflow step the run is, joined once it ended for good.
    pub workflow: Option<Box<StepRef>>,
    /// Which runs of the task leave a record (a workflow step's always do).
    pub record: RecordPolicy,
    /// What the task itself logged during the run (kept with its record).
    pub log: Vec<String>,
}

/// One stream entry as read by a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The queue it was read from.
    pub destination: Destination,
    /// The group it was read through.
    pub group: std::sync::Arc<str>,
    /// Its id in the stream.
    pub entry_id: String,
}

/// What becomes of a message once its run is recorded.
#[derive(Debug, Clone)]
pub enum Settle {
    /// Done: acknowledge it.
    Ack,
    /// Run it again: store `message` (re-encoded, one more attempt) in the delayed set, due at
    /// `due_ms`, then acknowledge the old entry.
    Retry {
        /// Where the next attempt waits (a broadcast retries on its node's own queue).
        to: Destination,
        /// The next attempt's message.
        message: Vec<u8>,
        /// When it is due.
        due_ms: u64,
    },
    /// Failed for good: keep `message` in the task's record (for an operator's retry), then
    /// acknowledge.
    Failed {
        /// The message as it last ran.
        message: Vec<u8>,
    },
    /// Give up: store `message` in the dead letters of `to`, with the run's error as the
    /// reason, then acknowledge.
    Dead {
        /// Whose dead letters it joins.
        to: Destination,
        /// The message as it last ran.
        message: Vec<u8>,
    },
}

/// Runs started and outcomes gathered by the recorder, sent with [`Broker::write_outcomes`]. A
/// started run is recorded as `running`, unless its outcome is in the same batch: then only
/// the outcome is written (one write instead of two, and never `running` after the end).
#[derive(Debug, Default)]
pub struct OutcomeBatch {
    started: Vec<(RunRecord, RecordField)>,
    outcomes: Vec<Outcome>,
    ttl: Duration,
    succeeded_ttl: Duration,
    stage: Stage,
    joined: Vec<Joined>,
    history: usize,
    task_minutes: bool,
}

/// The next part of a batch to write (see [`Broker::write_outcomes`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Records, dead letters and releases.
    #[default]
    Records,
    /// Workflow joins of the runs that ended for good (their replies are read).
    Joins,
    /// Workflow steps the joins made ready.
    Publish,
    /// Retries.
    Retries,
    /// Acknowledgements.
    Acks,
    /// Everything was written.
    Done,
}

impl OutcomeBatch {
    /// An empty batch whose records expire after `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            succeeded_ttl: ttl,
            ..Self::default()
        }
    }

    /// An empty batch whose records expire after `ttl`, but the record of a success nobody
    /// waits for (no `notify`, not a workflow step) after `succeeded_ttl` if that is shorter.
    pub fn retaining(ttl: Duration, succeeded_ttl: Duration) -> Self {
        Self {
            succeeded_ttl: succeeded_ttl.min(ttl),
            ..Self::new(ttl)
        }
    }

    /// Keeps `cap` finished runs per queue and state in the history (0: none).
    pub fn with_history(mut self, cap: usize) -> Self {
        self.history = cap;
        self
    }

    /// Counts (or not) each task's runs, failures and run times per minute.
    pub fn with_task_minutes(mut self, counted: bool) -> Self {
        self.task_minutes = counted;
        self
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.started.is_empty() && self.outcomes.is_empty()
    }

    /// Records `run` as started, at `field` of its task's record.
    pub fn started(&mut self, run: RunRecord, field: RecordField) {
        self.started.push((run, field));
    }

    /// Records a finished run and settles its entry.
    pub fn finished(&mut self, outcome: Outcome) {
        self.outcomes.push(outcome);
    }

    /// The entries this batch settles.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.outcomes.iter().map(|o| &o.entry)
    }

    fn has_retries(&self) -> bool {
        (self.outcomes.iter()).any(|o| matches!(o.settle, Settle::Retry { .. }))
    }

    /// The workflow steps whose runs ended for good here (a late run's fate was the reaper's).
    fn joins(&self) -> impl Iterator<Item = (&StepRef, &RunRecord)> {
        self.outcomes.iter().filter_map(|o| {
            let ended = o.run.state.is_final()
                && !matches!(o.settle, Settle::Retry { .. })
                && o.field != RecordField::Late;
            o.workflow
                .as_ref()
                .filter(|_| ended)
                .map(|s| (&**s, &o.run))
        })
    }

    /// The runs that ended for good here and left a record: what the history and the task
    /// minutes count.
    fn ended(&self) -> impl Iterator<Item = &RunRecord> {
        (self.outcomes.iter())
            .filter(|o| !matches!(o.settle, Settle::Retry { .. }) && o.field != RecordField::Late)
            .filter(|o| o.record.records(&o.run))
            .map(|o| &o.run)
    }

    /// The stage after `stage` (Records, Joins or Publish) for this batch.
    fn after(&self, stage: Stage) -> Stage {
        let joins = stage == Stage::Records && self.joins().next().is_some();
        let ready = stage == Stage::Joins && self.joined.iter().any(|j| !j.ready.is_empty());
        match (joins, ready, self.has_retries()) {
            (true, _, _) => Stage::Joins,
            (_, true, _) => Stage::Publish,
            (_, _, true) => Stage::Retries,
            _ => Stage::Acks,
        }
    }

    /// The record writes of the batch: every outcome, and every start whose outcome is not in
    /// the batch.
    fn records(&self) -> Vec<RecordWrite<'_>> {
        let finished: HashSet<&str> = self.outcomes.iter().map(|o| o.run.id.as_str()).collect();
        let starts = (self.started.iter())
            .filter(|(run, _)| !finished.contains(run.id.as_str()))
            .map(|(run, field)| RecordWrite {
                run,
                field: *field,
                notify: false,
                keep_attempt: false,
                ttl: self.ttl,
            });
        let ends = (self.outcomes.iter())
            .filter(|o| o.record.records(&o.run))
            .map(|o| RecordWrite {
                run: &o.run,
                field: o.field,
                notify: o.notify,
                // A retried task keeps each attempt as well as its current run.
                keep_attempt: o.run.attempt > 1 || matches!(o.settle, Settle::Retry { .. }),
                ttl: self.ttl_of(o),
            });
        starts.chain(ends).collect()
    }

    /// How long the record of `outcome` is kept: a success nobody waits for (no `notify`,
    /// not a workflow step) for the shorter retention of successes.
    fn ttl_of(&self, outcome: &Outcome) -> Duration {
        let waited_for = outcome.notify || outcome.workflow.is_some();
        if outcome.run.state == TaskState::Succeeded && !waited_for {
            self.succeeded_ttl
        } else {
            self.ttl
        }
    }
}

/// One run to store in its task's record hash.
struct RecordWrite<'a> {
    run: &'a RunRecord,
    field: RecordField,
    notify: bool,
    keep_attempt: bool,
    ttl: Duration,
}

impl Broker {
    /// Writes the batch's records and dead letters, then its retries, then acknowledges its
    /// entries: one round trip when nothing retries and no replica must confirm.
    ///
    /// A failed call can be repeated with the same batch: it resumes at the stage that failed.
    /// Records are never written again once the retries are stored, because a retry may have
    /// run by then and its newer record must not be overwritten by this older one. With
    /// `replicas_to_ack`, each stage is confirmed by replicas before the next (and before any
    /// acknowledgement).
    ///
    /// Queue entries are deleted once acknowledged (nothing grows); broadcast entries stay for
    /// the other nodes until the capped stream trims them.
    pub async fn write_outcomes(
        &self,
        conn: &mut Connection,
        batch: &mut OutcomeBatch,
    ) -> Result<()> {
        let confirmed = self.config().replicas_to_ack > 0;
        loop {
            let mut pipe = redis::pipe();
            let next = match batch.stage {
                Stage::Records => {
                    self.add_records(&mut pipe, batch);
                    batch.after(Stage::Records)
                }
                Stage::Joins => {
                    self.send_joins(conn, batch).await?;
                    batch.stage = batch.after(Stage::Joins);
                    continue;
                }
                Stage::Publish => {
                    self.add_ready(&mut pipe, &batch.joined, batch.ttl);
                    batch.after(Stage::Publish)
                }
                Stage::Retries => {
                    self.add_retries(&mut pipe, batch);
                    Stage::Acks
                }
                Stage::Acks => {
                    self.add_acks(&mut pipe, batch);
                    Stage::Done
                }
                Stage::Done => return Ok(()),
            };
            // Acknowledgements ride along when one server applies them after the writes before
            // them, in order, and no replica must confirm those writes first (a cluster sends
            // each slot's commands apart: an ack could land before a record).
            let acks_along = next == Stage::Acks && !confirmed && !conn.is_cluster();
            if acks_along {
                self.add_acks(&mut pipe, batch);
            }
            if !pipe.is_empty() {
                self.send_stage(conn, &pipe, batch.stage != Stage::Acks)
                    .await?;
            }
            batch.stage = if acks_along { Stage::Done } else { next };
        }
    }

    /// Joins the batch's ended workflow steps, one script run per workflow, and keeps what
    /// each made ready. The joins go by the script's SHA (sending its 4 KB body per join was
    /// most of a join's cost); those Redis refuses as NOSCRIPT did not run and go again by
    /// body. A join Redis refuses otherwise (a workflow's state damaged by hand) is logged and
    /// skipped, so it never holds back the acknowledgements of the others.
    async fn send_joins(&self, conn: &mut Connection, batch: &mut OutcomeBatch) -> Result<()> {
        let mut by_workflow: BTreeMap<&str, Vec<(&StepRef, &RunRecord)>> = BTreeMap::new();
        for (step, run) in batch.joins() {
            by_workflow
                .entry(&step.workflow)
                .or_default()
                .push((step, run));
        }
        let joins: Vec<_> = by_workflow.into_iter().collect();
        let ttl = batch.ttl;
        let sent = self.join_pipeline(conn, &joins, ttl, Sending::Sha).await?;
        let all = &joins;
        let replies = resend_refused(sent, |refused| async move {
            let again: Vec<_> = refused.iter().map(|&at| all[at].clone()).collect();
            self.join_pipeline(conn, &again, ttl, Sending::Body).await
        })
        .await?;
        let mut joined = Vec::new();
        for ((workflow, _), reply) in joins.into_iter().zip(replies) {
            match reply
                .map_err(crate::Error::from)
                .and_then(|r| Joined::from_reply(workflow, r))
            {
                Ok(j) => joined.push(j),
                Err(error) => tracing::error!(workflow, %error,
                    "cannot join workflow steps; the workflow will not go on from them"),
            }
        }
        batch.joined = joined;
        Ok(())
    }

    /// Sends the joins of each workflow in one pipeline and returns each workflow's reply.
    async fn join_pipeline(
        &self,
        conn: &mut Connection,
        joins: &[(&str, Vec<(&StepRef, &RunRecord)>)],
        ttl: Duration,
        sending: Sending,
    ) -> Result<Vec<redis::RedisResult<redis::Value>>> {
        let mut pipe = redis::pipe();
        for (workflow, runs) in joins {
            self.add_step_joins(&mut pipe, workflow, runs, (ttl, sending));
        }
        pipe.ignore_errors();
        let config = self.config();
        Ok(conn
            .query_replicated(&pipe, config.replicas_to_ack, config.replica_ack_timeout)
            .await?)
    }

    /// Sends one stage; `confirm`: with `replicas_to_ack`, replicas must confirm its writes.
    async fn send_stage(
        &self,
        conn: &mut Connection,
        pipe: &redis::Pipeline,
        confirm: bool,
    ) -> Result<()> {
        let config = self.config();
        let replicas = if confirm { config.replicas_to_ack } else { 0 };
        conn.query_replicated::<()>(pipe, replicas, config.replica_ack_timeout)
            .await?;
        Ok(())
    }

    /// Adds to `pipe` the batch's records, dead letters and on_duplicate releases.
    fn add_records(&self, pipe: &mut redis::Pipeline, batch: &OutcomeBatch) {
        for write in batch.records() {
            self.add_record(pipe, &write);
        }
        if !batch.outcomes.is_empty() {
            self.add_settled_count(pipe, batch.outcomes.len());
            self.add_history(pipe, batch.ended(), batch.history, batch.ttl);
            if batch.task_minutes {
                self.add_task_minutes(pipe, batch.outcomes.iter().map(|o| &o.run));
            }
        }
        if self.writes_events() {
            for (run, _) in &batch.started {
                self.add_run_event(pipe, run);
            }
            for outcome in &batch.outcomes {
                self.add_run_event(pipe, &outcome.run);
            }
        }
        for outcome in &batch.outcomes {
            if outcome.record.records(&outcome.run) {
                self.add_run_leftovers(pipe, outcome, batch.ttl_of(outcome));
            }
            if let Settle::Dead { to, message } = &outcome.settle {
                let run = &outcome.run;
                let letter = NewDeadLetter {
                    reason: run.error.clone().unwrap_or_default(),
                    raw: message.clone(),
                    source_id: outcome.entry.entry_id.clone(),
                    task: Some((run.id.clone(), run.task.clone(), run.attempt)),
                };
                self.add_dead_letter(pipe, to, &letter);
            }
            if let Some(key) = &outcome.release {
                let (destination, keys) = (&outcome.entry.destination, self.keys());
                DUP_FINISH
                    .eval_in(
                        pipe,
                        &[
                            &keys.stream(destination),
                            &keys.dup(destination, key),
                            &keys.dup_parked(destination, key),
                        ],
                    )
                    .arg(&outcome.run.id)
                    .ignore();
            }
        }
    }

    /// Adds to `pipe` one run's record (and its attempt field), its expiry, and the waiters'
    /// wake-up when the run ended and they asked for it.
    fn add_record(&self, pipe: &mut redis::Pipeline, write: &RecordWrite<'_>) {
        let (run, ttl_ms) = (write.run, write.ttl.as_millis() as u64);
        let bytes = match run.encode() {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(%error, "cannot encode a task record; it is not written");
                return;
            }
        };
        let key = self.keys().record(&run.id);
        let cmd = pipe.cmd("HSET").arg(&key);
        if write.keep_attempt && write.field != RecordField::Late {
            cmd.arg(TaskRecord::attempt_field(run.attempt)).arg(&bytes);
        }
        cmd.arg(write.field.name(&run.node)).arg(bytes).ignore();
        pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
        if write.notify && run.state.is_final() {
            let done = self.keys().done(&run.id);
            pipe.cmd("RPUSH").arg(&done).arg(1).ignore();
            pipe.cmd("PEXPIRE").arg(done).arg(ttl_ms).ignore();
        }
    }

    /// Adds to `pipe` the batch's retries (delayed messages) and the forwarders' wake-up.
    fn add_retries(&self, pipe: &mut redis::Pipeline, batch: &OutcomeBatch) {
        let mut earliest: Option<u64> = None;
        for outcome in &batch.outcomes {
            if let Settle::Retry {
                to,
                message,
                due_ms,
            } = &outcome.settle
            {
                self.add_delayed(pipe, to, *due_ms, message.clone())
                    .ignore();
                earliest = Some(earliest.map_or(*due_ms, |e| e.min(*due_ms)));
            }
        }
        if let Some(earliest) = earliest {
            self.add_wake(pipe, earliest);
        }
    }

    /// Adds to `pipe` the acknowledgement (and deletion, but for broadcasts) of every entry,
    /// one XACK (and XDEL) per stream and group.
    fn add_acks(&self, pipe: &mut redis::Pipeline, batch: &OutcomeBatch) {
        self.add_outbox_clear(pipe, &batch.joined);
        let mut by_stream: BTreeMap<(&Destination, &str), Vec<&str>> = BTreeMap::new();
        for entry in batch.entries() {
            (by_stream
                .entry((&entry.destination, &*entry.group))
                .or_default())
            .push(&entry.entry_id);
        }
        for ((destination, group), ids) in by_stream {
            let stream = self.keys().stream(destination);
            pipe.cmd("XACK").arg(&stream).arg(group).arg(&ids).ignore();
            if *destination != Destination::Broadcast {
                pipe.cmd("XDEL").arg(&stream).arg(&ids).ignore();
            }
        }
    }
}
