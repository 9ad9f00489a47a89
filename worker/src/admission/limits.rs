//! The cluster-wide limits at a run's start (see `stevedore::limits`).
//!
//! 1. Finds the limit a message is under ([`bucket_of`]): the named limit it carries, else its
//!    task's (`#[task(limit = ...)]` or the task's own `rate_limit` / `concurrency`), keyed by
//!    the value of the task's `limit_key` argument when it has one. Broadcasts are not limited.
//! 2. Asks Redis (one script) whether it may start: over the rate, the message goes to its
//!    queue's delayed set for the moment it may start, without counting as an attempt; with no
//!    permit free, it goes there for at most [`WAIT_NET`] and is listed as a waiter, woken as
//!    soon as a permit is given back.
//! 3. Gives permits back when runs end, waking the next waiter; renews the leases of the
//!    permits this process holds at every heartbeat ([`Limiter::renew`]), so a permit held by a
//!    node that died lapses when the node counts as lost.
//! 4. A message naming a limit nobody defined runs unlimited; that is logged once per name.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use stevedore::broker::{Broker, Bucket, Delivery, Take};
use stevedore::limits::{key_text, own_limit_name, permit_holder, LimitSpec};
use stevedore::{Message, TaskRegistration};

use super::Admission;
use crate::persist::until_written;

/// The longest a run waiting for a permit waits before it asks again, should the wake-up that
/// a released permit sends be missed (a waiter listed twice, a node dying mid-release).
pub const WAIT_NET: Duration = Duration::from_secs(10);

/// A concurrency permit a run holds until it ends.
#[derive(Debug)]
pub struct Permit {
    bucket: Bucket,
    /// `TASK_ID:TRIED` ([`permit_holder`]).
    holder: String,
}

/// The permits this process's runs hold, and the limit names it warned about.
#[derive(Debug)]
pub struct Limiter {
    lease: Duration,
    held: Mutex<HashMap<Bucket, HashSet<String>>>,
    warned: Mutex<HashSet<String>>,
}

/// The bucket `message` starts under and the task's own limit (`None`: a named one).
pub fn bucket_of(
    task: Option<&TaskRegistration>,
    message: &Message,
) -> Option<(Bucket, Option<LimitSpec>)> {
    if message.is_broadcast() {
        return None;
    }
    let limit = task.and_then(|t| t.options.limit);
    let key = limit.and_then(|l| l.key).and_then(|key| {
        let value = (message.kwargs.get(key.name)).or_else(|| message.args.get(key.position))?;
        Some(key_text(value))
    });
    let (name, own) = match (&message.limit, limit) {
        (Some(name), _) => (name.clone(), None),
        (None, Some(limit)) => match limit.name {
            Some(name) => (name.to_owned(), None),
            None => (own_limit_name(task?.name), limit.own),
        },
        (None, None) => return None,
    };
    Some((Bucket { name, key }, own))
}

impl Limiter {
    /// A limiter whose permits lapse `lease` after their last renewal (the node-lost grace).
    pub fn new(lease: Duration) -> Self {
        Self {
            lease,
            held: Mutex::new(HashMap::new()),
            warned: Mutex::new(HashSet::new()),
        }
    }

    fn hold(&self, bucket: &Bucket, holder: String) -> Permit {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        (held.entry(bucket.clone()).or_default()).insert(holder.clone());
        Permit {
            bucket: bucket.clone(),
            holder,
        }
    }

    fn forget(&self, permit: &Permit) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ids) = held.get_mut(&permit.bucket) {
            ids.remove(&permit.holder);
            if ids.is_empty() {
                held.remove(&permit.bucket);
            }
        }
    }

    fn warn_undefined(&self, name: &str) {
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.insert(name.to_owned()) {
            tracing::warn!(limit = %name, "a task names a limit that is not defined; it runs unlimited (define it with `stevedore limit set`)");
        }
    }

    /// When a permit taken now lapses unless renewed.
    fn lease_until(&self) -> u64 {
        stevedore::now_ms() + self.lease.as_millis() as u64
    }

    /// Renews the lease of every permit this process holds (at each heartbeat).
    pub async fn renew(&self, broker: &Broker) -> stevedore::Result<()> {
        let held: Vec<(Bucket, Vec<String>)> = {
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            (held.iter())
                .map(|(b, ids)| (b.clone(), ids.iter().cloned().collect()))
                .collect()
        };
        let until = self.lease_until();
        for (bucket, ids) in held {
            broker.renew_permits(&bucket, &ids, until).await?;
        }
        Ok(())
    }
}

impl Admission {
    /// Asks the message's limit whether it may start now: `Some` with the permit it holds
    /// (none under no concurrency); `None` when it was moved to the delayed set (or left
    /// pending at shutdown). Retries while Redis refuses, holding its units.
    pub(super) async fn admit(
        &self,
        delivery: &Delivery,
        message: &Message,
    ) -> Option<Option<Permit>> {
        let task = self.table.get(&message.task);
        let Some((bucket, own)) = bucket_of(task, message) else {
            return Some(None);
        };
        let (limiter, holder) = (&self.limiter, permit_holder(message));
        let take = until_written(&self.abandon, "ask a limit", || {
            let until = limiter.lease_until();
            (self.broker).take_limit(&bucket, own.as_ref(), &holder, until)
        })
        .await?;
        match take {
            Take::Undefined => {
                limiter.warn_undefined(&bucket.name);
                Some(None)
            }
            Take::Run(held) => Some(held.then(|| limiter.hold(&bucket, holder))),
            Take::Later(at) => {
                tracing::debug!(limit = %bucket.name, due_ms = at, "over its rate: delayed until its turn");
                self.defer(delivery, at).await;
                None
            }
            Take::Wait(concurrency) => {
                self.wait_for_permit(delivery, &bucket, concurrency).await;
                None
            }
        }
    }

    /// Parks a message that found every permit held, and lists it as a waiter (waking it at
    /// once if a permit came free meanwhile).
    async fn wait_for_permit(&self, delivery: &Delivery, bucket: &Bucket, n: u32) {
        let due = stevedore::now_ms() + WAIT_NET.as_millis() as u64;
        if !self.defer(delivery, due).await {
            return;
        }
        let payload = delivery.payload.as_deref().unwrap_or_default();
        let destination = &delivery.destination;
        let listed = until_written(&self.abandon, "list a run waiting for a permit", || {
            (self.broker).wait_for_permit(bucket, n, destination, payload)
        })
        .await;
        if listed == Some(false) {
            let _ = self.broker.wake(destination, payload).await;
        }
        tracing::debug!(limit = %bucket.name, "every permit is held: waiting for one");
    }

    /// Gives `permit` back when its run ended, waking the next waiter; a permit that cannot be
    /// given back now lapses with its lease.
    pub async fn release(&self, permit: Permit) {
        self.limiter.forget(&permit);
        let released = self.broker.release_limit(&permit.bucket, &permit.holder);
        if let Err(error) = released.await {
            tracing::warn!(%error, limit = %permit.bucket.name, "cannot give a permit back; it lapses with its lease");
        }
    }
}
