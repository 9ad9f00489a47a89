//! Schedules in Redis, the beat leader lease, and firing (see `scripts/fire.lua`).

use std::collections::HashMap;
use std::time::Duration;

use super::scripts::{CLAIM_FIRE, LEASE, PUBLISH_FIRED};
use super::Broker;
use crate::schedule::Schedule;
use crate::signing::Purpose;
use crate::{Destination, Error, Message, Result};

/// Schedule names with their due times.
type DueTimes = Vec<(String, u64)>;

/// What a fire attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// Published, and the next time stored.
    Fired,
    /// Not due any more at that time (fired already, changed or removed): nothing published.
    Stale,
    /// This beat does not hold the lease: nothing published.
    NotLeader,
}

impl Broker {
    /// `schedule` as stored: signed by this writer when signing keys are set, so that a beat
    /// with keys fires only what a key holder wrote.
    fn seal_schedule(&self, schedule: &Schedule) -> Result<Vec<u8>> {
        let bytes = rmp_serde::to_vec_named(schedule).map_err(|e| Error::Encode {
            what: format!("schedule `{}`", schedule.name),
            reason: e.to_string(),
        })?;
        Ok(self.seal_as(Purpose::Schedule, bytes))
    }

    /// A stored schedule; with signing keys, one without a valid signature is an error.
    fn open_schedule(&self, bytes: &[u8]) -> Result<Schedule> {
        rmp_serde::from_slice(&self.open_as(Purpose::Schedule, bytes)?).map_err(|e| Error::Decode {
            what: "schedule".into(),
            reason: e.to_string(),
        })
    }

    /// Stores `schedule`, due next at `next_due_ms` (`None`: not due, e.g. paused or spent).
    pub async fn put_schedule(&self, schedule: &Schedule, next_due_ms: Option<u64>) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(self.keys().schedules())
            .arg(&schedule.name)
            .arg(self.seal_schedule(schedule)?)
            .ignore();
        match next_due_ms {
            Some(due) => pipe
                .cmd("ZADD")
                .arg(self.keys().schedules_due())
                .arg(due)
                .arg(&schedule.name)
                .ignore(),
            None => pipe
                .cmd("ZREM")
                .arg(self.keys().schedules_due())
                .arg(&schedule.name)
                .ignore(),
        };
        pipe.query_async::<()>(&mut self.commands()).await?;
        Ok(())
    }

    /// Removes schedule `name`; returns whether it existed.
    pub async fn remove_schedule(&self, name: &str) -> Result<bool> {
        let (removed,): (i64,) = redis::pipe()
            .cmd("HDEL")
            .arg(self.keys().schedules())
            .arg(name)
            .cmd("ZREM")
            .arg(self.keys().schedules_due())
            .arg(name)
            .ignore()
            .query_async(&mut self.commands())
            .await?;
        Ok(removed == 1)
    }

    /// Every schedule with its next due time, by name; and the entries that do not decode
    /// (name, error), which are reported, never allowed to hide the others.
    pub async fn schedules(&self) -> Result<(Vec<(Schedule, Option<u64>)>, Vec<(String, String)>)> {
        let (all, due): (Vec<(String, Vec<u8>)>, DueTimes) = redis::pipe()
            .cmd("HGETALL")
            .arg(self.keys().schedules())
            .cmd("ZRANGE")
            .arg(self.keys().schedules_due())
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut self.commands())
            .await?;
        let due: HashMap<String, u64> = due.into_iter().collect();
        let (mut schedules, mut unreadable) = (Vec::new(), Vec::new());
        for (name, bytes) in all {
            match self.open_schedule(&bytes) {
                Ok(schedule) => schedules.push((schedule, due.get(&name).copied())),
                Err(error) => unreadable.push((name, error.to_string())),
            }
        }
        schedules.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        unreadable.sort();
        Ok((schedules, unreadable))
    }

    /// Takes schedule `name` out of the due set, so beat stops looking at it (one it cannot
    /// fire); the schedule itself stays, for `schedule show` and `schedule remove`.
    pub async fn park_schedule(&self, name: &str) -> Result<()> {
        redis::pipe()
            .cmd("ZREM")
            .arg(self.keys().schedules_due())
            .arg(name)
            .ignore()
            .cmd("HINCRBY")
            .arg(self.keys().schedule_runs())
            .arg("failed")
            .arg(1)
            .ignore()
            .query_async::<()>(&mut self.commands())
            .await?;
        Ok(())
    }

    /// How many schedule runs were `fired`, `missed` (skipped by a missed-run policy) and
    /// `failed` (a schedule that could not fire was parked), ever: each is 0 until it happens.
    pub async fn schedule_run_counts(&self) -> Result<[(&'static str, u64); 3]> {
        let counts: Vec<Option<u64>> = redis::cmd("HMGET")
            .arg(self.keys().schedule_runs())
            .arg(&["fired", "missed", "failed"])
            .query_async(&mut self.commands())
            .await?;
        let count = |i: usize| counts.get(i).copied().flatten().unwrap_or_default();
        Ok([
            ("fired", count(0)),
            ("missed", count(1)),
            ("failed", count(2)),
        ])
    }

    /// Schedule `name` with its next due time, if it exists.
    pub async fn schedule(&self, name: &str) -> Result<Option<(Schedule, Option<u64>)>> {
        let (bytes, due): (Option<Vec<u8>>, Option<u64>) = redis::pipe()
            .cmd("HGET")
            .arg(self.keys().schedules())
            .arg(name)
            .cmd("ZSCORE")
            .arg(self.keys().schedules_due())
            .arg(name)
            .query_async(&mut self.commands())
            .await?;
        bytes
            .map(|b| Ok((self.open_schedule(&b)?, due)))
            .transpose()
    }

    /// Names of schedules due at `now_ms` with their due times, earliest first, up to `limit`.
    pub async fn due_schedules(&self, now_ms: u64, limit: usize) -> Result<Vec<(String, u64)>> {
        Ok(redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys().schedules_due())
            .arg("-inf")
            .arg(now_ms)
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.commands())
            .await?)
    }

    /// The earliest due time of any schedule.
    pub async fn next_schedule_due(&self) -> Result<Option<u64>> {
        let first: Vec<(String, u64)> = redis::cmd("ZRANGE")
            .arg(self.keys().schedules_due())
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .query_async(&mut self.commands())
            .await?;
        Ok(first.first().map(|(_, due)| *due))
    }

    /// Takes or renews the leader lease for `beat_id`; returns its fencing token while it
    /// leads, `None` when another beat does.
    pub async fn lease(&self, beat_id: &str, ttl: Duration) -> Result<Option<u64>> {
        let token: u64 = LEASE
            .key(self.keys().leader())
            .key(self.keys().fence())
            .arg(beat_id)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.commands())
            .await?;
        Ok((token > 0).then_some(token))
    }

    /// The beat holding the leader lease (`BEAT_ID:TOKEN`), if one does.
    pub async fn beat_leader(&self) -> Result<Option<String>> {
        Ok(redis::cmd("GET")
            .arg(self.keys().leader())
            .query_async(&mut self.commands())
            .await?)
    }

    /// The schedules named `names`, in order (`None` for one removed meanwhile; an error for
    /// one that does not decode, so that it cannot stop the others).
    pub async fn schedules_by_name(
        &self,
        names: &[String],
    ) -> Result<Vec<Result<Option<Schedule>>>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let found: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(self.keys().schedules())
            .arg(names)
            .query_async(&mut self.commands())
            .await?;
        Ok(found
            .into_iter()
            .map(|bytes| bytes.map(|b| self.open_schedule(&b)).transpose())
            .collect())
    }

    /// Fires each of `firings` if `beat_id` still holds the lease with `token` and its
    /// schedule is still due at the time read; returns what became of each, in order.
    ///
    /// Two steps, so that each script stays within one cluster slot, and each step one
    /// pipelined round trip for the whole burst: claim (the schedules' slot: advance each
    /// schedule and put its runs in the outbox), then publish (the queues' slots, each run at
    /// most once) and clear the outbox entries.
    pub async fn fire_schedules(
        &self,
        beat_id: &str,
        token: u64,
        firings: &[Firing],
    ) -> Result<Vec<Fired>> {
        let (fired, claimed) = self.claim(beat_id, token, firings).await?;
        self.publish_firings(&claimed).await?;
        Ok(fired)
    }

    /// Only the first step of [`Broker::fire_schedules`]: what a beat that dies before
    /// publishing leaves behind (its runs wait in the outbox for [`Broker::publish_outbox`]).
    pub async fn claim_schedules(
        &self,
        beat_id: &str,
        token: u64,
        firings: &[Firing],
    ) -> Result<Vec<Fired>> {
        Ok(self.claim(beat_id, token, firings).await?.0)
    }

    async fn claim(
        &self,
        beat_id: &str,
        token: u64,
        firings: &[Firing],
    ) -> Result<(Vec<Fired>, Vec<(String, Outbox)>)> {
        if firings.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut outboxes = Vec::with_capacity(firings.len());
        let mut claims = redis::pipe();
        for firing in firings {
            let field = format!("{}@{}", firing.schedule.name, firing.due_ms);
            let outbox = Outbox {
                queue: firing.schedule.queue.clone(),
                runs: firing
                    .messages
                    .iter()
                    .map(|m| Ok((m.id.clone(), self.seal(m)?)))
                    .collect::<Result<_>>()?,
            };
            let keys = self.keys();
            CLAIM_FIRE
                .eval_in(
                    &mut claims,
                    &[
                        &keys.leader(),
                        &keys.schedules_due(),
                        &keys.schedules(),
                        &keys.schedules_outbox(),
                        &keys.schedule_runs(),
                    ],
                )
                .arg(format!("{beat_id}:{token}"))
                .arg(&firing.schedule.name)
                .arg(firing.due_ms)
                .arg(
                    firing
                        .next_due_ms
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                )
                .arg(self.seal_schedule(&firing.schedule)?)
                .arg(&field)
                .arg(outbox.encode()?)
                .arg(firing.messages.len())
                .arg(firing.missed);
            outboxes.push((field, outbox));
        }
        let claimed: Vec<i64> = claims.query_async(&mut self.commands()).await?;
        let fired: Vec<Fired> = claimed
            .iter()
            .map(|c| match c {
                1 => Fired::Fired,
                0 => Fired::Stale,
                _ => Fired::NotLeader,
            })
            .collect();
        let to_publish: Vec<(String, Outbox)> = outboxes
            .into_iter()
            .zip(&fired)
            .filter(|(_, fired)| **fired == Fired::Fired)
            .map(|(outbox, _)| outbox)
            .collect();
        Ok((fired, to_publish))
    }

    /// Publishes every firing left in the outbox (its beat died between claiming and
    /// publishing); returns how many firings it found.
    pub async fn publish_outbox(&self) -> Result<usize> {
        let left: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.keys().schedules_outbox())
            .query_async(&mut self.commands())
            .await?;
        let mut firings = Vec::with_capacity(left.len());
        for (field, bytes) in left {
            match Outbox::decode(&bytes) {
                Ok(outbox) => firings.push((field, outbox)),
                Err(error) => {
                    tracing::error!(firing = %field, %error, "dropping an outbox entry that does not decode");
                    self.clear_firings(&[field]).await?;
                }
            }
        }
        self.publish_firings(&firings).await?;
        Ok(firings.len())
    }

    /// Publishes the runs of claimed firings (one pipeline, split per slot on a cluster),
    /// then removes them from the outbox.
    async fn publish_firings(&self, firings: &[(String, Outbox)]) -> Result<()> {
        if firings.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (_, outbox) in firings {
            let destination = Destination::from_wire_name(&outbox.queue)?;
            let cap = match destination {
                Destination::Broadcast => self.config().broadcast_cap,
                _ => 0,
            };
            let mut keys = vec![self.keys().stream(&destination)];
            keys.extend(
                (outbox.runs.iter()).map(|(run_id, _)| self.keys().fired(&destination, run_id)),
            );
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let cmd = PUBLISH_FIRED.eval_in(&mut pipe, &keys);
            cmd.arg(cap).arg(FIRED_MARKER_TTL.as_millis() as u64);
            for (_, payload) in &outbox.runs {
                cmd.arg(payload.as_slice());
            }
            cmd.ignore();
        }
        self.add_registered(&mut pipe, firings.iter().map(|(_, o)| o.queue.as_str()));
        // With replicas_to_ack, the outbox is cleared only once replicas have the runs.
        self.query_replicated::<()>(&pipe).await?;
        let fields: Vec<String> = firings.iter().map(|(field, _)| field.clone()).collect();
        self.clear_firings(&fields).await
    }

    async fn clear_firings(&self, fields: &[String]) -> Result<()> {
        let _: i64 = redis::cmd("HDEL")
            .arg(self.keys().schedules_outbox())
            .arg(fields)
            .query_async(&mut self.commands())
            .await?;
        Ok(())
    }
}

/// One firing for [`Broker::fire_schedules`]: a schedule read as due at `due_ms`, the runs to
/// publish, and the time it is due next (`None`: no more times).
#[derive(Debug, Clone)]
pub struct Firing {
    /// The schedule, updated (its last fired time).
    pub schedule: Schedule,
    /// The due time read.
    pub due_ms: u64,
    /// The next due time.
    pub next_due_ms: Option<u64>,
    /// The runs.
    pub messages: Vec<Message>,
    /// Missed runs its missed-run policy skipped (not published).
    pub missed: u64,
}

/// How long the marker of a published run is kept: far longer than any outbox entry waits
/// for a new leader.
const FIRED_MARKER_TTL: Duration = Duration::from_secs(24 * 3600);

/// A claimed firing: the target queue and its runs (id, sealed message).
struct Outbox {
    queue: String,
    runs: Vec<(String, Vec<u8>)>,
}

impl Outbox {
    /// MessagePack `[queue, [[run id, message], ...]]`.
    fn encode(&self) -> Result<Vec<u8>> {
        let runs = self
            .runs
            .iter()
            .map(|(id, payload)| {
                rmpv::Value::Array(vec![
                    id.as_str().into(),
                    rmpv::Value::Binary(payload.clone()),
                ])
            })
            .collect();
        let value = rmpv::Value::Array(vec![self.queue.as_str().into(), rmpv::Value::Array(runs)]);
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &value).map_err(|e| Error::Encode {
            what: "schedule outbox entry".into(),
            reason: e.to_string(),
        })?;
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |reason: &str| Error::Decode {
            what: "schedule outbox entry".into(),
            reason: reason.to_owned(),
        };
        let value = rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| bad(&e.to_string()))?;
        let rmpv::Value::Array(mut parts) = value else {
            return Err(bad("not an array"));
        };
        let (Some(rmpv::Value::Array(runs)), Some(rmpv::Value::String(queue))) =
            (parts.pop(), parts.pop())
        else {
            return Err(bad("not [queue, runs]"));
        };
        let runs = runs
            .into_iter()
            .map(|run| match run {
                rmpv::Value::Array(pair) => match <[rmpv::Value; 2]>::try_from(pair) {
                    Ok([rmpv::Value::String(id), rmpv::Value::Binary(payload)]) => {
                        Ok((id.into_str().unwrap_or_default(), payload))
                    }
                    _ => Err(bad("a run is not [id, message]")),
                },
                _ => Err(bad("a run is not [id, message]")),
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            queue: queue.into_str().unwrap_or_default(),
            runs,
        })
    }
}
