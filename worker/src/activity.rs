//! What this node is doing, as its heartbeat reports it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Counters shared by the fetchers, the executor and the heartbeat.
#[derive(Debug, Default)]
pub struct Activity {
    last_work_at: AtomicU64,
    fetchers_up: AtomicUsize,
    stopped_taking_work: AtomicBool,
    reaped_at: AtomicU64,
    beating_since: AtomicU64,
    last_beat: AtomicU64,
    max_gap: AtomicU64,
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

    /// This process's beat was recorded at `now` (Redis ms), `previous` being the one before;
    /// a gap longer than `max_gap` starts a new run of beats.
    pub fn beat_recorded(&self, now: u64, previous: Option<u64>, max_gap: u64) {
        let continuous = previous.is_some_and(|p| now.saturating_sub(p) <= max_gap)
            && self.beating_since.load(Ordering::Relaxed) > 0;
        if !continuous {
            self.beating_since.store(now, Ordering::Relaxed);
        }
        self.last_beat.store(now, Ordering::Relaxed);
        self.max_gap.store(max_gap, Ordering::Relaxed);
    }

    /// This process could not record its beat: its run of beats is broken.
    pub fn beat_failed(&self) {
        self.beating_since.store(0, Ordering::Relaxed);
    }

    /// How long (ms) this process has recorded its beat without a gap, judged when its beat
    /// in Redis is `seen_at` (Redis ms): `None` when it is not beating, or when that beat is
    /// newer than the heartbeat has seen by more than a gap (an outage the heartbeat has not
    /// noticed yet).
    pub fn beating_for(&self, seen_at: u64) -> Option<u64> {
        let since = self.beating_since.load(Ordering::Relaxed);
        let last = self.last_beat.load(Ordering::Relaxed);
        let unseen_gap = seen_at.saturating_sub(last) > self.max_gap.load(Ordering::Relaxed);
        (since > 0 && !unseen_gap).then(|| last.saturating_sub(since))
    }

    /// When this process was last reaped by a peer, if ever.
    pub fn reaped_at(&self) -> Option<u64> {
        Some(self.reaped_at.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }
}
