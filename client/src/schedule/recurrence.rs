//! RRULE sets as AWX writes them (`DTSTART;TZID=...:... RRULE:... EXRULE:...`), answered in
//! bounded work.
//!
//! The `rrule` crate finds the times after an instant by walking every occurrence from
//! DTSTART: a `FREQ=SECONDLY` rule started in January walks tens of millions of times to say
//! what comes next, and a `MINUTELY` one from 2020 grows slower every day. So this module:
//!
//! 1. **Skips ahead.** Each rule's periods form a lattice anchored at DTSTART (every
//!    `INTERVAL` seconds, minutes, hours, days or weeks of local time, or every `INTERVAL`
//!    months or years). Moving DTSTART forward by a whole number of lattice steps of every
//!    rule in the set, to just before the instant asked about, leaves the times after that
//!    instant unchanged, so the walk starts there. The rules keep the defaults they took from
//!    the first DTSTART (the time of day, the weekday, the day of the month). Not possible
//!    with `COUNT` (which counts from the first DTSTART) or when month- and second-based rules
//!    are mixed; those are walked from DTSTART.
//! 2. **Bounds the walk.** At most [`MAX_STEPS`] occurrences are looked at per question; a
//!    set that needs more is refused with an error naming what to change, which beat reports
//!    (and parks the schedule) and `schedule add` shows, instead of a beat that spins.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use rrule::{Frequency, RRule, RRuleSet, Tz};

use crate::{Error, Result};

/// Most occurrences looked at to answer one question.
pub(super) const MAX_STEPS: usize = 100_000;

/// Parses `text` (DTSTART and rules on one line, as AWX writes them, or on several).
fn parse(text: &str) -> Result<RRuleSet> {
    let lines = text
        .replace(" RRULE:", "\nRRULE:")
        .replace(" EXRULE:", "\nEXRULE:")
        .replace(" RDATE", "\nRDATE")
        .replace(" EXDATE", "\nEXDATE");
    lines.parse().map_err(|e| bad(text, e))
}

fn bad(text: &str, reason: impl std::fmt::Display) -> Error {
    Error::InvalidSchedule(format!("RRULE `{text}`: {reason}"))
}

/// The times of `text` strictly after `after_ms` and at most `until_ms`, earliest first, at
/// most `limit` of them.
pub(super) fn times_between(
    text: &str,
    after_ms: u64,
    until_ms: u64,
    limit: usize,
) -> Result<Vec<u64>> {
    walk(text, after_ms, until_ms, limit, true)
}

fn walk(text: &str, after_ms: u64, until_ms: u64, limit: usize, skip: bool) -> Result<Vec<u64>> {
    let after = Utc
        .timestamp_millis_opt(after_ms.min(i64::MAX as u64) as i64)
        .single()
        .unwrap_or_default()
        .with_timezone(&Tz::UTC);
    let mut set = parse(text)?;
    if skip {
        set = skip_ahead(set, after);
    }
    let set = set.limit();
    let mut times = Vec::new();
    for (step, time) in (&set).into_iter().enumerate() {
        let ms = time.timestamp_millis().max(0) as u64;
        if ms > until_ms || times.len() >= limit {
            break;
        }
        if ms > after_ms {
            times.push(ms);
        } else if step >= MAX_STEPS {
            return Err(bad(
                text,
                format!(
                    "more than {MAX_STEPS} of its times lie before the time asked about and \
                     they cannot be skipped (COUNT, or monthly and sub-monthly rules mixed); \
                     move DTSTART closer to now"
                ),
            ));
        }
    }
    Ok(times)
}

/// A lattice step shared by every rule of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Seconds of local (wall-clock) time.
    Seconds(i64),
    /// Calendar months.
    Months(i64),
}

fn step_of(rule: &RRule) -> Step {
    let interval = i64::from(rule.get_interval().max(1));
    match rule.get_freq() {
        Frequency::Secondly => Step::Seconds(interval),
        Frequency::Minutely => Step::Seconds(60 * interval),
        Frequency::Hourly => Step::Seconds(3600 * interval),
        Frequency::Daily => Step::Seconds(86_400 * interval),
        Frequency::Weekly => Step::Seconds(604_800 * interval),
        Frequency::Monthly => Step::Months(interval),
        Frequency::Yearly => Step::Months(12 * interval),
    }
}

/// The step every rule of `set` repeats on; `None` when there is none to skip by.
fn common_step(set: &RRuleSet) -> Option<Step> {
    let mut rules = set.get_rrule().iter().chain(set.get_exrule());
    let first = step_of(rules.next()?);
    let mut common = first;
    for rule in set.get_rrule().iter().chain(set.get_exrule()) {
        if rule.get_count().is_some() {
            return None;
        }
        common = match (common, step_of(rule)) {
            (Step::Seconds(a), Step::Seconds(b)) => Step::Seconds(lcm(a, b)?),
            (Step::Months(a), Step::Months(b)) => Step::Months(lcm(a, b)?),
            _ => return None,
        };
    }
    Some(common)
}

fn lcm(a: i64, b: i64) -> Option<i64> {
    let gcd = |mut a: i64, mut b: i64| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    (a / gcd(a, b)).checked_mul(b)
}

/// `set` with DTSTART moved forward by whole steps, to at most about two steps before
/// `after` (itself when it cannot be moved).
fn skip_ahead(set: RRuleSet, after: chrono::DateTime<Tz>) -> RRuleSet {
    let Some(step) = common_step(&set) else {
        return set;
    };
    let start = *set.get_dt_start();
    let tz = start.timezone();
    let (from, to) = (start.naive_local(), after.with_timezone(&tz).naive_local());
    let moved = match step {
        // One step and an hour of margin: wall-clock time and UTC differ around DST changes.
        Step::Seconds(step) => {
            let gap = (to - from).num_seconds() - step - 3600;
            (gap > 0).then(|| from + Duration::seconds(gap / step * step))
        }
        Step::Months(step) => {
            let month = |t: &NaiveDateTime| i64::from(t.year()) * 12 + i64::from(t.month0());
            let gap = month(&to) - month(&from) - step - 1;
            (gap > 0)
                .then(|| month(&from) + gap / step * step)
                .and_then(|m| NaiveDate::from_ymd_opt((m / 12) as i32, (m % 12) as u32 + 1, 1))
                .and_then(|day| day.and_hms_opt(0, 0, 0))
        }
    };
    let Some(new_start) = moved.and_then(|t| tz.from_local_datetime(&t).earliest()) else {
        return set;
    };
    RRuleSet::new(new_start)
        .set_rrules(set.get_rrule().clone())
        .set_exrules(set.get_exrule().clone())
        .set_rdates(set.get_rdate().clone())
        .set_exdates(set.get_exdate().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> u64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis() as u64
    }

    /// The next `n` times after each of `afters`, skipping ahead and walking from DTSTART.
    fn both_ways(text: &str, afters: &[&str], n: usize) {
        for after in afters {
            let after = ms(after);
            let skipped = walk(text, after, u64::MAX, n, true).unwrap();
            let walked = walk(text, after, u64::MAX, n, false).unwrap();
            assert_eq!(skipped, walked, "{text} after {after}");
            assert_eq!(skipped.len(), n, "{text} after {after}");
        }
    }

    #[test]
    fn skipping_ahead_finds_the_times_a_walk_from_dtstart_finds() {
        // Across both DST changes of 2026 in New York and Berlin.
        let afters = [
            "2026-03-08T06:59:59Z",
            "2026-03-29T00:30:00Z",
            "2026-07-01T12:00:00Z",
            "2026-10-25T00:59:00Z",
            "2026-11-01T05:30:00Z",
            "2027-02-28T23:00:00Z",
        ];
        for rule in [
            "DTSTART;TZID=America/New_York:20240131T013000 RRULE:FREQ=DAILY",
            "DTSTART;TZID=Europe/Berlin:20240131T023000 RRULE:FREQ=DAILY;INTERVAL=3",
            "DTSTART;TZID=America/New_York:20240101T090000 RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,FR",
            "DTSTART;TZID=Europe/Berlin:20240131T080000 RRULE:FREQ=MONTHLY",
            "DTSTART:20240131T080000Z RRULE:FREQ=MONTHLY;INTERVAL=5;BYDAY=-1FR",
            "DTSTART;TZID=America/New_York:20240229T000000 RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=-1",
            "DTSTART;TZID=America/New_York:20250101T000700 RRULE:FREQ=HOURLY;INTERVAL=5",
            "DTSTART;TZID=Europe/Berlin:20260101T000013 RRULE:FREQ=MINUTELY;INTERVAL=7",
            "DTSTART:20240102T090000Z RRULE:FREQ=DAILY EXRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=SA,SU",
            "DTSTART;TZID=Europe/Berlin:20240101T090000 RRULE:FREQ=DAILY;BYHOUR=9,17;BYSETPOS=-1",
        ] {
            both_ways(rule, &afters, 6);
        }
        both_ways(
            "DTSTART;TZID=Europe/Berlin:20260328T230000 RRULE:FREQ=SECONDLY;INTERVAL=7",
            &["2026-03-29T00:59:50Z", "2026-03-29T01:00:03Z"],
            20,
        );
    }

    #[test]
    fn a_secondly_rule_from_january_answers_within_the_bound() {
        let text = "DTSTART:20260101T000000Z RRULE:FREQ=SECONDLY";
        let after = ms("2026-11-28T12:00:00.500Z");
        let next = times_between(text, after, u64::MAX, 2).unwrap();
        assert_eq!(
            next,
            [ms("2026-11-28T12:00:01Z"), ms("2026-11-28T12:00:02Z")]
        );
        let error = walk(text, after, u64::MAX, 1, false).unwrap_err();
        assert!(
            error.to_string().contains("move DTSTART closer to now"),
            "{error}"
        );
    }

    #[test]
    fn a_counted_rule_too_far_behind_is_refused_with_what_to_change() {
        let text = "DTSTART:20200101T000000Z RRULE:FREQ=SECONDLY;COUNT=100000000";
        let error = times_between(text, ms("2026-01-01T00:00:00Z"), u64::MAX, 1).unwrap_err();
        let error = error.to_string();
        assert!(error.contains("more than 100000 of its times"), "{error}");
        assert!(error.contains("COUNT=100000000"), "names the rule: {error}");
    }

    #[test]
    fn rdates_and_exdates_are_kept() {
        let text = "DTSTART:20240101T090000Z RRULE:FREQ=DAILY \
                    EXDATE:20261201T090000Z RDATE:20261201T120000Z";
        let next = times_between(text, ms("2026-11-30T10:00:00Z"), u64::MAX, 2).unwrap();
        assert_eq!(
            next,
            [ms("2026-12-01T12:00:00Z"), ms("2026-12-02T09:00:00Z")]
        );
    }
}
