//! Parsing Redis stream replies in one place, in their RESP2 (flat arrays) and RESP3 (maps)
//! forms.
//!
//! 1. Stream entries (XRANGE, XREVRANGE, and each stream of XREAD/XREADGROUP) are parsed by
//!    hand: they are on the hot path, and only the message bytes are wanted, never a map of
//!    every field.
//! 2. XINFO GROUPS and XPENDING (extended form) use redis-rs's typed replies
//!    ([`redis::streams::StreamInfoGroupsReply`], [`redis::streams::StreamPendingCountReply`]).
//! 3. A reply of an unexpected shape is a [`crate::Error::Decode`] naming what was expected.

use redis::Value;

use super::keys::MESSAGE_FIELD;
use crate::{Error, Result};

/// One stream entry: its id and its fields, kept flat as Redis sent them (`name, value, ...`)
/// so that reading a message costs no allocation beyond the reply's own.
#[derive(Debug)]
pub(super) struct StreamEntry {
    /// The entry id.
    pub id: String,
    fields: Vec<Value>,
}

impl StreamEntry {
    /// Removes and returns the bytes of field `name`, if the entry has it.
    pub fn take(&mut self, name: &str) -> Option<Vec<u8>> {
        let at = (self.fields.iter().step_by(2))
            .position(|n| matches!(n, Value::BulkString(n) if n == name.as_bytes()))?;
        let value = self.fields.get_mut(at * 2 + 1)?;
        match std::mem::replace(value, Value::Nil) {
            Value::BulkString(bytes) => Some(bytes),
            Value::SimpleString(text) => Some(text.into_bytes()),
            _ => None,
        }
    }

    /// The message bytes (field `m`): `None` for an entry stevedore did not write, or one
    /// trimmed while pending.
    pub fn into_message(mut self) -> (String, Option<Vec<u8>>) {
        let message = self.take(MESSAGE_FIELD);
        (self.id, message)
    }
}

/// A string value (a key, an id, a name).
pub(super) fn text(value: Value) -> Result<String> {
    match value {
        Value::BulkString(bytes) => {
            String::from_utf8(bytes).map_err(|_| bad_reply("a key or id is not UTF-8"))
        }
        Value::SimpleString(s) => Ok(s),
        _ => Err(bad_reply("expected a string")),
    }
}

/// The error for a reply of an unexpected shape.
pub(super) fn bad_reply(reason: impl Into<String>) -> Error {
    Error::Decode {
        what: "redis reply".into(),
        reason: reason.into(),
    }
}

/// The fields of an entry as `name, value, ...`: a RESP2 flat array as it is, a RESP3 map
/// flattened.
fn flat_fields(value: Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(flat) => Some(flat),
        Value::Map(pairs) => Some(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()),
        _ => None,
    }
}

/// One `[id, [field, value, ...]]` entry.
pub(super) fn entry(value: Value) -> Result<StreamEntry> {
    let Value::Array(mut parts) = value else {
        return Err(bad_reply("stream entry is not an array"));
    };
    if parts.len() != 2 {
        return Err(bad_reply("stream entry is not an [id, fields] pair"));
    }
    let fields = parts.pop().and_then(flat_fields).unwrap_or_default();
    let id = text(parts.pop().unwrap_or(Value::Nil))?;
    Ok(StreamEntry { id, fields })
}

/// The entries of an XRANGE or XREVRANGE reply.
pub(super) fn entries(reply: Value) -> Result<Vec<StreamEntry>> {
    match reply {
        Value::Array(entries) => entries.into_iter().map(entry).collect(),
        Value::Nil => Ok(Vec::new()),
        _ => Err(bad_reply("XRANGE reply is not an array")),
    }
}

/// The (stream key, entries) of an XREAD or XREADGROUP reply; nothing when it timed out.
pub(super) fn streams(reply: Value) -> Result<Vec<(String, Vec<StreamEntry>)>> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs,
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Array(mut pair) if pair.len() == 2 => {
                    let entries = pair.pop().unwrap_or(Value::Nil);
                    Ok((pair.pop().unwrap_or(Value::Nil), entries))
                }
                _ => Err(bad_reply("stream item is not a [key, entries] pair")),
            })
            .collect::<Result<_>>()?,
        _ => return Err(bad_reply("XREAD reply is neither an array nor a map")),
    };
    streams
        .into_iter()
        .map(|(key, found)| Ok((text(key)?, entries(found)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn entries_parse_in_both_protocol_forms() {
        let flat = Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("m"), bulk("x")])]);
        let map = Value::Array(vec![bulk("1-0"), Value::Map(vec![(bulk("m"), bulk("x"))])]);
        for form in [flat, map] {
            let (id, message) = entry(form).unwrap().into_message();
            assert_eq!((id.as_str(), message), ("1-0", Some(b"x".to_vec())));
        }
    }

    #[test]
    fn a_read_that_timed_out_is_empty_and_a_bad_shape_is_an_error() {
        assert!(streams(Value::Nil).unwrap().is_empty());
        assert!(streams(Value::Int(1)).is_err());
        let (key, found) = streams(Value::Map(vec![(bulk("k"), Value::Array(vec![]))]))
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(key, "k");
        assert!(found.is_empty());
    }
}
