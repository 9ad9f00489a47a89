//! The node's capacity in units (AWX's capacity and job impact).
//!
//! 1. The node has `--max-workers` units; a run takes its impact's worth (1 by default) from
//!    the moment it is handed its units until its run ends.
//! 2. Units are given in the order they were asked for: once a heavy run waits for its units,
//!    nothing asked for later (a light run, the fetchers' next read) gets any before it, so a
//!    stream of light tasks never starves a heavy one.
//! 3. An exclusive run asks for every unit: its node lets running tasks finish, takes nothing
//!    else meanwhile, runs it alone, then resumes. Its state (draining, running) is shown by
//!    `stevedore status`.
//!
//! ```text
//!   asked ──(units free, nobody ahead)──▶ held ──(run ends)──▶ given back
//!     │                                     ▲
//!     └──(waits: later askers queue behind)─┘
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use stevedore::control::ExclusiveRun;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The node's units and who waits for them.
#[derive(Debug)]
pub struct Capacity {
    units: Arc<Semaphore>,
    total: u32,
    /// Units held by runs (not by a read that holds one while it waits for messages).
    running: Arc<AtomicU32>,
    exclusive: Mutex<Option<ExclusiveRun>>,
}

/// Units handed to one run, given back when it is dropped (when the run ends).
#[derive(Debug)]
pub struct HeldUnits {
    _taken: OwnedSemaphorePermit,
    units: u32,
    running: Arc<AtomicU32>,
}

impl Drop for HeldUnits {
    fn drop(&mut self) {
        self.running.fetch_sub(self.units, Ordering::Relaxed);
    }
}

impl Capacity {
    /// A node of `total` units (at least 1).
    pub fn new(total: usize) -> Self {
        let total = u32::try_from(total.max(1)).unwrap_or(u32::MAX);
        Self {
            units: Arc::new(Semaphore::new(total as usize)),
            total,
            running: Arc::new(AtomicU32::new(0)),
            exclusive: Mutex::new(None),
        }
    }

    /// All the node's units.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Units held by runs now.
    pub fn in_use(&self) -> u32 {
        self.running.load(Ordering::Relaxed)
    }

    /// Hands `taken` (the units of one run, from [`Capacity::take`]) to the run.
    pub fn hold(&self, taken: OwnedSemaphorePermit) -> HeldUnits {
        let units = taken.num_permits() as u32;
        self.running.fetch_add(units, Ordering::Relaxed);
        HeldUnits {
            _taken: taken,
            units,
            running: self.running.clone(),
        }
    }

    /// Units free now.
    pub fn free(&self) -> usize {
        self.units.available_permits()
    }

    /// Waits for `units` (at most the total), behind everyone who asked before.
    pub async fn take(&self, units: u32) -> OwnedSemaphorePermit {
        self.units
            .clone()
            .acquire_many_owned(units.clamp(1, self.total))
            .await
            .expect("the capacity semaphore is never closed")
    }

    /// An exclusive run `id` of `task` waits for its node to drain.
    pub fn draining_for(&self, id: &str, task: &str) {
        *self.exclusive.lock().unwrap_or_else(|p| p.into_inner()) = Some(ExclusiveRun {
            id: id.to_owned(),
            task: task.to_owned(),
            running: false,
        });
    }

    /// Exclusive run `id` has the node to itself and runs.
    pub fn running_alone(&self, id: &str, task: &str) {
        *self.exclusive.lock().unwrap_or_else(|p| p.into_inner()) = Some(ExclusiveRun {
            id: id.to_owned(),
            task: task.to_owned(),
            running: true,
        });
    }

    /// Exclusive run `id` ended: the node takes other work again.
    pub fn alone_no_more(&self, id: &str) {
        let mut exclusive = self.exclusive.lock().unwrap_or_else(|p| p.into_inner());
        if exclusive.as_ref().is_some_and(|e| e.id == id) {
            *exclusive = None;
        }
    }

    /// The exclusive run the node drains for or runs, if any.
    pub fn exclusive(&self) -> Option<ExclusiveRun> {
        self.exclusive
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiting_heavy_run_is_served_before_lighter_ones_asked_later() {
        let capacity = Arc::new(Capacity::new(4));
        let running = capacity.hold(capacity.take(3).await);
        let heavy = tokio::spawn({
            let capacity = capacity.clone();
            async move { capacity.take(4).await }
        });
        tokio::task::yield_now().await;
        let light = capacity.take(1);
        tokio::pin!(light);
        // One unit is free, but the heavy run asked first: the light one waits.
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut light)
            .await
            .is_err());
        drop(running);
        let heavy = capacity.hold(heavy.await.unwrap());
        assert_eq!(capacity.in_use(), 4);
        drop(heavy);
        let _light = capacity.hold(light.await);
        assert_eq!(capacity.in_use(), 1);
    }
}
