//! Reading queues through consumer groups.
//!
//! Each stream is read by a consumer group; what a consumer reads stays in the group's
//! pending list until it is acknowledged, so a crash never loses it.

use std::time::Duration;

use redis::Value;

use super::scripts::READ_IN_ORDER;
use super::{reply, Broker, Connection};
use crate::{Destination, Result};

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
    /// The consumer group it was read through (`workers`, or `node:NODE` for a broadcast):
    /// where it is acknowledged.
    pub group: std::sync::Arc<str>,
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

    /// The id of the newest entry of stream `key`, if it has one.
    pub(super) async fn newest_entry(&self, key: &str) -> Result<Option<String>> {
        let newest: Value = redis::cmd("XREVRANGE")
            .arg(key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.commands())
            .await?;
        Ok(reply::entries(newest)?.pop().map(|entry| entry.id))
    }

    /// `streams` grouped by the connection that can block on them together: all in one on a
    /// single server; one group per Cluster hash slot, since one blocking read must stay within
    /// one slot.
    pub fn blocking_lanes(&self, streams: Vec<Destination>) -> Vec<Vec<Destination>> {
        if !self.is_cluster() {
            return vec![streams];
        }
        let mut by_slot: std::collections::BTreeMap<u16, Vec<Destination>> = Default::default();
        for stream in streams {
            let key = self.keys().stream(&stream);
            by_slot
                .entry(super::hash_slot(key.as_bytes()))
                .or_default()
                .push(stream);
        }
        by_slot.into_values().collect()
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
        self.parse_read_reply(reply, group)
    }

    /// Reads up to `count` new entries in all for `consumer` of `group`, from `streams` in the
    /// order given (all in one slot), without blocking: the first streams with entries fill
    /// the count, later ones are not read. One round trip (`read_in_order.lua`).
    pub async fn read_in_order(
        &self,
        conn: &mut Connection,
        group: &str,
        consumer: &str,
        streams: &[Destination],
        count: usize,
    ) -> Result<Vec<Delivery>> {
        let keys: Vec<String> = streams.iter().map(|s| self.keys().stream(s)).collect();
        let reply: Value = READ_IN_ORDER
            .key(keys)
            .arg(group)
            .arg(consumer)
            .arg(count)
            .invoke_async(conn)
            .await?;
        self.parse_read_reply(reply, group)
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
        self.parse_read_reply(reply, group)
    }

    fn parse_read_reply(&self, reply: Value, group: &str) -> Result<Vec<Delivery>> {
        let mut deliveries = Vec::new();
        let group: std::sync::Arc<str> = group.into();
        for (key, entries) in reply::streams(reply)? {
            let destination = self
                .keys()
                .destination_of_stream(&key)
                .ok_or_else(|| reply::bad_reply(format!("unexpected stream key {key}")))?;
            for entry in entries {
                let (entry_id, payload) = entry.into_message();
                deliveries.push(Delivery {
                    destination: destination.clone(),
                    group: group.clone(),
                    entry_id,
                    payload,
                });
            }
        }
        Ok(deliveries)
    }
}
