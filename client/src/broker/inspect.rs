//! Reading task records and queue statistics, and waiting for a task to end.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redis::streams::StreamInfoGroupsReply;
use redis::Value;

use super::Broker;
use crate::{Destination, Result, RunRecord, TaskRecord};

/// Counts of one queue, as `stevedore queues` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// The queue.
    pub destination: Destination,
    /// Entries in the stream (for broadcasts: the retained log).
    pub length: u64,
    /// Entries not yet read by any worker (queues only; 0 for broadcasts).
    pub waiting: u64,
    /// Entries read but not yet acknowledged: running, or held by a crashed worker.
    pub running: u64,
    /// Entries in the dead letters.
    pub dead: u64,
    /// Consumers registered in its groups.
    pub consumers: u64,
    /// Messages in its delayed set: delayed tasks, and retries waiting for their backoff.
    pub delayed: u64,
    /// When the oldest waiting entry was added (ms since the epoch), if one waits.
    pub oldest_waiting_at: Option<u64>,
}

#[derive(Debug, Default)]
struct GroupCounts {
    pending: u64,
    consumers: u64,
}

impl Broker {
    /// The record of task `id`: every run stored for it (none if pending or expired); a field
    /// that does not decode is named in `unreadable`, the rest read as usual.
    pub async fn task_record(&self, id: &str) -> Result<TaskRecord> {
        let fields: BTreeMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(self.keys().record(id))
            .query_async(&mut self.commands())
            .await?;
        Ok(record_of(id, fields))
    }

    /// The records of tasks `ids`, in their order, in one round trip (empty for an id
    /// without one).
    pub async fn task_records(&self, ids: &[&str]) -> Result<Vec<TaskRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HGETALL").arg(self.keys().record(id));
        }
        let hashes: Vec<BTreeMap<String, Vec<u8>>> = pipe.query_async(&mut self.commands()).await?;
        Ok(ids
            .iter()
            .zip(hashes)
            .map(|(id, h)| record_of(id, h))
            .collect())
    }

    /// Blocks until task `id` has signalled its end (published with `notify`) or `timeout`
    /// passes; returns whether it ended. Several waiters may wait for one task: the token is
    /// rotated, not taken.
    pub async fn wait_done(&self, id: &str, timeout: Duration) -> Result<bool> {
        self.wait_list(&self.keys().done(id), timeout).await
    }

    /// Waits until list `key` holds a token (left in place) or `timeout` passes.
    pub(crate) async fn wait_list(&self, key: &str, timeout: Duration) -> Result<bool> {
        let mut conn = self.blocking_connection().await?;
        let secs = format!("{:.3}", timeout.as_secs_f64().max(0.001));
        let reply = tokio::time::timeout(
            timeout + self.config().response_timeout,
            redis::cmd("BLMOVE")
                .arg(key)
                .arg(key)
                .arg("LEFT")
                .arg("RIGHT")
                .arg(secs)
                .query_async::<Value>(&mut *conn),
        )
        .await;
        match reply {
            Ok(reply) => Ok(!matches!(reply?, Value::Nil)),
            Err(_) => Ok(false),
        }
    }

    /// Every queue of the namespace: those registered (published to or read), or, in a
    /// namespace written before the registry, those with keys (registered now).
    pub async fn destinations(&self) -> Result<BTreeSet<Destination>> {
        let registered: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys().queue_registry())
            .query_async(&mut self.commands())
            .await?;
        match registered.is_empty() {
            true => self.register_existing_queues().await,
            false => Ok((registered.iter())
                .filter_map(|q| Destination::from_wire_name(q).ok())
                .collect()),
        }
    }

    /// Every queue of the namespace (with a stream, delayed or dead-lettered messages) with its
    /// counts, sorted by destination; a first lane (`NAME+first`) only when it is not empty.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>> {
        let destinations = self.destinations().await?;
        // Concurrent on the multiplexed connection: their commands travel pipelined.
        let infos = destinations.into_iter().map(|d| self.queue_info(d));
        let mut infos = futures_util::future::try_join_all(infos).await?;
        // A queue's first lane is listed only while it holds something (an exclusive task).
        infos.retain(|i| !i.destination.is_first_lane() || i.length + i.dead + i.delayed > 0);
        Ok(infos)
    }

    /// The counts of one queue.
    pub async fn queue_info(&self, destination: Destination) -> Result<QueueInfo> {
        let stream = self.keys().stream(&destination);
        let (length, dead, delayed): (u64, u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(&stream)
            .cmd("XLEN")
            .arg(self.keys().dead_letters(&destination))
            .cmd("ZCARD")
            .arg(self.keys().delayed(&destination))
            .query_async(&mut self.commands())
            .await?;
        let groups = self.queue_groups(&stream).await?;
        let oldest_waiting_at = match &destination {
            Destination::Broadcast => None,
            _ => self.oldest_waiting(&stream, &groups).await?,
        };
        let counts = group_counts(groups);
        let waiting = match destination {
            Destination::Broadcast => 0,
            _ => length.saturating_sub(counts.pending),
        };
        Ok(QueueInfo {
            destination,
            length,
            waiting,
            running: counts.pending,
            dead,
            consumers: counts.consumers,
            delayed,
            oldest_waiting_at,
        })
    }

    /// When the oldest entry of `stream` not yet read by the queue group was added.
    async fn oldest_waiting(
        &self,
        stream: &str,
        groups: &StreamInfoGroupsReply,
    ) -> Result<Option<u64>> {
        let oldest = self.unread(stream, groups, None, 1).await?;
        Ok((oldest.first()).and_then(|entry| entry.id.split('-').next()?.parse().ok()))
    }

    /// The tasks waiting in `destination`'s stream, not yet read by any worker: the ids of the
    /// oldest `limit` (an entry that does not open is listed by its entry id) and how many wait
    /// in all.
    pub async fn waiting_in(
        &self,
        destination: &Destination,
        limit: usize,
    ) -> Result<(Vec<String>, u64)> {
        let stream = self.keys().stream(destination);
        let groups = self.queue_groups(&stream).await?;
        let unread = self.unread(&stream, &groups, None, limit).await?;
        let group = (groups.groups.into_iter()).find(|g| g.name == super::keys::QUEUE_GROUP);
        let ids: Vec<String> = (unread.into_iter())
            .map(|entry| {
                let (entry_id, payload) = entry.into_message();
                let id = payload.and_then(|p| self.open(&p).ok()).map(|m| m.id);
                id.unwrap_or(entry_id)
            })
            .collect();
        let listed = ids.len() as u64;
        let total = group.and_then(|g| g.lag).map_or(listed, |lag| lag as u64);
        Ok((ids, total.max(listed)))
    }
}

/// Sums pending entries and consumers over the groups of an XINFO GROUPS reply.
fn group_counts(reply: StreamInfoGroupsReply) -> GroupCounts {
    let mut counts = GroupCounts::default();
    for group in reply.groups {
        counts.pending += group.pending as u64;
        counts.consumers += group.consumers as u64;
    }
    counts
}

impl Broker {
    /// Adds to `pipe` the registration of `queues` (wire names; repeats are sent once).
    pub(super) fn add_registered<'q>(
        &self,
        pipe: &mut redis::Pipeline,
        queues: impl Iterator<Item = &'q str>,
    ) {
        let queues: BTreeSet<&str> = queues.collect();
        if !queues.is_empty() {
            let cmd = pipe.cmd("SADD").arg(self.keys().queue_registry());
            cmd.arg(queues.into_iter().collect::<Vec<_>>()).ignore();
        }
    }

    /// Whether `destination` is in the queue registry (published to or read at least once).
    pub async fn queue_registered(&self, destination: &Destination) -> Result<bool> {
        Ok(redis::cmd("SISMEMBER")
            .arg(self.keys().queue_registry())
            .arg(destination.wire_name())
            .query_async(&mut self.commands())
            .await?)
    }

    /// Registers `queues` (wire names): a worker's own queues when it starts.
    pub async fn register_queues(&self, queues: &[String]) -> Result<()> {
        if queues.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        self.add_registered(&mut pipe, queues.iter().map(String::as_str));
        pipe.query_async::<()>(&mut self.commands()).await?;
        Ok(())
    }

    /// Finds every queue by walking the keyspace (streams, delayed sets, dead letters) and
    /// registers them: for queues created before the registry existed. Workers do it when
    /// they start, and listings when the registry is empty; it costs a SCAN of every key.
    pub async fn register_existing_queues(&self) -> Result<BTreeSet<Destination>> {
        let keys = self.keys();
        let mut destinations = BTreeSet::new();
        for (pattern, kind, suffix) in [
            (keys.stream_pattern(), "stream", "stream"),
            (keys.delayed_pattern(), "zset", "delayed"),
            (keys.dead_pattern(), "stream", "dead"),
        ] {
            for key in self.commands().scan(&pattern, kind).await? {
                destinations.extend(keys.destination_of(&key, suffix));
            }
        }
        let names: Vec<String> = destinations.iter().map(Destination::wire_name).collect();
        self.register_queues(&names).await?;
        Ok(destinations)
    }
}

/// A task's record from its hash: every run that decodes, and each field that does not with
/// why (one damaged field hides nothing else); a failed task's kept message and its workflow
/// are not runs.
fn record_of(id: &str, mut fields: BTreeMap<String, Vec<u8>>) -> TaskRecord {
    let mut unreadable = BTreeMap::new();
    let workflow =
        (fields.remove(super::WORKFLOW_FIELD)).map(|id| String::from_utf8_lossy(&id).into_owned());
    let runs: Vec<(String, RunRecord)> = (fields.into_iter())
        .filter(|(field, _)| !super::NOT_RUNS.contains(&field.as_str()))
        .filter_map(|(field, bytes)| match RunRecord::decode(id, &bytes) {
            Ok(run) => Some((field, run)),
            Err(error) => {
                unreadable.insert(field, error.to_string());
                None
            }
        })
        .collect();
    let mut record = TaskRecord::from_fields(runs);
    (record.unreadable, record.workflow) = (unreadable, workflow);
    record
}
