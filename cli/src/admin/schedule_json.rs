//! Schedules as JSON data, one documented shape: what `schedule list|show|add --json` print
//! and `schedule import` reads back.
//!
//! ```json
//! {"name": "nightly", "task": "reports.write", "args": [], "kwargs": {}, "queue": "default",
//!  "every_ms": null, "cron": "0 3 * * *", "tz": "Europe/Berlin", "rrule": null,
//!  "missed": {"policy": "all", "max": 3}, "paused": false, "from_config": false,
//!  "created_at": 1767225600000, "last_fired_at": null, "next_fire_at": 1767236400000}
//! ```
//!
//! Exactly one of `every_ms`, `cron` (with `tz`) and `rrule` is set; `missed.policy` is `skip`,
//! `once` or `all` (`max` only with `all`). Times are ms since the epoch. `import` reads
//! `name`, `task`, `args`, `kwargs`, `queue`, the timing, `missed` and `paused`; the times
//! are the store's.

use anyhow::Context as _;
use serde_json::{json, Value};
use stevedore::schedule::{Missed, Schedule, Timing};

use super::format::{parse_args, parse_kwargs};

/// `schedule` as JSON, due next at `next`.
pub fn to_json(schedule: &Schedule, next: Option<u64>) -> Value {
    let (every_ms, cron, tz, rrule) = match &schedule.timing {
        Timing::Every { ms } => (Some(*ms), None, None, None),
        Timing::Cron { expr, tz } => (None, Some(expr), Some(tz), None),
        Timing::RRule { text } => (None, None, None, Some(text)),
    };
    let missed = match schedule.missed {
        Missed::Skip => json!({"policy": "skip", "max": null}),
        Missed::Once => json!({"policy": "once", "max": null}),
        Missed::All(max) => json!({"policy": "all", "max": max}),
    };
    json!({
        "name": schedule.name, "task": schedule.task, "args": schedule.args,
        "kwargs": schedule.kwargs, "queue": schedule.queue,
        "every_ms": every_ms, "cron": cron, "tz": tz, "rrule": rrule, "missed": missed,
        "paused": schedule.paused, "from_config": schedule.from_config,
        "created_at": schedule.created_at, "last_fired_at": schedule.last_fired_at,
        "next_fire_at": next,
    })
}

/// The schedule `value` describes (the shape [`to_json`] prints); created now.
pub fn from_json(value: &Value) -> anyhow::Result<Schedule> {
    let text = |field: &str| value.get(field).and_then(Value::as_str).map(str::to_owned);
    let name = text("name").context("a schedule needs a `name`")?;
    let named = |what: &str| format!("schedule `{name}`: {what}");
    let task = text("task").with_context(|| named("a `task` is needed"))?;
    let every = value.get("every_ms").and_then(Value::as_u64);
    let timing = match (every, text("cron"), text("rrule")) {
        (Some(ms), None, None) => Timing::Every { ms },
        (None, Some(expr), None) => Timing::Cron {
            expr,
            tz: text("tz").unwrap_or_else(|| "UTC".to_owned()),
        },
        (None, None, Some(text)) => Timing::RRule { text },
        _ => anyhow::bail!(named("give exactly one of `every_ms`, `cron` and `rrule`")),
    };
    timing.validate().with_context(|| named("bad timing"))?;
    let missed = value.get("missed").unwrap_or(&Value::Null);
    let missed = match (
        missed.get("policy").and_then(Value::as_str),
        missed.get("max"),
    ) {
        (None, _) => Missed::Once,
        (Some("all"), Some(max)) if !max.is_null() => {
            let max = max.as_u64().and_then(|m| u32::try_from(m).ok());
            format!(
                "all:{}",
                max.with_context(|| named("`missed.max` is a count"))?
            )
            .parse()?
        }
        (Some(policy), _) => policy.parse()?,
    };
    Ok(Schedule {
        args: parse_args(&value.get("args").unwrap_or(&json!([])).to_string())?,
        kwargs: parse_kwargs(&value.get("kwargs").unwrap_or(&json!({})).to_string())?,
        queue: text("queue").unwrap_or_else(|| "default".to_owned()),
        paused: value
            .get("paused")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        created_at: stevedore::now_ms(),
        last_fired_at: None,
        from_config: false,
        name,
        task,
        timing,
        missed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_printed_reads_back_as_the_same_schedule() {
        let schedule = Schedule {
            name: "n".into(),
            task: "t".into(),
            args: vec![1.into(), "two".into()],
            kwargs: [("k".to_owned(), true.into())].into(),
            queue: "node:web-1".into(),
            timing: Timing::Cron {
                expr: "0 3 * * *".into(),
                tz: "Europe/Berlin".into(),
            },
            missed: Missed::All(3),
            paused: true,
            created_at: 1,
            last_fired_at: Some(2),
            from_config: false,
        };
        let printed = to_json(&schedule, Some(3));
        assert_eq!(printed["missed"], json!({"policy": "all", "max": 3}));
        assert_eq!(printed["next_fire_at"], 3);
        let read = from_json(&printed).unwrap();
        assert_eq!(
            (read.created_at, read.last_fired_at),
            (read.created_at, None),
            "times are the store's"
        );
        let read = Schedule {
            created_at: 1,
            last_fired_at: Some(2),
            ..read
        };
        assert_eq!(read, schedule);
        let every = json!({"name": "e", "task": "t", "every_ms": 60000, "cron": "* * * * *"});
        assert!(from_json(&every).is_err(), "one timing only");
    }
}
