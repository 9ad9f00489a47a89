//! The entries this process has read and not yet settled in Redis: so that, when a fetcher
//! reconnects and rereads its own pending entries (a read whose reply was lost leaves entries
//! on its name), it skips the ones still being worked on.

use std::collections::HashSet;
use std::sync::Mutex;

/// Entry ids between read and settled. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct InFlight {
    entries: Mutex<HashSet<String>>,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `entry_id` as taken; false when it already was (then it must not run twice).
    pub fn take(&self, entry_id: &str) -> bool {
        self.lock().insert(entry_id.to_owned())
    }

    /// Whether `entry_id` is being worked on here.
    pub fn contains(&self, entry_id: &str) -> bool {
        self.lock().contains(entry_id)
    }

    /// Marks `entry_id` as settled in Redis (acknowledged, or left for a later reread).
    pub fn settled(&self, entry_id: &str) {
        self.lock().remove(entry_id);
    }

    /// Marks many entries as settled.
    pub fn settled_all<'a>(&self, entry_ids: impl IntoIterator<Item = &'a str>) {
        let mut entries = self.lock();
        for id in entry_ids {
            entries.remove(id);
        }
    }
}
