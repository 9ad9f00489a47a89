//! Recording outcomes and settling messages, many tasks in one pipelined round trip.
//!
//! The order of the writes is the at-least-once rule: every record is written, and every
//! retry or dead letter stored, before any entry is acknowledged; so a crash in between runs a
//! task again, never loses it or its outcome. Records are written before retries are stored,
//! so a retry never runs before the record of the attempt that scheduled it is final.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Broker, Connection};
use crate::{Destination, Result, RunRecord, TaskRecord};

/// Records and settlements gathered by the worker, sent with [`Broker::write_outcomes`].
#[derive(Debug, Default)]
pub struct OutcomeBatch {
    records: Vec<RecordWrite>,
    retries: Vec<(Destination, u64, Vec<u8>)>,
    dead: Vec<(Destination, DeadFields)>,
    acks: BTreeMap<(Destination, String), Vec<String>>,
    releases: Vec<(Destination, String, String)>,
    ttl: Duration,
    stage: Stage,
}

/// The next part of a batch to write (see [`Broker::write_outcomes`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Records, dead letters and releases.
    #[default]
    Records,
    /// Retries.
    Retries,
    /// Acknowledgements.
    Acks,
    /// Everything was written.
    Done,
}

/// The fields of one dead letter.
type DeadFields = Vec<(&'static str, Vec<u8>)>;

#[derive(Debug)]
struct RecordWrite {
    key: String,
    fields: Vec<(String, Vec<u8>)>,
    done: Option<String>,
}

/// Where in its task's record a run is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordSlot {
    /// A queued task's run.
    Task,
    /// One node's run of a broadcast.
    Broadcast,
    /// A run that ended after peers had declared its process lost and settled it: kept apart,
    /// not over their verdict.
    Late,
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
    /// Give up: store `message` in the queue's dead letters with `reason`, then acknowledge.
    Dead {
        /// Whose dead letters it joins.
        to: Destination,
        /// The message as it last ran.
        message: Vec<u8>,
        /// Why it died (the last error).
        reason: String,
        /// The task id.
        id: String,
        /// The task name.
        task: String,
        /// Attempts made.
        attempts: u32,
    },
}

impl OutcomeBatch {
    /// An empty batch whose records expire after `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            ..Self::default()
        }
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.acks.is_empty()
    }

    /// Stores `run` in its task's record at `slot` (also as attempt N when `keep_attempt`),
    /// and when the run has ended and `notify` is set, wakes waiters.
    pub fn record(
        &mut self,
        broker: &Broker,
        run: &RunRecord,
        slot: RecordSlot,
        notify: bool,
        keep_attempt: bool,
    ) -> Result<()> {
        let bytes = run.encode()?;
        let mut fields = Vec::with_capacity(2);
        if keep_attempt && slot != RecordSlot::Late {
            fields.push((TaskRecord::attempt_field(run.attempt), bytes.clone()));
        }
        let field = match slot {
            RecordSlot::Task => TaskRecord::TASK_FIELD.to_owned(),
            RecordSlot::Broadcast => TaskRecord::broadcast_field(&run.node),
            RecordSlot::Late => TaskRecord::late_field(&run.node),
        };
        fields.push((field, bytes));
        let done = (notify && run.state.is_final()).then(|| broker.keys().done(&run.id));
        self.records.push(RecordWrite {
            key: broker.keys().record(&run.id),
            fields,
            done,
        });
        Ok(())
    }

    /// Releases the on_duplicate key `key` of `destination` held by task `id` (its run ended
    /// for good), queueing the next message parked behind it.
    pub fn release(&mut self, destination: &Destination, key: &str, id: &str) {
        self.releases
            .push((destination.clone(), key.to_owned(), id.to_owned()));
    }

    /// Settles one entry read by `group` from `destination`'s stream.
    pub fn settle(
        &mut self,
        destination: &Destination,
        group: &str,
        entry_id: String,
        settle: Settle,
    ) {
        match settle {
            Settle::Ack => {}
            Settle::Retry {
                to,
                message,
                due_ms,
            } => {
                self.retries.push((to, due_ms, message));
            }
            Settle::Dead {
                to,
                message,
                reason,
                id,
                task,
                attempts,
            } => {
                let fields = vec![
                    ("reason", reason.into_bytes()),
                    ("raw", message),
                    ("source_id", entry_id.clone().into_bytes()),
                    ("dead_at", crate::now_ms().to_string().into_bytes()),
                    ("id", id.into_bytes()),
                    ("task", task.into_bytes()),
                    ("attempts", attempts.to_string().into_bytes()),
                ];
                self.dead.push((to, fields));
            }
        }
        self.acks
            .entry((destination.clone(), group.to_owned()))
            .or_default()
            .push(entry_id);
    }
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
                    match batch.retries.is_empty() {
                        true => Stage::Acks,
                        false => Stage::Retries,
                    }
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
        let ttl_ms = batch.ttl.as_millis() as u64;
        for write in &batch.records {
            let cmd = pipe.cmd("HSET").arg(&write.key);
            for (field, bytes) in &write.fields {
                cmd.arg(field).arg(bytes);
            }
            cmd.ignore();
            pipe.cmd("PEXPIRE").arg(&write.key).arg(ttl_ms).ignore();
            if let Some(done) = &write.done {
                pipe.cmd("RPUSH").arg(done).arg(1).ignore();
                pipe.cmd("PEXPIRE").arg(done).arg(ttl_ms).ignore();
            }
        }
        for (destination, fields) in &batch.dead {
            self.add_dead_letter(pipe, destination, fields);
        }
        for (destination, key, id) in &batch.releases {
            pipe.cmd("EVAL")
                .arg(super::dedup::FINISH)
                .arg(3)
                .arg(self.keys().stream(destination))
                .arg(self.keys().dup(destination, key))
                .arg(self.keys().dup_parked(destination, key))
                .arg(id)
                .ignore();
        }
    }

    /// Adds to `pipe` the batch's retries (delayed messages) and the forwarders' wake-up.
    fn add_retries(&self, pipe: &mut redis::Pipeline, batch: &OutcomeBatch) {
        for (destination, due_ms, message) in &batch.retries {
            self.add_delayed(pipe, destination, *due_ms, message.clone());
        }
        if let Some(earliest) = batch.retries.iter().map(|(_, due, _)| *due).min() {
            self.add_wake(pipe, earliest);
        }
    }

    /// Adds to `pipe` the acknowledgement (and deletion, but for broadcasts) of every entry.
    fn add_acks(&self, pipe: &mut redis::Pipeline, batch: &OutcomeBatch) {
        for ((destination, group), ids) in &batch.acks {
            let stream = self.keys().stream(destination);
            pipe.cmd("XACK").arg(&stream).arg(group).arg(ids).ignore();
            if *destination != Destination::Broadcast {
                pipe.cmd("XDEL").arg(&stream).arg(ids).ignore();
            }
        }
    }

    /// Adds to `pipe` a dead letter with `fields`, keeping the dead letters capped by count
    /// and by age.
    fn add_dead_letter(
        &self,
        pipe: &mut redis::Pipeline,
        destination: &Destination,
        fields: &[(&'static str, Vec<u8>)],
    ) {
        let key = self.keys().dead_letters(destination);
        let cmd = pipe
            .cmd("XADD")
            .arg(&key)
            .arg("MAXLEN")
            .arg(self.config().dead_letter_cap)
            .arg("*");
        for (name, value) in fields {
            cmd.arg(*name).arg(value);
        }
        cmd.ignore();
        let oldest =
            crate::now_ms().saturating_sub(self.config().dead_letter_max_age.as_millis() as u64);
        pipe.cmd("XTRIM")
            .arg(&key)
            .arg("MINID")
            .arg(oldest)
            .ignore();
    }
}
