//! Trace context across the message (W3C Trace Context; `docs/protocol.md`, "Headers"):
//!
//! 1. [`TraceParent`]: the `traceparent` header, read and checked. A foreign producer's header
//!    is hostile: a malformed one is ignored (the run starts a trace of its own), never an
//!    error and never a lost message.
//! 2. [`sending`]: the `send {queue}` PRODUCER span of each message published; with the `otel`
//!    feature its context is written into the message's `traceparent` and `tracestate`
//!    headers. A message that already carries a `traceparent` (passed in by the caller, as a
//!    Python web tier does) keeps its trace: the send span is its child.
//! 3. [`process_span`]: the span of one run, `process {queue}` (CONSUMER), the child of the
//!    producer's context when the message carries one. Its `trace.id` field puts the trace id
//!    on every log line of the run, with or without the feature.
//!
//! Names and fields follow the OpenTelemetry messaging conventions: `messaging.system`
//! (`stevedore`), `messaging.destination.name`, `messaging.message.id`,
//! `messaging.consumer.group.name`, plus `stevedore.task.name` and `stevedore.task.attempt`.
//! Retries, reaped re-runs and delayed runs carry the same headers, so they stay children of
//! the span that published the task; beat publishes each firing under its own send span.

use crate::Message;

/// The header carrying the W3C `traceparent` (`00-TRACE_ID-PARENT_ID-FLAGS`).
pub const TRACEPARENT: &str = "traceparent";
/// The header carrying the W3C `tracestate` (vendor entries), passed along untouched.
pub const TRACESTATE: &str = "tracestate";

/// A checked `traceparent` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent<'a> {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: &'a str,
    /// The producer span's id: 16 lowercase hex digits, not all zero.
    pub span_id: &'a str,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl<'a> TraceParent<'a> {
    /// Reads a `traceparent` value; `None` when it is not one (wrong shape, upper case, an
    /// all-zero id, version `ff`). Versions above `00` are read by their first four fields,
    /// as the W3C recommendation asks.
    pub fn parse(header: &'a str) -> Option<Self> {
        let mut fields = header.split('-');
        let version = fields.next()?;
        let trace_id = fields.next()?;
        let span_id = fields.next()?;
        let flags = fields.next()?;
        let rest = fields.next();
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
        let valid = hex(version, 2)
            && version != "ff"
            && (version != "00" || rest.is_none())
            && hex(trace_id, 32)
            && nonzero(trace_id)
            && hex(span_id, 16)
            && nonzero(span_id)
            && hex(flags, 2);
        valid.then(|| Self {
            trace_id,
            span_id,
            flags: u8::from_str_radix(flags, 16).unwrap_or_default(),
        })
    }

    /// The trace parent of `message`, when it carries a valid one.
    pub fn of(message: &'a Message) -> Option<Self> {
        message
            .headers
            .get(TRACEPARENT)
            .and_then(|h| TraceParent::parse(h))
    }
}

/// Opens the send span of each message and writes its context into the message's headers
/// (only with the `otel` feature and a subscriber that records spans; otherwise nothing, at
/// no cost). Keep the returned spans until the messages are published: they end when dropped.
#[cfg(not(feature = "otel"))]
pub fn sending<'a>(_messages: impl IntoIterator<Item = &'a mut Message>) -> Vec<tracing::Span> {
    Vec::new()
}

/// Opens the send span of each message and writes its context into the message's headers
/// (only with the `otel` feature and a subscriber that records spans; otherwise nothing, at
/// no cost). Keep the returned spans until the messages are published: they end when dropped.
#[cfg(feature = "otel")]
pub fn sending<'a>(messages: impl IntoIterator<Item = &'a mut Message>) -> Vec<tracing::Span> {
    messages.into_iter().filter_map(otel::send).collect()
}

/// The span of one run of `message`, read from `group`: named `task` for the logs, exported
/// as `process {queue}`; a child of the producer's span when the message carries its context.
/// Escaped: a name, id or queue written by a foreign producer must not forge log lines.
pub fn process_span(message: &Message, group: &str) -> tracing::Span {
    #[cfg(not(feature = "otel"))]
    let span = {
        let _ = group;
        tracing::info_span!("task", task.name = %message.task.escape_debug(),
            task.id = %message.id.escape_debug(), queue = %message.queue.escape_debug(),
            attempt = message.attempt(), trace.id = tracing::field::Empty)
    };
    #[cfg(feature = "otel")]
    let span = otel::process(message, group);
    if let Some(parent) = TraceParent::of(message) {
        span.record("trace.id", parent.trace_id);
    }
    span
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::Context;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::{TraceParent, TRACEPARENT, TRACESTATE};
    use crate::Message;

    /// The send span of `message`, its context injected; `None` when no subscriber records it.
    pub(super) fn send(message: &mut Message) -> Option<tracing::Span> {
        let span = tracing::info_span!("send",
            otel.name = %format_args!("send {}", message.queue.escape_debug()),
            otel.kind = "producer",
            messaging.system = "stevedore",
            messaging.operation.type = "send",
            messaging.destination.name = %message.queue.escape_debug(),
            messaging.message.id = %message.id.escape_debug(),
            stevedore.task.name = %message.task.escape_debug());
        if span.is_disabled() {
            return None;
        }
        if let Some(parent) = remote(message) {
            let _ = span.set_parent(parent);
        }
        let context = span.context();
        let sent = context.span().span_context().clone();
        if !sent.is_valid() {
            return None;
        }
        let traceparent = format!(
            "00-{:032x}-{:016x}-{:02x}",
            sent.trace_id(),
            sent.span_id(),
            sent.trace_flags().to_u8()
        );
        message.headers.insert(TRACEPARENT.into(), traceparent);
        let state = sent.trace_state().header();
        if state.is_empty() {
            message.headers.remove(TRACESTATE);
        } else {
            message.headers.insert(TRACESTATE.into(), state);
        }
        Some(span)
    }

    /// The run span of `message` read from `group`, parented on its producer's context.
    pub(super) fn process(message: &Message, group: &str) -> tracing::Span {
        let span = tracing::info_span!("task", task.name = %message.task.escape_debug(),
            task.id = %message.id.escape_debug(), queue = %message.queue.escape_debug(),
            attempt = message.attempt(), trace.id = tracing::field::Empty,
            otel.name = %format_args!("process {}", message.queue.escape_debug()),
            otel.kind = "consumer",
            messaging.system = "stevedore",
            messaging.operation.type = "process",
            messaging.destination.name = %message.queue.escape_debug(),
            messaging.message.id = %message.id.escape_debug(),
            messaging.consumer.group.name = %group.escape_debug(),
            stevedore.task.name = %message.task.escape_debug(),
            stevedore.task.attempt = message.attempt());
        if let Some(parent) = remote(message) {
            let _ = span.set_parent(parent);
        }
        span
    }

    /// The producer's context carried by `message`, if any.
    fn remote(message: &Message) -> Option<Context> {
        let parent = TraceParent::of(message)?;
        let state = message
            .headers
            .get(TRACESTATE)
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        let context = SpanContext::new(
            TraceId::from_hex(parent.trace_id).ok()?,
            SpanId::from_hex(parent.span_id).ok()?,
            TraceFlags::new(parent.flags),
            true,
            state,
        );
        Some(Context::new().with_remote_span_context(context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_read_field_by_field() {
        let parent = TraceParent::parse(VALID).unwrap();
        assert_eq!(parent.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.span_id, "00f067aa0ba902b7");
        assert_eq!(parent.flags, 1);
    }

    #[test]
    fn a_malformed_traceparent_is_ignored() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473\n-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_first_four_fields() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-next";
        assert!(TraceParent::parse(later).is_some());
    }
}
