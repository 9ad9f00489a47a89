//! What this node is doing, as its heartbeat reports it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Counters shared by the fetchers, the executor and the heartbeat.
#[derive(Debug, Default)]
pub struct Activity {
    last_work_at: AtomicU64,
    fetchers_up: AtomicUsize,
    stopped_taking_work: AtomicBool,
    reaped_at: AtomicU64,
}

impl Activity {
    /// A task was taken or finished now.
    pub fn worked(&self) {
        self.last_work_at
            .store(stevedore::now_ms(), Ordering::Relaxed);
    }

    /// The last time a task was taken or finished, if ever.
    pub fn last_work_at(&self) -> Option<u64> {
        Some(self.last_work_at.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    /// A fetcher connected (`true`) or lost its connection (`false`).
    pub fn fetcher_up(&self, up: bool) {
        if up {
            self.fetchers_up.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self
                .fetchers_up
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Whether `expected` fetchers are reading and the node takes work.
    pub fn consuming(&self, expected: usize) -> bool {
        self.fetchers_up.load(Ordering::Relaxed) >= expected && !self.stopped_taking_work()
    }

    /// Stops taking work (a peer runs a newer protocol and the node was told to yield).
    pub fn stop_taking_work(&self) {
        self.stopped_taking_work.store(true, Ordering::Relaxed);
    }

    /// Whether the node stopped taking work.
    pub fn stopped_taking_work(&self) -> bool {
        self.stopped_taking_work.load(Ordering::Relaxed)
    }

    /// This process was declared lost and reaped at `at` (ms): what it was running then was
    /// already settled by a peer.
    pub fn reaped(&self, at: u64) {
        self.reaped_at.store(at, Ordering::Relaxed);
    }

    /// When this process was last reaped by a peer, if ever.
    pub fn reaped_at(&self) -> Option<u64> {
        Some(self.reaped_at.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }
}
