//! A task's own log lines: what the task's code logs through `tracing` while it runs (INFO
//! and above), kept with its record so that `stevedore task ID`, the dashboard and `task
//! --json` show them.
//!
//! 1. [`layer`] joins the worker's subscriber. An event inside a run's `task` span, from a
//!    target that is not stevedore's own (the worker's lines about the run stay in the
//!    worker's log only), is formatted as one line and added to that span's buffer, created
//!    on the first line: a run that logs nothing costs nothing.
//! 2. Bounded per run: at most [`MOST_LINES`] lines and [`MOST_BYTES`] bytes, the oldest
//!    dropped first, counted, and said in a first line.
//! 3. The executor takes the lines out ([`take_current`]) when the run ends, inside its span,
//!    and hands them to the recorder with the outcome; while no run holds lines, that is one
//!    atomic load (a run's span that closes with its lines untaken gives its count back).
//! 4. Tasks run in the process pool log in their child process: their lines are not kept.

use std::collections::VecDeque;
use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

/// Most lines kept per run.
pub const MOST_LINES: usize = 100;
/// Most bytes kept per run.
pub const MOST_BYTES: usize = 16 * 1024;
/// The name of a run's span (`stevedore::trace::process_span`).
const RUN_SPAN: &str = "task";

/// Runs holding lines not yet taken: while none does (tasks that log nothing), taking costs
/// one atomic load per run, not a lookup in the span registry.
static HOLDING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The capture layer, for `stevedore_runtime::init_logging_with`.
pub fn layer() -> stevedore_runtime::BoxedLayer {
    Capture
        .with_filter(Targets::new().with_default(Level::INFO))
        .boxed()
}

/// Whether `target` is stevedore's own code (its lines are not the task's).
fn internal(target: &str) -> bool {
    let crate_name = target.split("::").next().unwrap_or(target);
    matches!(
        crate_name,
        "stevedore" | "stevedore_worker" | "stevedore_runtime"
    )
}

/// The lines one run logged.
#[derive(Debug, Default)]
struct Lines {
    lines: VecDeque<String>,
    bytes: usize,
    dropped: usize,
}

impl Lines {
    fn push(&mut self, line: String) {
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > MOST_LINES || self.bytes > MOST_BYTES {
            let Some(oldest) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= oldest.len();
            self.dropped += 1;
        }
    }

    fn into_vec(self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.lines.len() + 1);
        if self.dropped > 0 {
            out.push(format!(
                "({} earlier lines dropped: {MOST_LINES} lines and {} KiB are kept)",
                self.dropped,
                MOST_BYTES / 1024
            ));
        }
        out.extend(self.lines);
        out
    }
}

struct Capture;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_close(&self, id: tracing::span::Id, ctx: Context<'_, S>) {
        let untaken = ctx
            .span(&id)
            .is_some_and(|span| span.extensions().get::<Lines>().is_some());
        if untaken {
            HOLDING.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if internal(event.metadata().target()) {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            if span.name() != RUN_SPAN {
                continue;
            }
            let line = format_line(event);
            let mut extensions = span.extensions_mut();
            match extensions.get_mut::<Lines>() {
                Some(lines) => lines.push(line),
                None => {
                    let mut lines = Lines::default();
                    lines.push(line);
                    extensions.insert(lines);
                    HOLDING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            return;
        }
    }
}

/// `HH:MM:SS.mmm LEVEL message key=value ...` (UTC).
fn format_line(event: &Event<'_>) -> String {
    let at = stevedore::admin::format::timestamp(stevedore::now_ms());
    let time = at.get(11..23).unwrap_or(&at);
    let mut line = format!("{time} {} ", event.metadata().level());
    event.record(&mut Fields(&mut line));
    line
}

/// Writes an event's message, then its other fields as `key=value`.
struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = match field.name() {
            "message" => write!(self.0, "{value:?}"),
            name => write!(self.0, " {name}={value:?}"),
        };
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = match field.name() {
            "message" => write!(self.0, "{value}"),
            name => write!(self.0, " {name}={value}"),
        };
    }
}

/// The lines the current run (the `task` span the caller is in) logged, taken out; empty
/// when it logged none.
pub fn take_current() -> Vec<String> {
    if HOLDING.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        return Vec::new();
    }
    let Some(id) = tracing::Span::current().id() else {
        return Vec::new();
    };
    tracing::dispatcher::get_default(|dispatch| {
        let Some(registry) = dispatch.downcast_ref::<Registry>() else {
            return Vec::new();
        };
        let Some(span) = registry.span(&id) else {
            return Vec::new();
        };
        let taken = span.extensions_mut().remove::<Lines>();
        if taken.is_some() {
            HOLDING.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        taken.map(Lines::into_vec).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_keeps_its_newest_lines_within_both_bounds_and_says_what_it_dropped() {
        let mut lines = Lines::default();
        for n in 0..150 {
            lines.push(format!("line {n}"));
        }
        let kept = lines.into_vec();
        assert_eq!(kept.len(), MOST_LINES + 1);
        assert!(
            kept[0].starts_with("(50 earlier lines dropped"),
            "{}",
            kept[0]
        );
        assert_eq!(kept[1], "line 50");
        let mut big = Lines::default();
        for _ in 0..5 {
            big.push("x".repeat(6 * 1024));
        }
        assert_eq!(
            big.into_vec().len(),
            3,
            "two 6 KiB lines fit in 16 KiB, plus the note"
        );
    }

    #[test]
    fn stevedores_own_lines_are_not_the_tasks() {
        assert!(internal("stevedore_worker::retry"));
        assert!(internal("stevedore"));
        assert!(!internal("stevedore_tests::tasks"));
        assert!(!internal("billing::charge"));
    }
}
