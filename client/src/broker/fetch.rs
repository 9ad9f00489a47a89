//! Reading queues through consumer groups.
//!
//! Each stream is read by a consumer group; what a consumer reads stays in the group's
//! pending list until it is acknowledged, so a crash never loses it.

use std::time::Duration;

use redis::Value;

use super::keys::MESSAGE_FIELD;
use super::{Broker, Connection};
use crate::{Destination, Error, Result};

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStart {
    /// From the start of the stream: queues, so that work published before any worker is run.
    Beginning,
    /// From now on: a node's broadcast group, so a new node does not replay old broadcasts.
    Now,
}

/// One entry read from a queue stream.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The queue it was read from.
    pub destination: Destination,
    /// The stream entry id, used to acknowledge it.
    pub entry_id: String,
    /// The message bytes; `None` when the entry had no message field (not written by stevedore)
    /// or was trimmed from the stream while pending.
    pub payload: Option<Vec<u8>>,
}

impl Broker {
    /// Creates `group` on the queue's stream (and the stream) unless it exists.
    pub async fn ensure_group(
        &self,
        destination: &Destination,
        group: &str,
        start: GroupStart,
    ) -> Result<()> {
        let start_id = match start {
            GroupStart::Beginning => "0",
            GroupStart::Now => "$",
        };
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys().stream(destination))
            .arg(group)
            .arg(start_id)
            .arg("MKSTREAM")
            .query_async(&mut self.commands())
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => Ok(other?),
        }
    }

    /// Reads up to `count` new entries per stream for `consumer` of `group`, blocking up to
    /// `block` when there are none (`None`: do not block). Streams are read in the order given.
    pub async fn read_group(
        &self,
        conn: &mut Connection,
        group: &str,
        consumer: &str,
        streams: &[Destination],
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Delivery>> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS");
        for destination in streams {
            cmd.arg(self.keys().stream(destination));
        }
        for _ in streams {
            cmd.arg(">");
        }
        let reply: Value = cmd.query_async(conn).await?;
        self.parse_read_reply(reply)
    }

    /// The entries of `destination` already delivered to `consumer` of `group` and not yet
    /// acknowledged (its own pending entries), up to `count`: what a reconnecting consumer
    /// must settle, since a read whose reply was lost left them on its name.
    pub async fn read_own_pending(
        &self,
        conn: &mut Connection,
        group: &str,
        consumer: &str,
        destination: &Destination,
        count: usize,
    ) -> Result<Vec<Delivery>> {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(self.keys().stream(destination))
            .arg("0")
            .query_async(conn)
            .await?;
        self.parse_read_reply(reply)
    }

    fn parse_read_reply(&self, reply: Value) -> Result<Vec<Delivery>> {
        let mut deliveries = Vec::new();
        for (key, entries) in stream_pairs(reply)? {
            let destination = self
                .keys()
                .destination_of_stream(&key)
                .ok_or_else(|| bad_reply(format!("unexpected stream key {key}")))?;
            let Value::Array(entries) = entries else {
                return Err(bad_reply("entries are not an array"));
            };
            for entry in entries {
                let (entry_id, payload) = parse_entry(entry)?;
                deliveries.push(Delivery {
                    destination: destination.clone(),
                    entry_id,
                    payload,
                });
            }
        }
        Ok(deliveries)
    }
}

/// The (stream key, entries) pairs of an XREADGROUP reply in RESP2 or RESP3 form.
fn stream_pairs(reply: Value) -> Result<Vec<(String, Value)>> {
    let pairs = match reply {
        Value::Nil => Vec::new(),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Array(mut pair) if pair.len() == 2 => {
                    let entries = pair.pop().unwrap_or(Value::Nil);
                    let key = pair.pop().unwrap_or(Value::Nil);
                    Ok((key, entries))
                }
                _ => Err(bad_reply("stream item is not a [key, entries] pair")),
            })
            .collect::<Result<_>>()?,
        Value::Map(items) => items,
        _ => return Err(bad_reply("reply is neither an array nor a map")),
    };
    pairs
        .into_iter()
        .map(|(key, entries)| Ok((text(key)?, entries)))
        .collect()
}

pub(super) fn parse_entry(entry: Value) -> Result<(String, Option<Vec<u8>>)> {
    let Value::Array(mut parts) = entry else {
        return Err(bad_reply("entry is not an array"));
    };
    if parts.len() != 2 {
        return Err(bad_reply("entry is not an [id, fields] pair"));
    }
    let fields = parts.pop().unwrap_or(Value::Nil);
    let entry_id = text(parts.pop().unwrap_or(Value::Nil))?;
    let payload = match fields {
        Value::Array(fields) => message_field(fields),
        Value::Map(fields) => message_field(fields.into_iter().flat_map(|(k, v)| [k, v]).collect()),
        _ => None,
    };
    Ok((entry_id, payload))
}

fn message_field(fields: Vec<Value>) -> Option<Vec<u8>> {
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if matches!(&name, Value::BulkString(n) if n == MESSAGE_FIELD.as_bytes()) {
            if let Value::BulkString(bytes) = value {
                return Some(bytes);
            }
        }
    }
    None
}

pub(super) fn text(value: Value) -> Result<String> {
    match value {
        Value::BulkString(bytes) => {
            String::from_utf8(bytes).map_err(|_| bad_reply("a key or id is not UTF-8"))
        }
        Value::SimpleString(s) => Ok(s),
        _ => Err(bad_reply("expected a string")),
    }
}

pub(super) fn bad_reply(reason: impl Into<String>) -> Error {
    Error::Decode {
        what: "redis reply".into(),
        reason: reason.into(),
    }
}
