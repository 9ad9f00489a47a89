//! The task message: one versioned MessagePack map per task (see `docs/protocol.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The format version written by this library. Workers refuse messages with a higher version.
pub const MESSAGE_VERSION: u32 = 1;

/// One task as it travels through Redis, encoded with named fields (`rmp_serde::to_vec_named`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Format version ([`MESSAGE_VERSION`]).
    pub v: u32,
    /// The task id: a UUID in its hyphenated text form.
    pub id: String,
    /// The registered task name, e.g. `myapp::tasks::add`.
    pub task: String,
    /// Positional arguments.
    #[serde(default)]
    pub args: Vec<rmpv::Value>,
    /// Keyword arguments, matched to parameters by name.
    #[serde(default)]
    pub kwargs: BTreeMap<String, rmpv::Value>,
    /// Where it was published: `NAME`, `node:NAME` or `broadcast`.
    pub queue: String,
    /// When it was published, in milliseconds since the Unix epoch.
    pub published_at: u64,
    /// Not before this time (milliseconds since the Unix epoch), if delayed.
    #[serde(default)]
    pub eta: Option<u64>,
    /// Retries left after this attempt fails; `None`: the task's own default.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Attempts made before this one (0 on the first run).
    #[serde(default)]
    pub tried: u32,
    /// Soft time limit of one run in milliseconds: the task is asked to stop.
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Hard time limit of one run in milliseconds: the run is aborted.
    #[serde(default)]
    pub hard_timeout: Option<u64>,
    /// First retry delay in milliseconds (doubling each retry); `None`: the task's default.
    #[serde(default)]
    pub backoff: Option<u64>,
    /// Longest retry delay in milliseconds; `None`: the task's default.
    #[serde(default)]
    pub max_backoff: Option<u64>,
    /// Free-form string headers (trace context, dedup key, `notify`...).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Not started by this time (ms since the epoch): recorded `expired`, never run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// Units of a node's capacity the run takes; `None`: the task's own (1 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<u32>,
    /// Whether the run has its node to itself; `None`: the task's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive: Option<bool>,
    /// The named limit the run is under (`stevedore limit`); `None`: the task's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// Which runs leave a record; `None`: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<crate::RecordPolicy>,
    /// Whether the caller chose the id (`PublishOptions::id`): publishing then claims it, and
    /// is refused when a task of that id exists (unless an on_duplicate policy applies). Not
    /// part of the message on the wire.
    #[serde(skip)]
    pub id_given: bool,
}

impl Message {
    /// The attempt this message is (`tried + 1`, from 1; saturating: a hostile `tried` of
    /// `u32::MAX` is the last attempt, never attempt 0).
    pub fn attempt(&self) -> u32 {
        self.tried.saturating_add(1)
    }

    /// The header that asks the worker to wake waiters when the task ends.
    pub const NOTIFY_HEADER: &'static str = "notify";

    /// Whether it was published to every node (its `queue` is `broadcast`).
    pub fn is_broadcast(&self) -> bool {
        self.queue == crate::Destination::BROADCAST_WIRE_NAME
    }

    /// Encodes the message as a MessagePack map.
    pub fn encode(&self) -> Result<Vec<u8>> {
        rmp_serde::to_vec_named(self).map_err(|e| Error::Encode {
            what: format!("message for task `{}`", self.task),
            reason: e.to_string(),
        })
    }

    /// Decodes bytes read from a queue, refusing versions newer than this library knows.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let message: Self = rmp_serde::from_slice(bytes).map_err(|e| Error::Decode {
            what: "task message".to_owned(),
            reason: e.to_string(),
        })?;
        if message.v > MESSAGE_VERSION || message.v == 0 {
            return Err(Error::Decode {
                what: "task message".to_owned(),
                reason: format!(
                    "format version {} is not supported (this worker reads 1 to {MESSAGE_VERSION})",
                    message.v
                ),
            });
        }
        Ok(message)
    }

    /// Which of its runs leave a record.
    pub fn record_policy(&self) -> crate::RecordPolicy {
        self.record.unwrap_or_default()
    }

    /// Whether the publisher asked to be woken when the task ends.
    pub fn wants_notify(&self) -> bool {
        self.headers
            .get(Self::NOTIFY_HEADER)
            .is_some_and(|v| v == "1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        Message {
            v: 1,
            id: "0b7c1b0e-6a8e-4a43-9d1b-1f5f6f2f0a11".into(),
            task: "app::add".into(),
            args: vec![1.into(), 2.into()],
            kwargs: BTreeMap::new(),
            queue: "default".into(),
            published_at: 1,
            eta: None,
            retries: None,
            tried: 0,
            timeout: None,
            hard_timeout: None,
            backoff: None,
            max_backoff: None,
            headers: BTreeMap::new(),
            expires: None,
            impact: None,
            exclusive: None,
            limit: None,
            record: None,
            id_given: false,
        }
    }

    #[test]
    fn message_round_trips_as_a_named_map() {
        let bytes = sample().encode().unwrap();
        // A map (0x8X fixmap or 0xde map16), never a positional array.
        assert!(bytes[0] & 0xf0 == 0x80 || bytes[0] == 0xde);
        assert_eq!(Message::decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn newer_version_is_refused_with_a_reason() {
        let mut m = sample();
        m.v = 99;
        let err = Message::decode(&m.encode().unwrap()).unwrap_err();
        assert!(err.to_string().contains("version 99"), "{err}");
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(Message::decode(b"\xc1not msgpack").is_err());
    }
}
