//! Control requests and replies, cancel records and paused queues.

use std::time::{Duration, Instant};

use redis::Value;

use super::keys::MESSAGE_FIELD;
use super::reply;
use super::{Broker, Connection};
use crate::control::{CancelRecord, Reply, Request};
use crate::signing::Purpose;
use crate::{Error, Result};

/// Approximate cap of the control stream.
const CONTROL_CAP: u64 = 1000;
/// How long unread answers stay.
const REPLY_TTL_MS: u64 = 60_000;

fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>> {
    rmp_serde::to_vec_named(value).map_err(|e| Error::Encode {
        what: what.into(),
        reason: e.to_string(),
    })
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| Error::Decode {
        what: what.into(),
        reason: e.to_string(),
    })
}

/// What a pause entry signs: the queue and the time, so that a signed entry cannot be copied
/// to another queue.
fn pause_claim(queue: &str, at_ms: &str) -> Vec<u8> {
    format!("{queue}\0{at_ms}").into_bytes()
}

impl Broker {
    /// Appends a control request for the nodes to read.
    pub async fn send_control(&self, request: &Request) -> Result<()> {
        redis::cmd("XADD")
            .arg(self.keys().control())
            .arg("MAXLEN")
            .arg("~")
            .arg(CONTROL_CAP)
            .arg("*")
            .arg(MESSAGE_FIELD)
            .arg(self.seal_as(Purpose::Control, encode("control request", request)?))
            .query_async::<String>(&mut self.commands())
            .await?;
        Ok(())
    }

    /// The id of the newest control request (`0-0` if none): where a new reader starts.
    pub async fn control_position(&self) -> Result<String> {
        let newest = self.newest_entry(&self.keys().control()).await?;
        Ok(newest.unwrap_or_else(|| "0-0".to_owned()))
    }

    /// Reads control requests after entry `after`, blocking up to `block`. Returns them with
    /// their entry ids; undecodable entries are skipped with a warning.
    pub async fn read_control(
        &self,
        conn: &mut Connection,
        after: &str,
        block: Duration,
    ) -> Result<Vec<(String, Request)>> {
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(100)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(self.keys().control())
            .arg(after)
            .query_async(conn)
            .await?;
        let mut requests = Vec::new();
        for (entry_id, fields) in control_entries(reply)? {
            let opened = fields.map(|bytes| {
                let bytes = self.open_as(Purpose::Control, &bytes)?;
                decode::<Request>("control request", &bytes)
            });
            match opened {
                Some(Ok(request)) => requests.push((entry_id, request)),
                Some(Err(error)) => {
                    tracing::warn!(%entry_id, %error, "skipping a bad control request")
                }
                None => tracing::warn!(%entry_id, "skipping a control entry without a message"),
            }
        }
        Ok(requests)
    }

    /// Sends one node's answer to a request.
    pub async fn reply_control(&self, reply_to: &str, reply: &Reply) -> Result<()> {
        redis::pipe()
            .cmd("RPUSH")
            .arg(reply_to)
            .arg(encode("control reply", reply)?)
            .ignore()
            .cmd("PEXPIRE")
            .arg(reply_to)
            .arg(REPLY_TTL_MS)
            .ignore()
            .query_async::<()>(&mut self.commands())
            .await?;
        Ok(())
    }

    /// Collects up to `expected` answers from `reply_to` until `deadline`.
    pub async fn collect_replies(
        &self,
        reply_to: &str,
        expected: usize,
        deadline: Instant,
    ) -> Result<Vec<Reply>> {
        let mut replies = Vec::new();
        let mut conn = self.blocking_connection().await?;
        while replies.len() < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let popped: Option<(String, Vec<u8>)> = redis::cmd("BLPOP")
                .arg(reply_to)
                .arg(format!("{:.3}", left.as_secs_f64().max(0.001)))
                .query_async(&mut *conn)
                .await?;
            match popped {
                Some((_, bytes)) => replies.push(decode("control reply", &bytes)?),
                None => break,
            }
        }
        Ok(replies)
    }

    /// Stores a cancel record under `record_id` and drops records that have lapsed.
    pub async fn store_cancel(&self, record_id: &str, record: &CancelRecord) -> Result<()> {
        let key = self.keys().cancels();
        let lapsed: Vec<String> = self
            .cancel_records()
            .await?
            .into_iter()
            .filter(|(_, r)| r.until_ms <= crate::now_ms())
            .map(|(id, _)| id)
            .collect();
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(&key)
            .arg(record_id)
            .arg(self.seal_as(Purpose::Cancel, encode("cancel record", record)?))
            .ignore();
        if !lapsed.is_empty() {
            pipe.cmd("HDEL").arg(&key).arg(lapsed).ignore();
        }
        pipe.query_async::<()>(&mut self.commands()).await?;
        Ok(())
    }

    /// Every cancel record, lapsed ones included, by record id.
    pub async fn cancel_records(&self) -> Result<Vec<(String, CancelRecord)>> {
        let fields: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.keys().cancels())
            .query_async(&mut self.commands())
            .await?;
        Ok(fields
            .into_iter()
            .filter_map(|(id, bytes)| {
                match self
                    .open_as(Purpose::Cancel, &bytes)
                    .and_then(|bytes| decode("cancel record", &bytes))
                {
                    Ok(record) => Some((id, record)),
                    Err(error) => {
                        tracing::warn!(%id, %error, "skipping a bad cancel record");
                        None
                    }
                }
            })
            .collect())
    }

    /// Pauses (or resumes) a queue for every node.
    pub async fn set_paused(&self, queue: &crate::Destination, paused: bool) -> Result<()> {
        let name = queue.wire_name();
        let mut cmd = redis::cmd(if paused { "HSET" } else { "HDEL" });
        cmd.arg(self.keys().paused()).arg(&name);
        if paused {
            let at_ms = crate::now_ms().to_string();
            cmd.arg(self.seal_as(Purpose::Pause, pause_claim(&name, &at_ms)));
        }
        cmd.query_async::<()>(&mut self.commands()).await?;
        Ok(())
    }

    /// The paused queues (wire names). With signing keys, an entry a key holder did not write
    /// for that queue is skipped with a warning.
    pub async fn paused_queues(&self) -> Result<Vec<String>> {
        let entries: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.keys().paused())
            .query_async(&mut self.commands())
            .await?;
        Ok(entries
            .into_iter()
            .filter(|(queue, value)| {
                let opened = self.open_as(Purpose::Pause, value);
                let ok = opened.as_ref().is_ok_and(|claim| {
                    claim
                        .strip_prefix(pause_claim(queue, "").as_slice())
                        .is_some()
                });
                if !ok && self.signs_messages() {
                    let error = opened.err().map(|e| e.to_string());
                    let error = error.as_deref().unwrap_or("signed for another queue");
                    tracing::warn!(queue = %queue.escape_debug(), %error, "ignoring a pause");
                }
                ok || !self.signs_messages()
            })
            .map(|(queue, _)| queue)
            .collect())
    }
}

/// The (entry id, message bytes) pairs of an XREAD reply over one stream.
fn control_entries(found: Value) -> Result<Vec<(String, Option<Vec<u8>>)>> {
    Ok(reply::streams(found)?
        .into_iter()
        .flat_map(|(_, entries)| entries)
        .map(reply::StreamEntry::into_message)
        .collect())
}
