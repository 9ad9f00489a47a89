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

/// What a cancel is matched against while a run is held. The arguments themselves are moved
/// into the task, so only their digest stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunKey {
    /// The task name.
    pub task: String,
    /// When the message was published (ms since the epoch).
    pub published_at: u64,
    /// [`args_digest`] of its positional arguments.
    pub args_digest: u64,
}

impl RunKey {
    /// The key of `message` (before its arguments are moved out).
    pub fn of(message: &stevedore::Message) -> Self {
        Self {
            task: message.task.clone(),
            published_at: message.published_at,
            args_digest: args_digest(&message.args),
        }
    }
}

/// A digest of positional arguments: equal arguments (as `rmpv::Value` compares them) have
/// equal digests. One pass over the values, no allocation.
pub fn args_digest(args: &[rmpv::Value]) -> u64 {
    use std::hash::{Hash, Hasher};
    fn feed(value: &rmpv::Value, h: &mut impl Hasher) {
        use rmpv::Value as V;
        match value {
            V::Nil => 0u8.hash(h),
            V::Boolean(b) => (1u8, b).hash(h),
            V::Integer(i) => (2u8, i.as_i64(), i.as_u64()).hash(h),
            V::F32(f) => (3u8, f.to_bits()).hash(h),
            V::F64(f) => (4u8, f.to_bits()).hash(h),
            V::String(s) => (5u8, s.as_bytes()).hash(h),
            V::Binary(b) => (6u8, b).hash(h),
            V::Array(items) => {
                (7u8, items.len()).hash(h);
                items.iter().for_each(|v| feed(v, h));
            }
            V::Map(pairs) => {
                (8u8, pairs.len()).hash(h);
                for (k, v) in pairs {
                    feed(k, h);
                    feed(v, h);
                }
            }
            V::Ext(kind, bytes) => (9u8, kind, bytes).hash(h),
        }
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    args.len().hash(&mut hasher);
    args.iter().for_each(|v| feed(v, &mut hasher));
    hasher.finish()
}

#[derive(Debug)]
struct Entry {
    key: RunKey,
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

    /// Registers run `id` as queued until the returned guard is dropped.
    pub fn hold(&self, id: &str, key: RunKey, stop: StopSignal) -> Held {
        self.lock().insert(
            id.to_owned(),
            Entry {
                key,
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

    /// Cancels the held runs `cancelled` selects (by id and key); returns their ids.
    pub fn cancel(&self, cancelled: impl Fn(&str, &RunKey) -> bool) -> Vec<String> {
        let entries = self.lock();
        let mut hit: Vec<String> = entries
            .iter()
            .filter(|(id, e)| cancelled(id, &e.key))
            .map(|(id, e)| {
                e.stop.stop(StopReason::Cancelled);
                id.clone()
            })
            .collect();
        hit.sort();
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_arguments_have_equal_digests_and_others_differ() {
        let call = |v: Vec<rmpv::Value>| args_digest(&v);
        let a = vec![1.into(), "x".into(), rmpv::Value::Array(vec![2.5.into()])];
        assert_eq!(call(a.clone()), call(a));
        assert_ne!(call(vec![1.into()]), call(vec![2.into()]));
        assert_ne!(call(vec!["1".into()]), call(vec![1.into()]));
        assert_ne!(call(vec![]), call(vec![rmpv::Value::Nil]));
        let nested = vec![rmpv::Value::Array(vec![1.into(), 2.into()])];
        let flat = vec![1.into(), 2.into()];
        assert_ne!(call(nested), call(flat));
    }
}
