//! Reading, requeueing and purging dead letters.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use redis::Value;

use super::fetch::{bad_reply, text};
use super::Broker;
use crate::{Destination, Result};

static REQUEUE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/requeue_dead.lua")));

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
    /// Up to `limit` dead letters of `destination`, oldest first.
    pub async fn dead_letters(
        &self,
        destination: &Destination,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let reply: Value = redis::cmd("XRANGE")
            .arg(self.keys().dead_letters(destination))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.commands())
            .await?;
        let Value::Array(entries) = reply else {
            return Err(bad_reply("XRANGE reply is not an array"));
        };
        entries
            .into_iter()
            .map(|entry| dead_letter(destination, entry))
            .collect()
    }

    /// Requeues dead letter `entry_id` of `destination` as its next attempt, with its retry
    /// budget reset (the task's default); returns whether it was still there.
    pub async fn requeue_dead(&self, destination: &Destination, entry_id: &str) -> Result<bool> {
        let found: Value = redis::cmd("XRANGE")
            .arg(self.keys().dead_letters(destination))
            .arg(entry_id)
            .arg(entry_id)
            .query_async(&mut self.commands())
            .await?;
        let Value::Array(mut entries) = found else {
            return Err(bad_reply("XRANGE reply is not an array"));
        };
        let Some(entry) = entries.pop() else {
            return Ok(false);
        };
        let letter = dead_letter(destination, entry)?;
        let mut message = self.open(&letter.raw)?;
        message.retries = None;
        message.eta = None;
        message.tried += 1;
        let requeued: Option<String> = REQUEUE
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
        let key = self.keys().dead_letters(destination);
        let (count,): (u64,) = redis::pipe()
            .cmd("XLEN")
            .arg(&key)
            .cmd("DEL")
            .arg(&key)
            .ignore()
            .query_async(&mut self.commands())
            .await?;
        Ok(count)
    }
}

fn dead_letter(destination: &Destination, entry: Value) -> Result<DeadLetter> {
    let Value::Array(mut parts) = entry else {
        return Err(bad_reply("dead letter is not an array"));
    };
    if parts.len() != 2 {
        return Err(bad_reply("dead letter is not an [id, fields] pair"));
    }
    let fields = parts.pop().unwrap_or(Value::Nil);
    let entry_id = text(parts.pop().unwrap_or(Value::Nil))?;
    let mut map: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    if let Value::Array(flat) = fields {
        let mut flat = flat.into_iter();
        while let (Some(name), Some(Value::BulkString(value))) = (flat.next(), flat.next()) {
            map.insert(text(name)?, value);
        }
    }
    let field = |name: &str| {
        map.get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    Ok(DeadLetter {
        destination: destination.clone(),
        entry_id,
        reason: field("reason").unwrap_or_default(),
        dead_at: field("dead_at").and_then(|t| t.parse().ok()).unwrap_or(0),
        id: field("id"),
        task: field("task"),
        attempts: field("attempts").and_then(|a| a.parse().ok()),
        raw: map.remove("raw").unwrap_or_default(),
    })
}
