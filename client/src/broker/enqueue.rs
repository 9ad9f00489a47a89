//! Publishing: one XADD (or ZADD for a delayed message) per message, all of a batch in one
//! pipelined round trip.

use super::keys::MESSAGE_FIELD;
use super::scripts::CLAIM_ID;
use super::Broker;
use crate::{Destination, Error, Message, Result};

/// How long an id its publisher chose stays taken: as long as a task's record lasts by
/// default (`--record-ttl`, a day).
const ID_CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(86_400);

/// How long the record of a discarded copy lasts (the workers' default record TTL).
pub const DISCARDED_TTL: std::time::Duration = std::time::Duration::from_secs(86_400);

impl Broker {
    /// Appends every message to its queue's stream in one round trip; broadcasts go to the
    /// capped broadcast stream.
    ///
    /// A message with an `eta` in the future goes to the queue's delayed set instead, and the
    /// forwarders are woken. A message larger than `max_payload` is refused, and then nothing of
    /// the batch is written. Messages with an on_duplicate policy are checked and published
    /// atomically. Returns, for each message, whether it was published (`false`: dropped as a
    /// duplicate).
    pub async fn enqueue(&self, messages: &[Message]) -> Result<Vec<bool>> {
        self.claim_given_ids(messages).await?;
        let mut pipe = redis::pipe();
        let now = crate::now_ms();
        let mut earliest_delayed: Option<u64> = None;
        let mut checked = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            let destination = Destination::from_wire_name(&message.queue)?;
            let payload = self.seal(message)?;
            if payload.len() > self.config().max_payload {
                return Err(Error::PayloadTooLarge {
                    task: message.task.clone(),
                    size: payload.len(),
                    limit: self.config().max_payload,
                });
            }
            let eta = message.eta.filter(|eta| *eta > now);
            match (eta, crate::dedup_policy(message)) {
                // Delayed copies are checked as immediate ones are: when they are published.
                (_, Some(policy)) => {
                    self.add_dedup_publish(&mut pipe, &destination, policy, payload, eta);
                    checked.push(index);
                    if let Some(eta) = eta {
                        earliest_delayed = Some(earliest_delayed.map_or(eta, |e| e.min(eta)));
                    }
                }
                (Some(eta), None) => {
                    self.add_delayed(&mut pipe, &destination, eta, payload);
                    earliest_delayed = Some(earliest_delayed.map_or(eta, |e| e.min(eta)));
                }
                (None, None) => {
                    self.add_to_stream(&mut pipe, &destination, payload);
                }
            }
            // Copies checked for duplicates say published or discarded once the reply is in.
            if self.writes_events() && checked.last() != Some(&index) {
                self.add_message_event(&mut pipe, "published", message);
            }
        }
        if let Some(due) = earliest_delayed {
            self.add_wake(&mut pipe, due);
        }
        self.add_registered(&mut pipe, messages.iter().map(|m| m.queue.as_str()));
        // One reply per message (the wake-up's is ignored), errors kept in place.
        pipe.ignore_errors();
        let config = self.config();
        let replies: Vec<redis::RedisResult<redis::Value>> = self
            .commands()
            .query_replicated(&pipe, config.replicas_to_ack, config.replica_ack_timeout)
            .await
            .map_err(|e| Error::PublishUnconfirmed {
                unconfirmed: messages.iter().map(|m| m.id.clone()).collect(),
                cause: first_line(&e.to_string()),
            })?;
        let published = settle_replies(messages, &checked, replies)?;
        if self.writes_events() && !checked.is_empty() {
            self.checked_events(messages, &checked, &published).await?;
        }
        Ok(published)
    }

    /// Claims the ids their publishers chose (one round trip, only when there are some):
    /// an id is used once. A message under an on_duplicate policy is left to that policy.
    /// Refused, nothing of the batch is published (the ids claimed stay claimed).
    async fn claim_given_ids(&self, messages: &[Message]) -> Result<()> {
        let given: Vec<&Message> = (messages.iter())
            .filter(|m| m.id_given && crate::dedup_policy(m).is_none())
            .collect();
        if given.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for message in &given {
            let (claim, record) = (
                self.keys().claim(&message.id),
                self.keys().record(&message.id),
            );
            CLAIM_ID
                .eval_in(&mut pipe, &[&claim, &record])
                .arg(ID_CLAIM_TTL.as_millis() as u64);
        }
        let claimed: Vec<i64> = pipe.query_async(&mut self.commands()).await?;
        match given.iter().zip(claimed).find(|(_, c)| *c == 0) {
            Some((taken, _)) => Err(Error::InvalidOptions(format!(
                "task id {} is taken: a task was published with it before (see `stevedore task {}`); publish with another id",
                taken.id, taken.id
            ))),
            None => Ok(()),
        }
    }

    /// The events of the messages checked for duplicates: published, or discarded.
    async fn checked_events(
        &self,
        messages: &[Message],
        checked: &[usize],
        published: &[bool],
    ) -> Result<()> {
        let mut pipe = redis::pipe();
        for &index in checked {
            let event = if published[index] {
                "published"
            } else {
                "discarded"
            };
            self.add_message_event(&mut pipe, event, &messages[index]);
        }
        pipe.query_async::<()>(&mut self.commands()).await?;
        Ok(())
    }

    /// Records each of `messages` as `discarded` (dropped by its on_duplicate policy), so that
    /// `stevedore task ID` can say so; the record lasts `DISCARDED_TTL` (a day).
    pub async fn record_discarded(&self, messages: impl Iterator<Item = &Message>) -> Result<()> {
        let mut pipe = redis::pipe();
        let mut runs = Vec::new();
        for message in messages {
            let mut run = crate::RunRecord::starting(message, "");
            run.state = crate::TaskState::Discarded;
            run.error =
                Some("discarded: a copy with the same arguments was queued or running".into());
            run.finished_at = Some(crate::now_ms());
            let key = self.keys().record(&message.id);
            let field = crate::TaskRecord::TASK_FIELD;
            // HSETNX: a copy published under the id of a recorded task never hides its record.
            pipe.cmd("HSETNX")
                .arg(&key)
                .arg(field)
                .arg(run.encode()?)
                .ignore();
            pipe.cmd("PEXPIRE")
                .arg(&key)
                .arg(DISCARDED_TTL.as_millis() as u64)
                .ignore();
            runs.push(run);
        }
        self.add_history(
            &mut pipe,
            runs.iter(),
            super::DEFAULT_HISTORY,
            DISCARDED_TTL,
        );
        pipe.query_async::<()>(&mut self.commands()).await?;
        Ok(())
    }

    /// Sends `pipe` on the shared connection; with
    /// [`BrokerConfig::replicas_to_ack`](super::BrokerConfig) set, fails unless that many
    /// replicas of every master written confirm the writes.
    pub(crate) async fn query_replicated<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        let config = self.config();
        Ok(self
            .commands()
            .query_replicated(pipe, config.replicas_to_ack, config.replica_ack_timeout)
            .await?)
    }

    /// Adds to `pipe` the XADD of `payload` to `destination`'s stream (broadcasts capped);
    /// its reply is kept (call `.ignore()` on the result to drop it).
    pub(crate) fn add_to_stream<'p>(
        &self,
        pipe: &'p mut redis::Pipeline,
        destination: &Destination,
        payload: Vec<u8>,
    ) -> &'p mut redis::Pipeline {
        let cmd = pipe.cmd("XADD").arg(self.keys().stream(destination));
        if *destination == Destination::Broadcast {
            cmd.arg("MAXLEN").arg("~").arg(self.config().broadcast_cap);
        }
        cmd.arg("*").arg(MESSAGE_FIELD).arg(payload)
    }

    /// Adds to `pipe` the ZADD of `payload` to `destination`'s delayed set, due at `due_ms`;
    /// its reply is kept (call `.ignore()` on the result to drop it).
    pub(crate) fn add_delayed<'p>(
        &self,
        pipe: &'p mut redis::Pipeline,
        destination: &Destination,
        due_ms: u64,
        payload: Vec<u8>,
    ) -> &'p mut redis::Pipeline {
        pipe.cmd("ZADD")
            .arg(self.keys().delayed(destination))
            .arg(due_ms)
            .arg(payload)
    }

    /// Adds to `pipe` the wake-up hint for the forwarders.
    pub(crate) fn add_wake(&self, pipe: &mut redis::Pipeline, due_ms: u64) {
        pipe.cmd("PUBLISH")
            .arg(self.keys().delayed_wake())
            .arg(due_ms)
            .ignore();
    }

    /// Appends raw bytes to a queue's stream as if they were a message (for tests and tools
    /// that speak the protocol themselves). Returns the entry id.
    pub async fn enqueue_raw(&self, destination: &Destination, payload: &[u8]) -> Result<String> {
        Ok(redis::cmd("XADD")
            .arg(self.keys().stream(destination))
            .arg("*")
            .arg(MESSAGE_FIELD)
            .arg(payload)
            .query_async(&mut self.commands())
            .await?)
    }
}

/// Whether each message was published (`false`: dropped as a duplicate), from the batch's
/// replies in message order; a batch Redis refused in part is an error naming both parts.
fn settle_replies(
    messages: &[Message],
    checked: &[usize],
    replies: Vec<redis::RedisResult<redis::Value>>,
) -> Result<Vec<bool>> {
    let mut published = vec![true; messages.len()];
    let (mut taken, mut refused, mut cause) = (Vec::new(), Vec::new(), None);
    for (index, (message, reply)) in messages.iter().zip(replies).enumerate() {
        match reply {
            Ok(value) => {
                if checked.contains(&index) {
                    published[index] = matches!(value, redis::Value::Int(1));
                }
                taken.push(message.id.clone());
            }
            Err(error) => {
                cause.get_or_insert_with(|| first_line(&error.to_string()));
                refused.push(message.id.clone());
            }
        }
    }
    match cause {
        None => Ok(published),
        Some(cause) => Err(Error::PartlyPublished {
            published: taken,
            not_published: refused,
            cause,
        }),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}
