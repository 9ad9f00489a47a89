//! Schedules that `beat` fires: a fixed interval, a cron expression in a time zone, or an iCal
//! RRULE as AWX writes them. Expressions are checked when a schedule is created, and each one
//! answers "when next, after this instant?" in milliseconds since the epoch.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | [`Schedule`], the missed-run policy, planning one firing ([`FirePlan`]) |
//! | `timing.rs` | [`Timing`]: intervals, cron in a time zone, and the questions beat asks |
//! | `recurrence.rs` | RRULE sets: parsed, skipped ahead to now, walked in bounded work |

mod recurrence;
mod timing;

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use timing::Timing;

use crate::{Error, Result};

/// What to do with runs missed while no beat ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Missed {
    /// Skip them; fire at the next time from now.
    Skip,
    /// Fire once for all of them (the default).
    #[default]
    Once,
    /// Fire each of them, up to this many.
    All(u32),
}

impl FromStr for Missed {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "skip" => Ok(Self::Skip),
            "once" => Ok(Self::Once),
            "all" => Ok(Self::All(100)),
            _ => match text.strip_prefix("all:").and_then(|n| n.parse().ok()) {
                Some(0) => Err(Error::InvalidSchedule(format!(
                    "missed-run policy `{text}`: all:N fires at most N missed runs; N must be 1 or more (or use skip)"
                ))),
                Some(cap) => Ok(Self::All(cap)),
                None => Err(Error::InvalidSchedule(format!(
                    "missed-run policy `{text}` is not skip, once, all or all:N"
                ))),
            },
        }
    }
}

/// A schedule: what to publish, where, and when. `beat` fires it.
///
/// ```no_run
/// # async fn run(client: &stevedore::Client) -> stevedore::Result<()> {
/// use stevedore::schedule::{Missed, Schedule, Timing};
///
/// client.put_schedule(&Schedule {
///     name: "nightly-report".into(),
///     task: "reports.build".into(),
///     args: vec![10.into()],
///     kwargs: Default::default(),
///     queue: "default".into(),
///     timing: Timing::Cron { expr: "0 3 * * *".into(), tz: "Europe/Berlin".into() },
///     missed: Missed::Once,
///     paused: false,
///     created_at: stevedore::now_ms(),
///     last_fired_at: None,
///     from_config: false,
/// }).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Its unique name.
    pub name: String,
    /// The task to publish.
    pub task: String,
    /// Positional arguments.
    #[serde(default)]
    pub args: Vec<rmpv::Value>,
    /// Keyword arguments.
    #[serde(default)]
    pub kwargs: BTreeMap<String, rmpv::Value>,
    /// Where: `NAME`, `node:NAME` or `broadcast`.
    pub queue: String,
    /// When.
    pub timing: Timing,
    /// Missed-run policy.
    #[serde(default)]
    pub missed: Missed,
    /// Whether it is paused (not fired until resumed).
    #[serde(default)]
    pub paused: bool,
    /// When it was created (ms): the origin of `Every`.
    pub created_at: u64,
    /// When it last fired (ms), if ever.
    #[serde(default)]
    pub last_fired_at: Option<u64>,
    /// Whether it came from beat's `--config` file: such a schedule is updated when its entry
    /// changes and removed when its entry leaves the file; others are never touched by it.
    #[serde(default)]
    pub from_config: bool,
}

/// What firing a schedule due at `due_ms` publishes, seen at `now_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirePlan {
    /// The fire times to publish a run for.
    pub fire_at: Vec<u64>,
    /// The next due time (`None`: the schedule has no more times).
    pub next_due: Option<u64>,
    /// Missed runs skipped by the missed-run policy.
    pub missed: u64,
}

/// A run is late (missed) when it is seen more than this after its time.
pub const LATE_AFTER_MS: u64 = 2_000;
/// Most missed runs looked at.
const MISSED_LOOKED_AT: usize = 100_000;

impl Schedule {
    /// Plans the firing of this schedule, due at `due_ms`, seen at `now_ms`: on time, one run;
    /// late (no beat ran), what its missed-run policy says.
    pub fn plan(&self, due_ms: u64, now_ms: u64) -> Result<FirePlan> {
        let origin = self.created_at;
        if now_ms <= due_ms + LATE_AFTER_MS {
            return Ok(FirePlan {
                fire_at: vec![due_ms],
                next_due: self.timing.next_after(origin, due_ms)?,
                missed: 0,
            });
        }
        let mut missed = vec![due_ms];
        let later = (self.timing).times_between(origin, due_ms, now_ms, MISSED_LOOKED_AT - 1)?;
        missed.extend(later);
        let late = missed.len();
        let fire_at = match self.missed {
            Missed::Skip => Vec::new(),
            Missed::Once => missed.last().copied().into_iter().collect(),
            Missed::All(cap) => missed.split_off(missed.len().saturating_sub(cap as usize)),
        };
        Ok(FirePlan {
            missed: late.saturating_sub(fire_at.len()) as u64,
            fire_at,
            next_due: self.timing.next_after(origin, now_ms)?,
        })
    }

    /// The task id of the run fired at `fire_ms`: the same for every beat, so a run can never be
    /// published under two ids.
    pub fn run_id(&self, fire_ms: u64) -> String {
        let name = format!("stevedore-schedule:{}:{fire_ms}", self.name);
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
    }

    /// The message of the run fired at `fire_ms`.
    pub fn message(&self, fire_ms: u64) -> Result<crate::Message> {
        let mut options = crate::PublishOptions::new().id(self.run_id(fire_ms));
        options = match crate::Destination::from_wire_name(&self.queue)? {
            crate::Destination::Queue(q) => options.queue(q.as_str()),
            crate::Destination::Node(n) => options.node(n.as_str()),
            crate::Destination::Broadcast => options.broadcast(),
        };
        let mut message =
            options.message(&self.task, None, self.args.clone(), self.kwargs.clone())?;
        message.headers.insert("schedule".into(), self.name.clone());
        message
            .headers
            .insert("fire_at".into(), fire_ms.to_string());
        Ok(message)
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    fn every_second(missed: Missed) -> Schedule {
        Schedule {
            name: "s".into(),
            task: "t".into(),
            args: vec![],
            kwargs: BTreeMap::new(),
            queue: "default".into(),
            timing: Timing::Every { ms: 1000 },
            missed,
            paused: false,
            created_at: 0,
            last_fired_at: None,
            from_config: false,
        }
    }

    #[test]
    fn on_time_fires_once_and_moves_on() {
        let plan = every_second(Missed::Once).plan(10_000, 10_050).unwrap();
        assert_eq!(
            plan,
            FirePlan {
                fire_at: vec![10_000],
                next_due: Some(11_000),
                missed: 0
            }
        );
    }

    #[test]
    fn missed_runs_follow_the_policy() {
        // Due at 10 s, seen at 15.5 s: 10, 11, 12, 13, 14 and 15 s were missed.
        let at = |missed| every_second(missed).plan(10_000, 15_500).unwrap();
        assert_eq!(
            at(Missed::Skip),
            FirePlan {
                fire_at: vec![],
                next_due: Some(16_000),
                missed: 6
            }
        );
        assert_eq!(
            at(Missed::Once),
            FirePlan {
                fire_at: vec![15_000],
                next_due: Some(16_000),
                missed: 5
            }
        );
        assert_eq!(
            at(Missed::All(100)).fire_at,
            vec![10_000, 11_000, 12_000, 13_000, 14_000, 15_000]
        );
        assert_eq!(at(Missed::All(100)).missed, 0);
        assert_eq!(
            at(Missed::All(2)).fire_at,
            vec![14_000, 15_000],
            "capped to the latest"
        );
        assert_eq!(at(Missed::All(2)).missed, 4, "the 4 older runs are skipped");
    }

    #[test]
    fn run_ids_depend_on_schedule_and_time_only() {
        let s = every_second(Missed::Once);
        assert_eq!(s.run_id(1000), s.run_id(1000));
        assert_ne!(s.run_id(1000), s.run_id(2000));
        assert_eq!(s.message(1000).unwrap().id, s.run_id(1000));
    }

    #[test]
    fn missed_policies_parse() {
        assert_eq!("skip".parse::<Missed>().unwrap(), Missed::Skip);
        assert_eq!("all:5".parse::<Missed>().unwrap(), Missed::All(5));
        assert!("sometimes".parse::<Missed>().is_err());
    }
}
