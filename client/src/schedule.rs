//! Schedules that `beat` fires: a fixed interval, a cron expression in a time zone, or an iCal
//! RRULE as AWX writes them. Expressions are checked when a schedule is created, and each one
//! answers "when next, after this instant?" in milliseconds since the epoch.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Timing {
    /// Every `ms` milliseconds, counted from when the schedule was created.
    Every {
        /// The interval.
        ms: u64,
    },
    /// A crontab expression: 5 fields, or 6 with seconds first; in time zone `tz` (IANA name,
    /// default UTC). DST follows Vixie cron: a time skipped by spring-forward fires at the
    /// next valid time, a time repeated by fall-back fires once.
    Cron {
        /// The expression.
        expr: String,
        /// The time zone.
        tz: String,
    },
    /// An iCal recurrence: `DTSTART;TZID=America/New_York:20260101T090000 RRULE:FREQ=WEEKLY;BYDAY=MO`.
    RRule {
        /// The text.
        text: String,
    },
}

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
                Some(0) => Err(Error::InvalidOptions(format!(
                    "missed-run policy `{text}`: all:N fires at most N missed runs; N must be 1 or more (or use skip)"
                ))),
                Some(cap) => Ok(Self::All(cap)),
                None => Err(Error::InvalidOptions(format!(
                    "missed-run policy `{text}` is not skip, once, all or all:N"
                ))),
            },
        }
    }
}

/// A schedule: what to publish, where, and when.
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
}

impl Timing {
    /// Checks the expression; a bad one is a clear error naming it.
    pub fn validate(&self) -> Result<()> {
        if let Self::Every { ms } = self {
            if *ms < Self::SHORTEST_INTERVAL_MS {
                return Err(Error::InvalidOptions(format!(
                    "an interval of {ms} ms is shorter than beat can keep ({} ms at least)",
                    Self::SHORTEST_INTERVAL_MS
                )));
            }
        }
        self.next_after(0, Utc::now().timestamp_millis().max(0) as u64)
            .map(|_| ())
    }

    /// The shortest interval `Every` accepts: beat looks for due schedules about every 500 ms
    /// and fires a burst at once, so shorter intervals would only pile up missed runs.
    pub const SHORTEST_INTERVAL_MS: u64 = 100;

    /// The first fire time strictly after `after_ms`; `origin_ms` anchors intervals. `None`
    /// when the schedule has no more times (an RRULE with COUNT or UNTIL).
    pub fn next_after(&self, origin_ms: u64, after_ms: u64) -> Result<Option<u64>> {
        match self {
            Self::Every { ms } => {
                if *ms == 0 {
                    return Err(Error::InvalidOptions(
                        "an interval must be longer than 0".into(),
                    ));
                }
                let passed = after_ms.saturating_sub(origin_ms) / ms + 1;
                Ok(Some(origin_ms + passed * ms))
            }
            Self::Cron { expr, tz } => cron_next(expr, tz, after_ms).map(Some),
            Self::RRule { text } => rrule_next(text, after_ms),
        }
    }
}

fn bad(what: &str, text: &str, reason: impl std::fmt::Display) -> Error {
    Error::InvalidOptions(format!("invalid {what} `{text}`: {reason}"))
}

fn zone(tz: &str) -> Result<chrono_tz::Tz> {
    tz.parse::<chrono_tz::Tz>().map_err(|_| {
        bad(
            "time zone",
            tz,
            "use an IANA name such as Europe/Berlin or UTC",
        )
    })
}

fn utc(ms: u64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms as i64)
        .single()
        .unwrap_or_default()
}

fn cron_next(expr: &str, tz: &str, after_ms: u64) -> Result<u64> {
    let cron = croner::Cron::from_str(expr).map_err(|e| bad("cron expression", expr, e))?;
    let zone = zone(tz)?;
    let start = utc(after_ms).with_timezone(&zone);
    let next = cron
        .find_next_occurrence(&start, false)
        .map_err(|e| bad("cron expression", expr, e))?;
    Ok(next.with_timezone(&Utc).timestamp_millis() as u64)
}

fn rrule_next(text: &str, after_ms: u64) -> Result<Option<u64>> {
    // AWX writes DTSTART and RRULE on one line, separated by a space.
    let text_lines = text
        .replace(" RRULE:", "\nRRULE:")
        .replace(" EXRULE:", "\nEXRULE:");
    let set: rrule::RRuleSet = text_lines.parse().map_err(|e| bad("RRULE", text, e))?;
    let after = utc(after_ms + 1).with_timezone(&rrule::Tz::UTC);
    let next = set.after(after).all(1).dates.into_iter().next();
    Ok(next.map(|dt| dt.with_timezone(&Utc).timestamp_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds of a UTC time written as `2026-03-08T07:00:00Z`.
    fn at(text: &str) -> u64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis() as u64
    }

    fn cron(expr: &str, tz: &str) -> Timing {
        Timing::Cron {
            expr: expr.into(),
            tz: tz.into(),
        }
    }

    fn next(timing: &Timing, after: &str) -> String {
        let ms = timing.next_after(0, at(after)).unwrap().unwrap();
        utc(ms).format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    #[test]
    fn intervals_count_from_their_origin() {
        let every = Timing::Every { ms: 1000 };
        assert_eq!(every.next_after(500, 500).unwrap(), Some(1500));
        assert_eq!(every.next_after(500, 1499).unwrap(), Some(1500));
        assert_eq!(every.next_after(500, 1500).unwrap(), Some(2500));
        assert!(Timing::Every { ms: 0 }.validate().is_err());
    }

    #[test]
    fn standard_five_field_crontab_and_optional_seconds() {
        assert_eq!(
            next(&cron("30 9 * * 1", "UTC"), "2026-01-01T00:00:00Z"),
            "2026-01-05T09:30:00Z"
        );
        assert_eq!(
            next(&cron("*/15 * * * * *", "UTC"), "2026-01-01T00:00:00Z"),
            "2026-01-01T00:00:15Z"
        );
        assert_eq!(
            next(&cron("0 0 * * 0", "UTC"), "2026-01-01T00:00:00Z"),
            "2026-01-04T00:00:00Z",
            "Sunday is 0"
        );
    }

    #[test]
    fn spring_forward_runs_once_at_the_next_valid_time_in_two_zones() {
        // New York skips 02:00-03:00 on 2026-03-08; Berlin on 2026-03-29.
        assert_eq!(
            next(
                &cron("30 2 * * *", "America/New_York"),
                "2026-03-08T05:00:00Z"
            ),
            "2026-03-08T07:00:00Z"
        );
        assert_eq!(
            next(&cron("30 2 * * *", "Europe/Berlin"), "2026-03-29T00:00:00Z"),
            "2026-03-29T01:00:00Z"
        );
        // The day after, the usual local time again.
        assert_eq!(
            next(
                &cron("30 2 * * *", "America/New_York"),
                "2026-03-08T08:00:00Z"
            ),
            "2026-03-09T06:30:00Z"
        );
    }

    #[test]
    fn fall_back_runs_once_in_the_repeated_hour_in_two_zones() {
        // New York repeats 01:00-02:00 on 2026-11-01 (05:00Z-06:00Z and 06:00Z-07:00Z).
        let ny = cron("30 1 * * *", "America/New_York");
        let first = next(&ny, "2026-11-01T04:00:00Z");
        assert_eq!(first, "2026-11-01T05:30:00Z");
        assert_eq!(
            next(&ny, "2026-11-01T05:30:00Z"),
            "2026-11-02T06:30:00Z",
            "no second run at 06:30Z"
        );
        let berlin = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            next(&berlin, "2026-10-25T00:00:00Z"),
            "2026-10-25T00:30:00Z"
        );
        assert_eq!(
            next(&berlin, "2026-10-25T00:30:00Z"),
            "2026-10-26T01:30:00Z",
            "no second run at 01:30Z"
        );
    }

    #[test]
    fn exrules_as_awx_writes_them_take_dates_out() {
        // Every day at 09:00 UTC, but not on Saturdays and Sundays (an AWX schedule's EXRULE).
        let weekdays = Timing::RRule {
            text: "DTSTART:20260102T090000Z RRULE:FREQ=DAILY EXRULE:FREQ=WEEKLY;BYDAY=SA,SU".into(),
        };
        // 2026-01-02 is a Friday: after it comes Monday the 5th, not Saturday the 3rd.
        assert_eq!(
            next(&weekdays, "2026-01-02T10:00:00Z"),
            "2026-01-05T09:00:00Z"
        );
    }

    #[test]
    fn rrules_as_awx_writes_them() {
        let weekly = Timing::RRule {
            text: "DTSTART;TZID=America/New_York:20260101T090000 RRULE:FREQ=WEEKLY;BYDAY=MO".into(),
        };
        assert_eq!(
            next(&weekly, "2026-01-01T00:00:00Z"),
            "2026-01-05T14:00:00Z"
        );
        assert_eq!(
            next(&weekly, "2026-03-02T15:00:00Z"),
            "2026-03-09T13:00:00Z",
            "09:00 New York across DST"
        );
        let monthly = Timing::RRule {
            text: "DTSTART;TZID=UTC:20260115T080000 RRULE:FREQ=MONTHLY;BYMONTHDAY=15".into(),
        };
        assert_eq!(
            next(&monthly, "2026-01-15T08:00:00Z"),
            "2026-02-15T08:00:00Z"
        );
        let counted = Timing::RRule {
            text: "DTSTART:20260101T000000Z RRULE:FREQ=DAILY;COUNT=2".into(),
        };
        assert_eq!(
            next(&counted, "2025-12-31T00:00:00Z"),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            counted.next_after(0, at("2026-01-02T00:00:00Z")).unwrap(),
            None,
            "COUNT=2 is spent"
        );
        let until = Timing::RRule {
            text: "DTSTART:20260101T000000Z RRULE:FREQ=DAILY;UNTIL=20260103T000000Z".into(),
        };
        assert_eq!(next(&until, "2026-01-02T00:00:00Z"), "2026-01-03T00:00:00Z");
        assert_eq!(
            until.next_after(0, at("2026-01-03T00:00:00Z")).unwrap(),
            None,
            "past UNTIL"
        );
    }

    #[test]
    fn bad_expressions_are_refused_with_the_expression_named() {
        for timing in [
            cron("61 * * * *", "UTC"),
            cron("* * * * *", "Mars/Olympus"),
            Timing::RRule {
                text: "RRULE:FREQ=SOMETIMES".into(),
            },
        ] {
            let error = timing.validate().unwrap_err().to_string();
            assert!(
                error.starts_with("invalid publish options: invalid "),
                "{error}"
            );
        }
    }

    #[test]
    fn missed_policies_parse() {
        assert_eq!("skip".parse::<Missed>().unwrap(), Missed::Skip);
        assert_eq!("all:5".parse::<Missed>().unwrap(), Missed::All(5));
        assert!("sometimes".parse::<Missed>().is_err());
    }
}

/// What firing a schedule due at `due_ms` publishes, seen at `now_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirePlan {
    /// The fire times to publish a run for.
    pub fire_at: Vec<u64>,
    /// The next due time (`None`: the schedule has no more times).
    pub next_due: Option<u64>,
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
            });
        }
        let mut missed = vec![due_ms];
        while missed.len() < MISSED_LOOKED_AT {
            match self
                .timing
                .next_after(origin, *missed.last().unwrap_or(&due_ms))?
            {
                Some(t) if t <= now_ms => missed.push(t),
                _ => break,
            }
        }
        let fire_at = match self.missed {
            Missed::Skip => Vec::new(),
            Missed::Once => missed.last().copied().into_iter().collect(),
            Missed::All(cap) => missed.split_off(missed.len().saturating_sub(cap as usize)),
        };
        Ok(FirePlan {
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
        }
    }

    #[test]
    fn on_time_fires_once_and_moves_on() {
        let plan = every_second(Missed::Once).plan(10_000, 10_050).unwrap();
        assert_eq!(
            plan,
            FirePlan {
                fire_at: vec![10_000],
                next_due: Some(11_000)
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
                next_due: Some(16_000)
            }
        );
        assert_eq!(
            at(Missed::Once),
            FirePlan {
                fire_at: vec![15_000],
                next_due: Some(16_000)
            }
        );
        assert_eq!(
            at(Missed::All(100)).fire_at,
            vec![10_000, 11_000, 12_000, 13_000, 14_000, 15_000]
        );
        assert_eq!(
            at(Missed::All(2)).fire_at,
            vec![14_000, 15_000],
            "capped to the latest"
        );
    }

    #[test]
    fn run_ids_depend_on_schedule_and_time_only() {
        let s = every_second(Missed::Once);
        assert_eq!(s.run_id(1000), s.run_id(1000));
        assert_ne!(s.run_id(1000), s.run_id(2000));
        assert_eq!(s.message(1000).unwrap().id, s.run_id(1000));
    }
}
