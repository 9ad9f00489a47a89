//! The entries this process has read and not yet settled in Redis: so that, when a fetcher
//! reconnects and rereads its own pending entries (a read whose reply was lost leaves entries
//! on its name), it skips the ones still being worked on.
//!
//! Keyed by stream and entry id together: entries of different streams may share an id.
//!
//! It is also the node's backpressure: the fetchers read nothing more while too many entries
//! are read and not yet settled (outcomes that cannot be written during a Redis write outage),
//! so a worker neither holds an unbounded backlog in memory nor runs work whose outcome it
//! cannot record ([`InFlight::wait_below`]).

use std::collections::HashSet;
use std::sync::Mutex;

use stevedore::Destination;

/// Entries between read and settled. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct InFlight {
    entries: Mutex<HashSet<(Destination, String)>>,
    /// Woken whenever entries are settled.
    settled: tokio::sync::Notify,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(Destination, String)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the entry as taken; false when it already was (then it must not run twice).
    pub fn take(&self, destination: &Destination, entry_id: &str) -> bool {
        self.lock()
            .insert((destination.clone(), entry_id.to_owned()))
    }

    /// Whether the entry is being worked on here.
    pub fn contains(&self, destination: &Destination, entry_id: &str) -> bool {
        self.lock()
            .contains(&(destination.clone(), entry_id.to_owned()))
    }

    /// Marks the entry as settled in Redis (acknowledged, or left for a later reread).
    pub fn settled(&self, destination: &Destination, entry_id: &str) {
        self.lock()
            .remove(&(destination.clone(), entry_id.to_owned()));
        self.settled.notify_waiters();
    }

    /// Waits until fewer than `limit` entries are read and not settled.
    pub async fn wait_below(&self, limit: usize) {
        loop {
            let settled = self.settled.notified();
            let mut settled = std::pin::pin!(settled);
            settled.as_mut().enable();
            if self.lock().len() < limit {
                return;
            }
            settled.await;
        }
    }

    /// Marks many entries as settled.
    pub fn settled_all<'a>(&self, entries: impl IntoIterator<Item = (&'a Destination, &'a str)>) {
        let mut held = self.lock();
        for (destination, entry_id) in entries {
            held.remove(&(destination.clone(), entry_id.to_owned()));
        }
        drop(held);
        self.settled.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_id_in_two_streams_is_two_entries() {
        let in_flight = InFlight::default();
        let (a, b) = (
            Destination::queue("a").unwrap(),
            Destination::queue("b").unwrap(),
        );
        assert!(in_flight.take(&a, "1-0"));
        assert!(
            in_flight.take(&b, "1-0"),
            "a same-millisecond id in another stream"
        );
        assert!(!in_flight.take(&a, "1-0"));
        in_flight.settled(&a, "1-0");
        assert!(!in_flight.contains(&a, "1-0") && in_flight.contains(&b, "1-0"));
    }
}
