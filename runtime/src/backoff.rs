//! Capped exponential backoff with jitter, for every reconnect and retry loop: processes that
//! lost Redis together (a restart, a failover) do not come back in lock-step.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The waits of one retry loop: `first`, doubling up to `max`, each drawn at random between
/// half and all of its step ("equal jitter").
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// Steps from `first` up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            step: first,
        }
    }

    /// The next wait; the step then doubles, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        let spread = (step - half).as_nanos() as u64;
        half + Duration::from_nanos(random() % (spread + 1))
    }

    /// Starts over from `first` (after a success).
    pub fn reset(&mut self) {
        self.step = self.first;
    }

    /// Waits the next delay; false when `stop` fired first.
    pub async fn wait(&mut self, stop: &CancellationToken) -> bool {
        tokio::select! {
            () = tokio::time::sleep(self.next_delay()) => true,
            () = stop.cancelled() => false,
        }
    }
}

/// A random number from the standard library's per-process hash keys (no extra dependency;
/// jitter needs spread, not cryptographic quality).
fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_with_jitter_in_the_upper_half() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        for step in [100, 200, 400, 400, 400] {
            let wait = backoff.next_delay().as_millis();
            assert!((step / 2..=step).contains(&wait), "{wait} for step {step}");
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
        let spread: std::collections::HashSet<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay())
            .collect();
        assert!(spread.len() > 1, "no jitter: {spread:?}");
    }
}
