//! Cluster-wide limits: their definitions, and the scripts that take and give back a start.

use std::collections::HashMap;

use super::scripts::{LIMIT_RELEASE, LIMIT_TAKE, LIMIT_WAIT};
use super::Broker;
use crate::limits::{validate_limit_name, LimitSpec};
use crate::{Destination, Result};

/// One bucket of a limit: the limit's name, and the key's value for a keyed limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bucket {
    /// The limit (`task.TASK` for a task's own).
    pub name: String,
    /// The key argument's value (see [`crate::limits::key_text`]), for a keyed limit.
    pub key: Option<String>,
}

/// What a limit says about a run that asks to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// It may start now; `true` when it holds a permit (the limit has a concurrency).
    Run(bool),
    /// Over the rate: it may start at this time (ms); its start is reserved.
    Later(u64),
    /// Every permit is held; the limit allows this many at once.
    Wait(u32),
    /// The named limit is not defined.
    Undefined,
}

/// A named limit and how it is used now (its unkeyed bucket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitInfo {
    /// Its name.
    pub name: String,
    /// What it allows.
    pub spec: LimitSpec,
    /// Permits held now.
    pub held: u64,
    /// Runs waiting for a permit.
    pub waiting: u64,
}

impl Broker {
    /// Defines (or redefines) the named limit `name`.
    pub async fn set_limit(&self, name: &str, spec: &LimitSpec) -> Result<()> {
        validate_limit_name(name)?;
        spec.check()?;
        let def = self.keys().limit_def(name);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&def).ignore();
        let hset = pipe.cmd("HSET").arg(&def);
        for (field, value) in spec.to_fields() {
            hset.arg(field).arg(value);
        }
        hset.ignore();
        pipe.query_async::<()>(&mut self.commands()).await?;
        redis::cmd("SADD")
            .arg(self.keys().limit_registry())
            .arg(name)
            .query_async::<()>(&mut self.commands())
            .await?;
        Ok(())
    }

    /// The named limit `name`, with its unkeyed bucket's use; `None` when it is not defined.
    pub async fn limit(&self, name: &str) -> Result<Option<LimitInfo>> {
        validate_limit_name(name)?;
        let keys = self.keys();
        let (fields, held, waiting): (HashMap<String, u64>, u64, u64) = redis::pipe()
            .hgetall(keys.limit_def(name))
            .zcount(keys.limit_part(name, "held", None), crate::now_ms(), "+inf")
            .llen(keys.limit_part(name, "waiting", None))
            .query_async(&mut self.commands())
            .await?;
        Ok(LimitSpec::from_fields(&fields).map(|spec| LimitInfo {
            name: name.to_owned(),
            spec,
            held,
            waiting,
        }))
    }

    /// Every named limit, by name.
    pub async fn limits(&self) -> Result<Vec<LimitInfo>> {
        let mut names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys().limit_registry())
            .query_async(&mut self.commands())
            .await?;
        names.sort();
        let mut limits = Vec::with_capacity(names.len());
        for name in names {
            if let Some(info) = self.limit(&name).await? {
                limits.push(info);
            }
        }
        Ok(limits)
    }

    /// Removes the named limit; returns whether it existed. Runs under it then start unlimited.
    pub async fn remove_limit(&self, name: &str) -> Result<bool> {
        validate_limit_name(name)?;
        let (removed, _): (u64, u64) = redis::pipe()
            .del(self.keys().limit_def(name))
            .del(self.keys().limit_part(name, "tat", None))
            .query_async(&mut self.commands())
            .await?;
        redis::cmd("SREM")
            .arg(self.keys().limit_registry())
            .arg(name)
            .query_async::<()>(&mut self.commands())
            .await?;
        Ok(removed > 0)
    }

    /// Asks `bucket` whether run `task_id` may start now; `own` is the task's own limit
    /// (`None`: the named limit's definition in Redis). A permit taken is held until
    /// `lease_until` (ms) unless renewed.
    pub async fn take_limit(
        &self,
        bucket: &Bucket,
        own: Option<&LimitSpec>,
        task_id: &str,
        lease_until: u64,
    ) -> Result<Take> {
        let keys = self.keys();
        let (name, key) = (bucket.name.as_str(), bucket.key.as_deref());
        let own = own.map_or_else(String::new, |spec| {
            let (count, per, burst) = spec
                .rate
                .map_or((0, 0, 1), |r| (r.count, r.per_ms, r.burst));
            format!("{count},{per},{burst},{}", spec.concurrency.unwrap_or(0))
        });
        let (word, number): (String, u64) = LIMIT_TAKE
            .key(keys.limit_def(name))
            .key(keys.limit_part(name, "tat", key))
            .key(keys.limit_part(name, "held", key))
            .key(keys.limit_part(name, "passes", None))
            .arg(crate::now_ms())
            .arg(task_id)
            .arg(own)
            .arg(lease_until)
            .invoke_async(&mut self.commands())
            .await?;
        Ok(match word.as_str() {
            "later" => Take::Later(number),
            "wait" => Take::Wait(u32::try_from(number).unwrap_or(u32::MAX)),
            "undefined" => Take::Undefined,
            _ => Take::Run(number == 1),
        })
    }

    /// Lists the message `payload` of `destination` (already parked in its delayed set) as
    /// waiting for one of `bucket`'s `concurrency` permits; returns false when a permit came
    /// free meanwhile (the caller wakes it at once).
    pub async fn wait_for_permit(
        &self,
        bucket: &Bucket,
        concurrency: u32,
        destination: &Destination,
        payload: &[u8],
    ) -> Result<bool> {
        let keys = self.keys();
        let (name, key) = (bucket.name.as_str(), bucket.key.as_deref());
        let mut waiter = destination.wire_name().into_bytes();
        waiter.push(b'\n');
        waiter.extend_from_slice(payload);
        let listed: i64 = LIMIT_WAIT
            .key(keys.limit_part(name, "held", key))
            .key(keys.limit_part(name, "waiting", key))
            .arg(crate::now_ms())
            .arg(concurrency)
            .arg(waiter)
            .invoke_async(&mut self.commands())
            .await?;
        Ok(listed == 1)
    }

    /// Gives back run `task_id`'s permit of `bucket` and wakes the first run waiting for one
    /// (skipping waiters whose message already left the delayed set). Returns whether one
    /// was woken.
    pub async fn release_limit(&self, bucket: &Bucket, task_id: &str) -> Result<bool> {
        let keys = self.keys();
        let (name, key) = (bucket.name.as_str(), bucket.key.as_deref());
        let mut id = task_id;
        for _ in 0..16 {
            let waiter: Option<Vec<u8>> = LIMIT_RELEASE
                .key(keys.limit_part(name, "held", key))
                .key(keys.limit_part(name, "waiting", key))
                .arg(id)
                .invoke_async(&mut self.commands())
                .await?;
            let Some(waiter) = waiter else {
                return Ok(false);
            };
            if self.wake_waiter(&waiter).await? {
                return Ok(true);
            }
            id = "";
        }
        Ok(false)
    }

    /// Moves a waiter's message from its delayed set to now; false when it is no longer there.
    async fn wake_waiter(&self, waiter: &[u8]) -> Result<bool> {
        let Some(split) = waiter.iter().position(|b| *b == b'\n') else {
            return Ok(false);
        };
        let wire = String::from_utf8_lossy(&waiter[..split]);
        let Ok(destination) = Destination::from_wire_name(&wire) else {
            return Ok(false);
        };
        self.wake(&destination, &waiter[split + 1..]).await
    }

    /// Moves message `payload` of `destination`'s delayed set to now (and wakes the
    /// forwarders); false when it is not in the delayed set.
    pub async fn wake(&self, destination: &Destination, payload: &[u8]) -> Result<bool> {
        let now = crate::now_ms();
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(self.keys().delayed(destination))
            .arg("XX")
            .arg("LT")
            .arg("CH")
            .arg(now)
            .arg(payload);
        self.add_wake(&mut pipe, now);
        let (changed,): (u64,) = pipe.query_async(&mut self.commands()).await?;
        Ok(changed > 0)
    }

    /// Extends the leases of the permits `task_ids` hold in `bucket` to `until` (ms).
    pub async fn renew_permits(
        &self,
        bucket: &Bucket,
        task_ids: &[String],
        until: u64,
    ) -> Result<()> {
        if task_ids.is_empty() {
            return Ok(());
        }
        let held = self
            .keys()
            .limit_part(&bucket.name, "held", bucket.key.as_deref());
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(held).arg("XX");
        for id in task_ids {
            cmd.arg(until).arg(id);
        }
        cmd.query_async::<()>(&mut self.commands()).await?;
        Ok(())
    }
}
