//! What a run leaves besides its record: its own log lines, the workflow it is a step of (a
//! record field), and, for a failure, its message.
//!
//! Retrying a task that failed for good (Sidekiq's "retry now" on a dead job, Celery's
//! `retry` from Flower): a failure that will not run again keeps its message in its record,
//! so an operator can publish it again with its own options.
//!
//! 1. The recorder stores the message of a run that failed or timed out with no retry left
//!    in the record's field `message` (in the batch, only when the record is kept and the
//!    message is at most [`KEPT_MESSAGE_MAX`] bytes); it expires with the record.
//! 2. [`Broker::retry_failed`] takes the field out (one atomic script on the record's slot:
//!    a second retry finds nothing) and publishes the message as its next attempt with the
//!    retry budget it was published with, as a requeued dead letter is. Should the publish
//!    fail, the field is put back.

use super::scripts::TAKE_FIELD;
use super::Broker;
use crate::signing::Purpose;
use crate::{Destination, Result};

/// The largest message a failure keeps (larger ones are not kept: retry them by publishing
/// again).
pub const KEPT_MESSAGE_MAX: usize = 64 * 1024;

/// Most lines of a task's log kept across its attempts (each attempt keeps at most 100).
pub const KEPT_LOG_LINES: usize = 200;

/// The record field that holds a failed task's message.
pub const KEPT_MESSAGE_FIELD: &str = "message";

/// The record field that names the workflow a task is a step of.
pub const WORKFLOW_FIELD: &str = "workflow";

/// The record fields that are not runs.
pub const NOT_RUNS: [&str; 2] = [KEPT_MESSAGE_FIELD, WORKFLOW_FIELD];

impl Broker {
    /// Adds to `pipe` what a recorded run leaves besides its record: a failure's message
    /// (for an operator's retry) and the task's own log lines (`NS:{t:ID}:log`: a line naming
    /// the attempt, then its lines; the newest 200 kept, expiring after `ttl` like the record).
    pub(super) fn add_run_leftovers(
        &self,
        pipe: &mut redis::Pipeline,
        outcome: &super::Outcome,
        ttl: std::time::Duration,
    ) {
        let run = &outcome.run;
        if let Some(step) = &outcome.workflow {
            let record = self.keys().record(&run.id);
            (pipe
                .cmd("HSET")
                .arg(record)
                .arg(WORKFLOW_FIELD)
                .arg(&step.workflow))
            .ignore();
        }
        if let super::Settle::Failed { message } = &outcome.settle {
            let record = self.keys().record(&run.id);
            (pipe
                .cmd("HSET")
                .arg(record)
                .arg(KEPT_MESSAGE_FIELD)
                .arg(message))
            .ignore();
        }
        if !outcome.log.is_empty() {
            let key = self.keys().task_log(&run.id);
            let header = format!("-- attempt {} on {} --", run.attempt, run.node);
            (pipe.cmd("RPUSH").arg(&key).arg(header).arg(&outcome.log)).ignore();
            (pipe
                .cmd("LTRIM")
                .arg(&key)
                .arg(-(KEPT_LOG_LINES as i64))
                .arg(-1))
            .ignore();
            (pipe.cmd("PEXPIRE").arg(&key).arg(ttl.as_millis() as u64)).ignore();
        }
    }

    /// Task `id`'s own log lines, oldest first (empty when it logged none or they expired).
    pub async fn task_log(&self, id: &str) -> Result<Vec<String>> {
        Ok(redis::cmd("LRANGE")
            .arg(self.keys().task_log(id))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.commands())
            .await?)
    }

    /// Publishes the kept message of failed task `id` again, as its next attempt with a fresh
    /// retry budget; `false` when no message is kept (not failed, retried already, too large,
    /// or its record expired). Signed messages need this process's keys (the changed message
    /// is signed again).
    pub async fn retry_failed(&self, id: &str) -> Result<bool> {
        let record = self.keys().record(id);
        let kept: Option<Vec<u8>> = TAKE_FIELD
            .key(&record)
            .arg(KEPT_MESSAGE_FIELD)
            .invoke_async(&mut self.commands())
            .await?;
        let Some(raw) = kept else {
            return Ok(false);
        };
        match self.publish_again(&raw).await {
            Ok(()) => Ok(true),
            Err(error) => {
                let mut put_back = redis::cmd("HSETNX");
                put_back.arg(&record).arg(KEPT_MESSAGE_FIELD).arg(&raw);
                let _: redis::RedisResult<()> = put_back.query_async(&mut self.commands()).await;
                Err(error)
            }
        }
    }

    /// Publishes kept message `raw` as its next attempt.
    async fn publish_again(&self, raw: &[u8]) -> Result<()> {
        if !self.signs_messages() && crate::signing::is_signed(raw) {
            return Err(crate::signing::SignatureError::NoKeyToSign(Purpose::Message).into());
        }
        let mut message = self.open(raw)?;
        message.retries = (message.retries).map(|left| left.saturating_add(message.tried));
        message.eta = None;
        message.tried = message.tried.saturating_add(1);
        let destination = Destination::from_wire_name(&message.queue)?;
        let mut pipe = redis::pipe();
        self.add_to_stream(&mut pipe, &destination, self.seal(&message)?);
        pipe.query_async::<()>(&mut self.commands()).await?;
        Ok(())
    }
}
