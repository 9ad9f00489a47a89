//! The runs this node holds: queued for a worker or running, each with its stop signal, so
//! control requests can list and cancel them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::stop::{StopReason, StopSignal};

/// Where a held run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Read from Redis, waiting for a free worker.
    Queued,
    /// On a worker.
    Running,
}

#[derive(Debug)]
struct Entry {
    task: String,
    stop: StopSignal,
    phase: Phase,
}

/// Every run this node holds. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RunningTasks {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

/// Removes its run from the registry when dropped.
pub struct Held {
    registry: RunningTasks,
    id: String,
}

impl Held {
    /// Marks the run as on a worker.
    pub fn started(&self) {
        if let Some(entry) = self.registry.lock().get_mut(&self.id) {
            entry.phase = Phase::Running;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

impl RunningTasks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock leaves a map that is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers run `id` of `task` as queued until the returned guard is dropped.
    pub fn hold(&self, id: &str, task: &str, stop: StopSignal) -> Held {
        self.lock().insert(
            id.to_owned(),
            Entry {
                task: task.to_owned(),
                stop,
                phase: Phase::Queued,
            },
        );
        Held {
            registry: self.clone(),
            id: id.to_owned(),
        }
    }

    /// Ids of held runs in `phase`, sorted.
    pub fn ids(&self, phase: Phase) -> Vec<String> {
        let mut ids: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.phase == phase)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Cancels the held runs whose id is in `ids` or whose task is `task`; returns their ids.
    pub fn cancel(&self, ids: &[String], task: Option<&str>) -> Vec<String> {
        let entries = self.lock();
        let mut hit: Vec<String> = entries
            .iter()
            .filter(|(id, e)| ids.contains(id) || task.is_some_and(|t| t == e.task))
            .map(|(id, e)| {
                e.stop.stop(StopReason::Cancelled);
                id.clone()
            })
            .collect();
        hit.sort();
        hit
    }
}
