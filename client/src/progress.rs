//! How far a running task got (Celery's `update_state`, BullMQ's `updateProgress`):
//! `ctx.set_progress(done, total, message)` in the task, `handle.progress()` anywhere.
//!
//! 1. Stored as JSON in `NS:{t:ID}:progress` (`{"done", "total", "message", "at"}`), one SET
//!    per report, kept a day; a task that never reports costs nothing.
//! 2. Throttled in the task: at most one write per [`THROTTLE`] (the reports in between are
//!    dropped, not queued); a report that says the work is done (`done >= total`) is always
//!    written. A task that reports a thousand times a second costs Redis five writes.
//! 3. With events on, each write also adds a `progress` event (`done`, `total`).
//! 4. The message is cut to [`MESSAGE_MAX`] bytes; views escape it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The shortest time between two progress writes of one run.
pub const THROTTLE: Duration = Duration::from_millis(200);

/// The longest progress message kept, in bytes.
pub const MESSAGE_MAX: usize = 1024;

/// How long a progress report is kept.
pub const KEPT: Duration = Duration::from_secs(86_400);

/// A task's last progress report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Units of work done.
    pub done: u64,
    /// Units of work in all (0: unknown).
    pub total: u64,
    /// What the task said about it.
    pub message: String,
    /// When it was reported (ms since the epoch).
    pub at: u64,
}

impl Progress {
    /// A report of `done` out of `total` with `message` (cut to [`MESSAGE_MAX`] bytes on a
    /// character boundary), at `at`.
    pub fn new(done: u64, total: u64, mut message: String, at: u64) -> Self {
        if message.len() > MESSAGE_MAX {
            let mut end = MESSAGE_MAX;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Self {
            done,
            total,
            message,
            at,
        }
    }

    /// Whether it says the work is done (`done >= total`, a total known).
    pub fn is_complete(&self) -> bool {
        self.total > 0 && self.done >= self.total
    }

    /// `done` as a percentage of `total` (`None` when the total is unknown).
    pub fn percent(&self) -> Option<u64> {
        (self.total > 0).then(|| (self.done.min(self.total) * 100) / self.total)
    }
}

/// When a run last wrote its progress (ms), shared by the clones of its context.
#[derive(Debug, Default)]
pub(crate) struct Gate(std::sync::atomic::AtomicU64);

impl Gate {
    /// Whether a report `progress` made now should be written (and, if so, notes the time).
    pub(crate) fn admits(&self, progress: &Progress) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.0.load(Relaxed);
        let due = last == 0 || progress.at >= last + THROTTLE.as_millis() as u64;
        if due || progress.is_complete() {
            self.0.store(progress.at.max(1), Relaxed);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_throttled_but_the_last_one_is_written() {
        let gate = Gate::default();
        let at = |ms, done| Progress::new(done, 10, String::new(), ms);
        assert!(gate.admits(&at(1_000, 1)));
        assert!(!gate.admits(&at(1_100, 2)));
        assert!(gate.admits(&at(1_200, 3)));
        assert!(!gate.admits(&at(1_250, 4)));
        assert!(gate.admits(&at(1_260, 10)), "done is always written");
    }

    #[test]
    fn messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MESSAGE_MAX);
        let cut = Progress::new(0, 0, long, 0);
        assert!(cut.message.len() <= MESSAGE_MAX && cut.message.chars().all(|c| c == 'é'));
        assert_eq!(Progress::new(3, 4, String::new(), 0).percent(), Some(75));
        assert_eq!(Progress::new(3, 0, String::new(), 0).percent(), None);
    }
}
