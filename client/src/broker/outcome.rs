//! Recording outcomes and acknowledging, many tasks in one pipelined round trip.
//!
//! The order inside the pipeline is the at-least-once rule: every record is written before any
//! entry is acknowledged, so a crash between the two re-runs a task, never loses its outcome.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Broker, Connection};
use crate::{Destination, Result, RunRecord, TaskRecord};

/// Records and acknowledgements gathered by the worker, sent with [`Broker::write_outcomes`].
#[derive(Debug, Default)]
pub struct OutcomeBatch {
    records: Vec<(String, String, Vec<u8>, Option<String>)>,
    acks: BTreeMap<(Destination, String), Vec<String>>,
    ttl: Duration,
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

    /// How many records and acknowledgements it holds.
    pub fn len(&self) -> usize {
        self.records.len() + self.acks.values().map(Vec::len).sum::<usize>()
    }

    /// Stores `run` in its task's record (its broadcast slot when `broadcast`), and when the
    /// run has ended and `notify` is set, wakes the task's waiters.
    pub fn record(
        &mut self,
        broker: &Broker,
        run: &RunRecord,
        broadcast: bool,
        notify: bool,
    ) -> Result<()> {
        let field = if broadcast {
            TaskRecord::broadcast_field(&run.node)
        } else {
            TaskRecord::TASK_FIELD.to_owned()
        };
        let done = (notify && run.state.is_final()).then(|| broker.keys().done(&run.id));
        self.records
            .push((broker.keys().record(&run.id), field, run.encode()?, done));
        Ok(())
    }

    /// Acknowledges one entry read by `group` from `destination`'s stream.
    pub fn ack(&mut self, destination: &Destination, group: &str, entry_id: String) {
        self.acks
            .entry((destination.clone(), group.to_owned()))
            .or_default()
            .push(entry_id);
    }
}

impl Broker {
    /// Writes the batch's records, then acknowledges its entries, in one round trip.
    ///
    /// Queue entries are deleted once acknowledged (nothing grows); broadcast entries stay for
    /// the other nodes until the capped stream trims them.
    pub async fn write_outcomes(&self, conn: &mut Connection, batch: &OutcomeBatch) -> Result<()> {
        let mut pipe = redis::pipe();
        let ttl_ms = batch.ttl.as_millis() as u64;
        for (key, field, bytes, done) in &batch.records {
            pipe.cmd("HSET").arg(key).arg(field).arg(bytes).ignore();
            pipe.cmd("PEXPIRE").arg(key).arg(ttl_ms).ignore();
            if let Some(done) = done {
                pipe.cmd("RPUSH").arg(done).arg(1).ignore();
                pipe.cmd("PEXPIRE").arg(done).arg(ttl_ms).ignore();
            }
        }
        for ((destination, group), ids) in &batch.acks {
            let stream = self.keys().stream(destination);
            pipe.cmd("XACK").arg(&stream).arg(group).arg(ids).ignore();
            if *destination != Destination::Broadcast {
                pipe.cmd("XDEL").arg(&stream).arg(ids).ignore();
            }
        }
        pipe.query_async::<()>(conn).await?;
        Ok(())
    }
}
