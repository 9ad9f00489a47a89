//! The forwarder: moves delayed and retrying messages to their streams when they fall due.
//!
//! 1. For every queue this node reads, runs the atomic move script, all queues in one round
//!    trip per pass: every node may run it at once and each message moves exactly once. A
//!    queue whose script fails (its delayed set damaged by hand) is reported once and holds
//!    back none of the others.
//! 2. Sleeps until the nearest due time it learned from the script, not on a fixed tick.
//! 3. Wakes earlier when a publisher announces a delayed message due before then (pub/sub, a
//!    hint only: at its due time, or at once when it is due already), and at least every few
//!    seconds, so a lost hint costs seconds, never a message.
//! 4. Survives Redis errors with capped backoff, logging once per outage.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use stevedore::broker::Broker;
use stevedore::Destination;
use stevedore_runtime::Backoff;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Messages moved per script call.
const BATCH: usize = 500;
/// Longest sleep without a pass.
const SAFETY_PASS: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Moves due messages of `destinations` to their streams.
pub struct Forwarder {
    /// Redis.
    pub broker: Broker,
    /// The queues whose delayed sets it watches.
    pub destinations: Vec<Destination>,
}

impl Forwarder {
    /// Runs until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let (hints, mut hinted) = mpsc::unbounded_channel();
        let listener = tokio::spawn(listen(self.broker.clone(), hints, stop.clone()));
        let mut failing = false;
        let mut backoff = Backoff::new(Duration::from_millis(100), MAX_BACKOFF);
        let mut failing_queues = HashSet::new();
        while !stop.is_cancelled() {
            let sleep = match self.pass(&mut failing_queues).await {
                Ok(next_due) => {
                    if failing {
                        tracing::info!("moving delayed tasks again");
                        failing = false;
                    }
                    backoff.reset();
                    let now = stevedore::now_ms();
                    next_due.map_or(SAFETY_PASS, |due| {
                        Duration::from_millis(due.saturating_sub(now)).min(SAFETY_PASS)
                    })
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, "cannot move delayed tasks; retrying");
                        failing = true;
                    }
                    backoff.next_delay()
                }
            };
            if !wait(&mut hinted, sleep, &stop).await {
                break;
            }
        }
        listener.abort();
    }

    /// Moves everything due, queues whose batch came back full going again; returns the
    /// nearest due time left. `failing` holds the queues whose move failed last time, so each
    /// failure is logged once, and its recovery too.
    async fn pass(&self, failing: &mut HashSet<String>) -> stevedore::Result<Option<u64>> {
        let mut nearest: Option<u64> = None;
        let mut pending: Vec<&Destination> = self.destinations.iter().collect();
        while !pending.is_empty() {
            let replies = (self.broker)
                .move_due_all(&pending, stevedore::now_ms(), BATCH)
                .await?;
            let mut full = Vec::new();
            for (destination, reply) in pending.into_iter().zip(replies) {
                let moved = match reply {
                    Ok(moved) => moved,
                    Err(error) => {
                        if failing.insert(destination.to_string()) {
                            tracing::error!(queue = %destination, %error,
                                "cannot move this queue's delayed tasks; the other queues go on");
                        }
                        continue;
                    }
                };
                if !failing.is_empty() && failing.remove(&destination.to_string()) {
                    tracing::info!(queue = %destination, "moving this queue's delayed tasks again");
                }
                if moved.moved > 0 {
                    tracing::debug!(queue = %destination, moved = moved.moved, "moved due tasks");
                }
                if moved.moved < BATCH as u64 {
                    nearest = match (nearest, moved.next_due_ms) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                } else {
                    full.push(destination);
                }
            }
            pending = full;
        }
        Ok(nearest)
    }
}

/// Waits `sleep`, or less when a hint names an earlier due time, or until a hint names one
/// already due (a pass at once); `false` when stopped. A hint for later only brings the
/// wake-up forward: every node passing over all its queues at each delayed publish, and
/// again when it falls due, doubled the passes for nothing.
async fn wait(
    hinted: &mut mpsc::UnboundedReceiver<u64>,
    sleep: Duration,
    stop: &CancellationToken,
) -> bool {
    let mut deadline = Instant::now() + sleep;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return true,
            Some(mut due) = hinted.recv() => {
                while let Ok(next) = hinted.try_recv() {
                    due = due.min(next);
                }
                let wait = Duration::from_millis(due.saturating_sub(stevedore::now_ms()));
                if wait.is_zero() {
                    return true;
                }
                deadline = deadline.min(Instant::now() + wait);
            }
            () = stop.cancelled() => return false,
        }
    }
}

/// Forwards wake-up hints, resubscribing after a drop.
async fn listen(broker: Broker, hints: mpsc::UnboundedSender<u64>, stop: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(100), MAX_BACKOFF);
    while !stop.is_cancelled() {
        match broker.delayed_wakeups().await {
            Ok(wakeups) => {
                backoff.reset();
                let mut wakeups = std::pin::pin!(wakeups);
                // A (re)subscription may have missed hints: ask for a pass.
                let _ = hints.send(0);
                while let Some(due) = wakeups.next().await {
                    if hints.send(due).is_err() {
                        return;
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "cannot subscribe to delayed-task hints"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
