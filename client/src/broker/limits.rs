//! Cluster-wide limits: their definitions, and the scripts that take and give back a start.

use std::collections::HashMap;

use super::scripts::{LIMIT_RELEASE, LIMIT_TAKE, LIMIT_WAIT};
use super::Broker;
use crate::limits::{validate_limit_name, LimitSpec};
use crate::{Destination, Error, Result};

/// A limit's definition, its permits held, and its listed waiters.
type LimitReply = (HashMap<String, u64>, u64, Vec<Vec<u8>>);

/// Waiters looked at, at most, to count those still waiting.
const WAITERS_COUNTED: isize = 10_000;

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
    /// Held counts the permits whose lease runs; waiting counts the listed runs whose message
    /// still waits in its delayed set (a run woken another way leaves a stale entry behind,
    /// which the next release skips).
    pub async fn limit(&self, name: &str) -> Result<Option<LimitInfo>> {
        validate_limit_name(name)?;
        let keys = self.keys();
        let (fields, held, waiters): LimitReply = redis::pipe()
            .hgetall(keys.limit_def(name))
            .zcount(keys.limit_part(name, "held", None), crate::now_ms(), "+inf")
            .lrange(
                keys.limit_part(name, "waiting", None),
                0,
                WAITERS_COUNTED - 1,
            )
            .query_async(&mut self.commands())
            .await?;
        let Some(spec) = LimitSpec::from_fields(&fields) else {
            return Ok(None);
        };
        Ok(Some(LimitInfo {
            name: name.to_owned(),
            spec,
            held,
            waiting: self.still_waiting(waiters).await?,
        }))
    }

    /// How many of `waiters` (`QUEUE\nPAYLOAD`, repeats counted once) still wait in their
    /// delayed set.
    async fn still_waiting(&self, mut waiters: Vec<Vec<u8>>) -> Result<u64> {
        waiters.sort();
        waiters.dedup();
        let mut pipe = redis::pipe();
        for waiter in &waiters {
            let split = waiter.iter().position(|b| *b == b'\n').unwrap_or(0);
            let wire = String::from_utf8_lossy(&waiter[..split]);
            let Ok(destination) = Destination::from_wire_name(&wire) else {
                continue;
            };
            let payload = &waiter[(split + 1).min(waiter.len())..];
            pipe.zscore(self.keys().delayed(&destination), payload);
        }
        if pipe.is_empty() {
            return Ok(0);
        }
        let scores: Vec<Option<f64>> = pipe.query_async(&mut self.commands()).await?;
        Ok(scores.iter().filter(|s| s.is_some()).count() as u64)
    }

    /// Every named limit, by name, and the names of those whose definition does not read,
    /// each with why (one damaged limit hides none of the others).
    pub async fn limits(&self) -> Result<(Vec<LimitInfo>, Vec<(String, String)>)> {
        let mut names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys().limit_registry())
            .query_async(&mut self.commands())
            .await?;
        names.sort();
        let (mut limits, mut unreadable) = (Vec::with_capacity(names.len()), Vec::new());
        for name in names {
            match self.limit(&name).await {
                Ok(Some(info)) => limits.push(info),
                Ok(None) => {}
                // A definition that does not parse (or a name that cannot be one); an outage
                // is still an error of the whole listing.
                Err(Error::Redis(e))
                    if !(e.is_io_error() || e.is_timeout() || e.is_connection_dropped()) =>
                {
                    unreadable.push((name, e.to_string()));
                }
                Err(error @ Error::InvalidName { .. }) => {
                    unreadable.push((name, error.to_string()))
                }
                Err(error) => return Err(error),
            }
        }
        Ok((limits, unreadable))
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

    /// Asks `bucket` whether `holder` (one attempt: `crate::limits::permit_holder`) may start
    /// now; `own` is the task's own limit (`None`: the named limit's definition in Redis). A
    /// permit taken is held until `lease_until` (ms) unless renewed.
    pub async fn take_limit(
        &self,
        bucket: &Bucket,
        own: Option<&LimitSpec>,
        holder: &str,
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
            .arg(holder)
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

    /// Gives back `holder`'s permit of `bucket` and wakes the first run waiting for one
    /// (skipping waiters whose message already left the delayed set). Returns whether one
    /// was woken.
    pub async fn release_limit(&self, bucket: &Bucket, holder: &str) -> Result<bool> {
        let keys = self.keys();
        let (name, key) = (bucket.name.as_str(), bucket.key.as_deref());
        let mut id = holder;
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

    /// Extends the leases of the permits `holders` hold in `bucket` to `until` (ms).
    pub async fn renew_permits(
        &self,
        bucket: &Bucket,
        holders: &[String],
        until: u64,
    ) -> Result<()> {
        if holders.is_empty() {
            return Ok(());
        }
        let held = self
            .keys()
            .limit_part(&bucket.name, "held", bucket.key.as_deref());
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(held).arg("XX");
        for holder in holders {
            cmd.arg(until).arg(holder);
        }
        cmd.query_async::<()>(&mut self.commands()).await?;
        Ok(())
    }
}
