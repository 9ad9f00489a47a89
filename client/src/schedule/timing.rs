//! [`Timing`]: when a schedule fires, and "when next, after this instant?".

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::recurrence;
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

impl Timing {
    /// Checks the expression; a bad one is a clear error naming it.
    pub fn validate(&self) -> Result<()> {
        if let Self::Every { ms } = self {
            if *ms < Self::SHORTEST_INTERVAL_MS {
                return Err(Error::InvalidSchedule(format!(
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
                    return Err(Error::InvalidSchedule(
                        "an interval must be longer than 0".into(),
                    ));
                }
                let passed = after_ms.saturating_sub(origin_ms) / ms + 1;
                Ok(Some(origin_ms + passed * ms))
            }
            Self::Cron { expr, tz } => cron_next(expr, tz, after_ms).map(Some),
            Self::RRule { text } => {
                Ok(recurrence::times_between(text, after_ms, u64::MAX, 1)?.pop())
            }
        }
    }

    /// The fire times strictly after `after_ms` and at most `until_ms`, earliest first, at most
    /// `limit` of them; `origin_ms` anchors intervals. An RRULE is walked once for all of them.
    pub fn times_between(
        &self,
        origin_ms: u64,
        after_ms: u64,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<u64>> {
        if let Self::RRule { text } = self {
            return recurrence::times_between(text, after_ms, until_ms, limit);
        }
        let mut times = Vec::new();
        let mut last = after_ms;
        while times.len() < limit {
            match self.next_after(origin_ms, last)? {
                Some(t) if t <= until_ms => times.push(t),
                _ => break,
            }
            last = *times.last().unwrap_or(&last);
        }
        Ok(times)
    }
}

fn bad(what: &str, text: &str, reason: impl std::fmt::Display) -> Error {
    Error::InvalidSchedule(format!("{what} `{text}`: {reason}"))
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
            assert!(error.starts_with("invalid schedule: "), "{error}");
        }
    }
}
