//! Heartbeats, the node list, and reaping what lost consumers held.

use std::time::Duration;

use redis::streams::StreamPendingCountReply;
use redis::Value;

use super::reply;
use super::scripts::{BEAT, REAP, RECORD_LOST};
use super::Broker;
use crate::nodes::{GoneProcess, NodeBeat, NodeHealth};
use crate::{Destination, Error, Result};

/// The gone processes, and the entries reaped from each lost one.
type GoneReply = (
    Vec<(String, Vec<u8>)>,
    std::collections::HashMap<String, u64>,
);

/// Redis's time, the node descriptions, and the beat times.
type HealthReply = ((u64, u64), Vec<(String, Vec<u8>)>, Vec<(String, u64)>);

/// What becomes of an entry reaped from a lost consumer.
#[derive(Debug)]
pub enum Fate {
    /// Queue this message in its place (the same attempt, or the next one).
    Requeue(Vec<u8>),
    /// Drop it: its outcome is recorded, or the caller records it lost.
    Drop,
    /// Keep it as a dead letter: bytes that do not open are never dropped.
    DeadLetter(super::NewDeadLetter),
}

/// One entry pending for a consumer, as XPENDING lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    /// The entry id.
    pub entry_id: String,
    /// The consumer holding it.
    pub consumer: String,
    /// Milliseconds since it was last delivered.
    pub idle_ms: u64,
}

impl Broker {
    /// Records this process's heartbeat; returns Redis's time (ms) and whether the process had
    /// a beat already (`false` on its first beat, or when peers had reaped it).
    pub async fn beat(&self, beat: &NodeBeat) -> Result<(u64, bool)> {
        let bytes = rmp_serde::to_vec_named(beat).map_err(|e| Error::Encode {
            what: "heartbeat".into(),
            reason: e.to_string(),
        })?;
        let (now, known): (u64, i64) = BEAT
            .key(self.keys().nodes())
            .key(self.keys().beats())
            .arg(&beat.consumer)
            .arg(bytes)
            .invoke_async(&mut self.commands())
            .await?;
        Ok((now, known == 1))
    }

    /// Moves a process from the heartbeats to the gone processes: lost and reaped, or stopped
    /// cleanly. It is kept there for the retention ([`Broker::expire_gone`]). The entries this
    /// reaper reaped (`gone.reaped`) are added to the process's count with HINCRBY: peers that
    /// reap one process at once each add their own share, so the count is the sum.
    pub async fn forget_consumer(&self, gone: &GoneProcess) -> Result<()> {
        let consumer = &gone.beat.consumer;
        let bytes = rmp_serde::to_vec_named(gone).map_err(|e| Error::Encode {
            what: "gone process".into(),
            reason: e.to_string(),
        })?;
        let keys = self.keys();
        let mut pipe = redis::pipe();
        pipe.cmd("HDEL")
            .arg(keys.nodes())
            .arg(consumer)
            .ignore()
            .cmd("HDEL")
            .arg(keys.beats())
            .arg(consumer)
            .ignore()
            .cmd("HSET")
            .arg(keys.gone())
            .arg(consumer)
            .arg(bytes)
            .ignore();
        if gone.state == crate::nodes::GoneState::Lost {
            pipe.cmd("HINCRBY")
                .arg(keys.reaped())
                .arg(consumer)
                .arg(gone.reaped)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.commands()).await?;
        Ok(())
    }

    /// The gone processes (lost or stopped), oldest first, each lost one with the sum of what
    /// every reaper reaped from it; undecodable entries are skipped.
    pub async fn gone_processes(&self) -> Result<Vec<GoneProcess>> {
        let (all, reaped): GoneReply = redis::pipe()
            .cmd("HGETALL")
            .arg(self.keys().gone())
            .cmd("HGETALL")
            .arg(self.keys().reaped())
            .query_async(&mut self.commands())
            .await?;
        let mut gone: Vec<GoneProcess> = (all.into_iter())
            .filter_map(|(consumer, bytes)| {
                let mut gone: GoneProcess = rmp_serde::from_slice(&bytes).ok()?;
                if let Some(count) = reaped.get(&consumer) {
                    gone.reaped = *count;
                }
                Some(gone)
            })
            .collect();
        gone.sort_by_key(|g| g.at);
        Ok(gone)
    }

    /// Forgets processes gone longer than `retention`, and deletes the broadcast group of each
    /// of their nodes that has no live process and no process gone more recently (a node that
    /// comes back later reads broadcasts from then on). Returns the nodes whose group went.
    pub async fn expire_gone(&self, retention: Duration, live: &[&str]) -> Result<Vec<String>> {
        let all: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.keys().gone())
            .query_async(&mut self.commands())
            .await?;
        let cutoff = crate::now_ms().saturating_sub(retention.as_millis() as u64);
        let (mut expired, mut kept_nodes, mut expired_nodes) = (Vec::new(), Vec::new(), Vec::new());
        for (consumer, bytes) in all {
            match rmp_serde::from_slice::<GoneProcess>(&bytes) {
                Ok(gone) if gone.at >= cutoff => kept_nodes.push(gone.beat.node),
                Ok(gone) => {
                    expired.push(consumer);
                    expired_nodes.push(gone.beat.node);
                }
                Err(_) => expired.push(consumer),
            }
        }
        if expired.is_empty() {
            return Ok(Vec::new());
        }
        expired_nodes.sort();
        expired_nodes.dedup();
        expired_nodes.retain(|node| !kept_nodes.contains(node) && !live.contains(&node.as_str()));
        let stream = self.keys().stream(&Destination::Broadcast);
        let mut pipe = redis::pipe();
        pipe.cmd("HDEL")
            .arg(self.keys().gone())
            .arg(&expired)
            .ignore()
            .cmd("HDEL")
            .arg(self.keys().reaped())
            .arg(&expired)
            .ignore();
        for node in &expired_nodes {
            pipe.cmd("XGROUP")
                .arg("DESTROY")
                .arg(&stream)
                .arg(super::Keys::group(&Destination::Broadcast, node))
                .ignore();
        }
        pipe.query_async::<()>(&mut self.commands()).await?;
        Ok(expired_nodes)
    }

    /// Every consumer that has beaten, with its health; `lost_after` is the grace period.
    /// Sorted by node, then consumer.
    pub async fn nodes(&self, lost_after: Duration) -> Result<Vec<NodeHealth>> {
        let (time, described, beats): HealthReply = redis::pipe()
            .cmd("TIME")
            .cmd("HGETALL")
            .arg(self.keys().nodes())
            .cmd("HGETALL")
            .arg(self.keys().beats())
            .query_async(&mut self.commands())
            .await?;
        let now = time.0 * 1000 + time.1 / 1000;
        let beats: std::collections::HashMap<String, u64> = beats.into_iter().collect();
        let mut nodes: Vec<NodeHealth> = described
            .into_iter()
            .filter_map(|(consumer, bytes)| {
                let beat: NodeBeat = rmp_serde::from_slice(&bytes).ok()?;
                let beat_at = beats.get(&consumer).copied().unwrap_or(0);
                Some(NodeHealth {
                    lost: now.saturating_sub(beat_at) > lost_after.as_millis() as u64,
                    beat,
                    beat_at,
                })
            })
            .collect();
        nodes.sort_by(|a, b| {
            (&a.beat.node, &a.beat.consumer).cmp(&(&b.beat.node, &b.beat.consumer))
        });
        Ok(nodes)
    }

    /// Entries of `destination` pending in `group` for `consumer`, up to `count`.
    pub async fn pending_of(
        &self,
        destination: &Destination,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<PendingEntry>> {
        let reply: redis::RedisResult<StreamPendingCountReply> = redis::cmd("XPENDING")
            .arg(self.keys().stream(destination))
            .arg(group)
            .arg("-")
            .arg("+")
            .arg(count)
            .arg(consumer)
            .query_async(&mut self.commands())
            .await;
        match reply {
            Ok(reply) => Ok(reply
                .ids
                .into_iter()
                .map(|pending| PendingEntry {
                    entry_id: pending.id,
                    consumer: pending.consumer,
                    idle_ms: pending.last_delivered_ms as u64,
                })
                .collect()),
            Err(e) if e.code() == Some("NOGROUP") => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The message bytes of entry `entry_id` of `destination`, if it is still in the stream.
    pub async fn entry_payload(
        &self,
        destination: &Destination,
        entry_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        let reply: Value = redis::cmd("XRANGE")
            .arg(self.keys().stream(destination))
            .arg(entry_id)
            .arg(entry_id)
            .query_async(&mut self.commands())
            .await?;
        Ok(reply::entries(reply)?
            .pop()
            .and_then(|entry| entry.into_message().1))
    }

    /// Reaps entry `entry_id` of `destination` from lost `consumer` of `group`, as `fate`
    /// says. Returns whether this call reaped it (false: someone else did, or the consumer is
    /// not holding it any more).
    pub async fn reap_entry(
        &self,
        destination: &Destination,
        group: &str,
        entry_id: &str,
        consumer: &str,
        fate: Fate,
    ) -> Result<bool> {
        let delete = *destination != Destination::Broadcast;
        let mut invocation = REAP.key(self.keys().stream(destination));
        invocation
            .key(self.keys().dead_letters(destination))
            .arg(group)
            .arg(entry_id)
            .arg(consumer);
        let delete = if delete { "1" } else { "0" };
        match fate {
            Fate::Requeue(message) => invocation.arg("requeue").arg(delete).arg(message),
            Fate::Drop => invocation.arg("drop").arg(delete),
            Fate::DeadLetter(letter) => {
                let (cap, oldest) = self.dead_letter_bounds();
                invocation.arg("dead").arg(delete).arg(cap).arg(oldest);
                for (name, value) in letter.fields() {
                    invocation.arg(name).arg(value);
                }
                &mut invocation
            }
        };
        let reaped: i64 = invocation.invoke_async(&mut self.commands()).await?;
        Ok(reaped == 1)
    }

    /// Removes `consumer` from `group` of `destination` (once it holds nothing).
    pub async fn delete_consumer(
        &self,
        destination: &Destination,
        group: &str,
        consumer: &str,
    ) -> Result<()> {
        let deleted: redis::RedisResult<i64> = redis::cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(self.keys().stream(destination))
            .arg(group)
            .arg(consumer)
            .query_async(&mut self.commands())
            .await;
        match deleted {
            // No group, or no stream at all (a lost node whose own queue was never made).
            Err(e) if e.code() != Some("NOGROUP") && !e.to_string().contains("key to exist") => {
                Err(e.into())
            }
            _ => Ok(()),
        }
    }

    /// Moves every message waiting in `from` to `to` (a lost node's own queue to a shared
    /// queue), under a short lock so that two reapers do not move one twice. Returns how many
    /// moved (0 when another reaper holds the lock).
    pub async fn move_waiting(
        &self,
        from: &Destination,
        to: &Destination,
        owner: &str,
    ) -> Result<usize> {
        let lock = format!("{}:adopting", self.keys().stream(from));
        let locked: Option<String> = redis::cmd("SET")
            .arg(&lock)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(30_000)
            .query_async(&mut self.commands())
            .await?;
        if locked.is_none() {
            return Ok(0);
        }
        let mut moved = 0;
        loop {
            let reply: Value = redis::cmd("XRANGE")
                .arg(self.keys().stream(from))
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(100)
                .query_async(&mut self.commands())
                .await?;
            let entries = reply::entries(reply)?;
            if entries.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            let mut ids = Vec::new();
            for entry in entries {
                let (id, payload) = entry.into_message();
                if let Some(payload) = payload {
                    self.add_to_stream(&mut pipe, to, payload).ignore();
                    moved += 1;
                }
                ids.push(id);
            }
            let stream = self.keys().stream(from);
            pipe.cmd("XACK")
                .arg(&stream)
                .arg(super::keys::QUEUE_GROUP)
                .arg(&ids)
                .ignore();
            pipe.cmd("XDEL").arg(&stream).arg(&ids).ignore();
            pipe.query_async::<()>(&mut self.commands()).await?;
        }
        redis::cmd("DEL")
            .arg(&lock)
            .query_async::<()>(&mut self.commands())
            .await?;
        Ok(moved)
    }

    /// Writes the reaper's verdict on a lost run into field `field` of its task's record
    /// (and as its attempt too when `as_attempt`), unless that field already holds a later
    /// attempt; returns whether the field was written.
    pub async fn record_lost(
        &self,
        run: &crate::RunRecord,
        field: &str,
        as_attempt: bool,
        ttl: Duration,
    ) -> Result<bool> {
        let attempt_field = match as_attempt {
            true => crate::TaskRecord::attempt_field(run.attempt),
            false => String::new(),
        };
        let written: i64 = RECORD_LOST
            .key(self.keys().record(&run.id))
            .arg(field)
            .arg(run.encode()?)
            .arg(run.attempt)
            .arg(ttl.as_millis() as u64)
            .arg(attempt_field)
            .invoke_async(&mut self.commands())
            .await?;
        if written == 1 && self.writes_events() {
            let mut pipe = redis::pipe();
            self.add_run_event_as(&mut pipe, "lost", run);
            pipe.query_async::<()>(&mut self.commands()).await?;
        }
        Ok(written == 1)
    }
}
