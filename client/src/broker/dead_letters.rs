//! Dead letters: writing them (one field list, one trim rule, two ways in), reading,
//! requeueing and purging them.
//!
//! 1. An entry that cannot be run (bad bytes, a refused signature) is moved aside and
//!    acknowledged in one script ([`Broker::dead_letter`]).
//! 2. A task out of retries is dead-lettered in the outcome batch that records its last run
//!    ([`Broker::add_dead_letter`]), acknowledged with the batch.
//! 3. Both write the fields of [`NewDeadLetter`] and keep the stream capped by count
//!    (`dead_letter_cap`) and by age (`dead_letter_max_age`).

use redis::Value;

use super::reply;
use super::scripts::DEAD_LETTER;
use super::scripts::REQUEUE_DEAD;
use super::{Broker, Delivery};
use crate::signing::Purpose;
use crate::{Destination, Result};

/// A dead letter about to be written.
#[derive(Debug, Clone)]
pub struct NewDeadLetter {
    /// Why it died (the decode error, or the task's last error).
    pub reason: String,
    /// The message bytes as they last ran (or as read).
    pub raw: Vec<u8>,
    /// Its entry id in the queue stream.
    pub source_id: String,
    /// For a task that ran out of retries: its id, name and attempts made.
    pub task: Option<(String, String, u32)>,
}

impl NewDeadLetter {
    /// The stream fields, in the one order every dead letter is written with.
    pub(super) fn fields(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut fields = vec![
            ("reason", self.reason.clone().into_bytes()),
            ("raw", self.raw.clone()),
            ("source_id", self.source_id.clone().into_bytes()),
            ("dead_at", crate::now_ms().to_string().into_bytes()),
        ];
        if let Some((id, task, attempts)) = &self.task {
            fields.push(("id", id.clone().into_bytes()));
            fields.push(("task", task.clone().into_bytes()));
            fields.push(("attempts", attempts.to_string().into_bytes()));
        }
        fields
    }
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Its queue.
    pub destination: Destination,
    /// Its entry id in the dead-letter stream.
    pub entry_id: String,
    /// Why it died (the decode error, or the task's last error).
    pub reason: String,
    /// When it died (ms since the epoch).
    pub dead_at: u64,
    /// The task id, when the message decoded.
    pub id: Option<String>,
    /// The task name, when the message decoded.
    pub task: Option<String>,
    /// Attempts made, for a task that ran out of retries.
    pub attempts: Option<u32>,
    /// The message bytes as they were.
    pub raw: Vec<u8>,
}

impl Broker {
    /// The trim rule of every dead-letter stream: at most this many, none older than this
    /// (a MINID in ms).
    pub(super) fn dead_letter_bounds(&self) -> (u64, u64) {
        let max_age = self.config().dead_letter_max_age.as_millis() as u64;
        (
            self.config().dead_letter_cap,
            crate::now_ms().saturating_sub(max_age),
        )
    }

    /// Moves `delivery` to its queue's dead letters with `reason`, and acknowledges it (in its
    /// group), atomically. Returns the dead-letter entry id.
    pub async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<String> {
        let keys = self.keys();
        let letter = NewDeadLetter {
            reason: reason.to_owned(),
            raw: delivery.payload.clone().unwrap_or_default(),
            source_id: delivery.entry_id.clone(),
            task: None,
        };
        let (cap, oldest) = self.dead_letter_bounds();
        let delete = delivery.destination != Destination::Broadcast;
        let mut invocation = DEAD_LETTER.key(keys.stream(&delivery.destination));
        invocation
            .key(keys.dead_letters(&delivery.destination))
            .arg(&*delivery.group)
            .arg(&delivery.entry_id)
            .arg(if delete { "1" } else { "0" })
            .arg(cap)
            .arg(oldest);
        for (name, value) in letter.fields() {
            invocation.arg(name).arg(value);
        }
        Ok(invocation.invoke_async(&mut self.commands()).await?)
    }

    /// Adds to `pipe` the dead letter `letter` of `destination`, trimmed by the same rule.
    pub(super) fn add_dead_letter(
        &self,
        pipe: &mut redis::Pipeline,
        destination: &Destination,
        letter: &NewDeadLetter,
    ) {
        let key = self.keys().dead_letters(destination);
        let (cap, oldest) = self.dead_letter_bounds();
        let cmd = pipe.cmd("XADD").arg(&key).arg("MAXLEN").arg(cap).arg("*");
        for (name, value) in letter.fields() {
            cmd.arg(name).arg(value);
        }
        cmd.ignore();
        pipe.cmd("XTRIM")
            .arg(&key)
            .arg("MINID")
            .arg(oldest)
            .ignore();
    }

    /// Up to `limit` dead letters of `destination`, oldest first.
    pub async fn dead_letters(
        &self,
        destination: &Destination,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        self.dead_letters_after(destination, None, limit).await
    }

    /// Up to `limit` dead letters of `destination` after entry `after` (from the oldest when
    /// `None`), oldest first: pages through dead letters without loading them all.
    pub async fn dead_letters_after(
        &self,
        destination: &Destination,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let reply: Value = redis::cmd("XRANGE")
            .arg(self.keys().dead_letters(destination))
            .arg(after.map_or_else(|| "-".to_owned(), |id| format!("({id}")))
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.commands())
            .await?;
        Ok(reply::entries(reply)?
            .into_iter()
            .map(|entry| dead_letter(destination, entry))
            .collect())
    }

    /// The entry id of the newest dead letter of `destination`, if there is one.
    pub async fn newest_dead_letter(&self, destination: &Destination) -> Result<Option<String>> {
        self.newest_entry(&self.keys().dead_letters(destination))
            .await
    }

    /// Dead letter `entry_id` of `destination`, if it is there.
    pub async fn find_dead_letter(
        &self,
        destination: &Destination,
        entry_id: &str,
    ) -> Result<Option<DeadLetter>> {
        let found: Value = redis::cmd("XRANGE")
            .arg(self.keys().dead_letters(destination))
            .arg(entry_id)
            .arg(entry_id)
            .query_async(&mut self.commands())
            .await?;
        Ok(reply::entries(found)?
            .pop()
            .map(|entry| dead_letter(destination, entry)))
    }

    /// Deletes dead letter `entry_id` of `destination`; returns whether it was there.
    pub async fn delete_dead(&self, destination: &Destination, entry_id: &str) -> Result<bool> {
        let deleted: u64 = redis::cmd("XDEL")
            .arg(self.keys().dead_letters(destination))
            .arg(entry_id)
            .query_async(&mut self.commands())
            .await?;
        Ok(deleted == 1)
    }

    /// Requeues dead letter `entry_id` of `destination` as its next attempt, with its retry
    /// budget reset to the one it was published with (its other options as they were);
    /// returns whether it was still there. A letter whose
    /// bytes do not open (not a message, a bad signature) is an error and stays, and so is a
    /// signed letter when this process has no key to sign the changed message again.
    pub async fn requeue_dead(&self, destination: &Destination, entry_id: &str) -> Result<bool> {
        let Some(letter) = self.find_dead_letter(destination, entry_id).await? else {
            return Ok(false);
        };
        if !self.signs_messages() && crate::signing::is_signed(&letter.raw) {
            // Changing it here would write it unsigned: a keyless writer could launder it.
            return Err(crate::signing::SignatureError::NoKeyToSign(Purpose::Message).into());
        }
        let mut message = self.open(&letter.raw)?;
        // A fresh budget, the one it was published with: every attempt made used one retry,
        // and what was left is added back (nil stays nil: the task's default applies).
        message.retries = (message.retries).map(|left| left.saturating_add(message.tried));
        message.eta = None;
        message.tried = message.tried.saturating_add(1);
        let requeued: Option<String> = REQUEUE_DEAD
            .key(self.keys().dead_letters(destination))
            .key(self.keys().stream(destination))
            .arg(entry_id)
            .arg(self.seal(&message)?)
            .invoke_async(&mut self.commands())
            .await?;
        Ok(requeued.is_some())
    }

    /// Deletes every dead letter of `destination`; returns how many there were.
    pub async fn purge_dead(&self, destination: &Destination) -> Result<u64> {
        (self.delete_counted("XLEN", &self.keys().dead_letters(destination))).await
    }

    /// Deletes `key` in the round trip that counts it with `count` (XLEN, ZCARD...); returns
    /// the count.
    pub(super) async fn delete_counted(&self, count: &str, key: &str) -> Result<u64> {
        let (counted,): (u64,) = redis::pipe()
            .cmd(count)
            .arg(key)
            .cmd("DEL")
            .arg(key)
            .ignore()
            .query_async(&mut self.commands())
            .await?;
        Ok(counted)
    }
}

fn dead_letter(destination: &Destination, mut entry: reply::StreamEntry) -> DeadLetter {
    let mut field = |name: &str| {
        entry
            .take(name)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    };
    DeadLetter {
        destination: destination.clone(),
        reason: field("reason").unwrap_or_default(),
        dead_at: field("dead_at").and_then(|t| t.parse().ok()).unwrap_or(0),
        id: field("id"),
        task: field("task"),
        attempts: field("attempts").and_then(|a| a.parse().ok()),
        raw: entry.take("raw").unwrap_or_default(),
        entry_id: entry.id,
    }
}
