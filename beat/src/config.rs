//! Static schedules from a TOML file:
//!
//! ```toml
//! [[schedule]]
//! name = "nightly-report"
//! task = "reports.write_report"
//! args = ["nightly", 500]
//! queue = "default"            # or node = "web-1", or broadcast = true
//! cron = "0 3 * * *"           # or every = "10m", or rrule = "DTSTART... RRULE:..."
//! tz = "Europe/Berlin"
//! missed = "once"              # skip | once | all | all:N
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;
use stevedore::schedule::{Schedule, Timing};
use stevedore::Destination;

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    schedule: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    task: String,
    #[serde(default)]
    args: Vec<toml::Value>,
    #[serde(default)]
    kwargs: BTreeMap<String, toml::Value>,
    queue: Option<String>,
    node: Option<String>,
    #[serde(default)]
    broadcast: bool,
    every: Option<String>,
    cron: Option<String>,
    tz: Option<String>,
    rrule: Option<String>,
    missed: Option<String>,
}

/// Reads the static schedules of `path`; every mistake names the schedule and the file.
pub fn load_config(path: &Path) -> anyhow::Result<Vec<Schedule>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: File = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid schedule file", path.display()))?;
    file.schedule
        .into_iter()
        .map(|entry| {
            let name = entry.name.clone();
            schedule(entry).with_context(|| format!("schedule `{name}` in {}", path.display()))
        })
        .collect()
}

fn schedule(entry: Entry) -> anyhow::Result<Schedule> {
    let timing = match (&entry.every, &entry.cron, &entry.rrule) {
        (Some(every), None, None) => Timing::Every {
            ms: stevedore_runtime::parse_duration(every)
                .map_err(anyhow::Error::msg)?
                .as_millis() as u64,
        },
        _ if entry.tz.is_some() && entry.cron.is_none() => anyhow::bail!(
            "`tz` applies to `cron` only (an RRULE names its zone in DTSTART;TZID=...)"
        ),
        (None, Some(cron), None) => Timing::Cron {
            expr: cron.clone(),
            tz: entry.tz.clone().unwrap_or_else(|| "UTC".into()),
        },
        (None, None, Some(rrule)) => Timing::RRule {
            text: rrule.clone(),
        },
        _ => anyhow::bail!("give exactly one of `every`, `cron` and `rrule`"),
    };
    timing.validate()?;
    let queue = Destination::pick(
        entry.queue.as_deref(),
        entry.node.as_deref(),
        entry.broadcast,
    )?
    .map_or_else(|| "default".to_owned(), |d| d.wire_name());
    let value = |v: toml::Value| -> anyhow::Result<rmpv::Value> { Ok(rmpv::ext::to_value(v)?) };
    Ok(Schedule {
        name: entry.name,
        task: entry.task,
        args: entry
            .args
            .into_iter()
            .map(value)
            .collect::<anyhow::Result<_>>()?,
        kwargs: entry
            .kwargs
            .into_iter()
            .map(|(k, v)| Ok((k, value(v)?)))
            .collect::<anyhow::Result<_>>()?,
        queue,
        timing,
        missed: entry
            .missed
            .as_deref()
            .map(str::parse)
            .transpose()?
            .unwrap_or_default(),
        paused: false,
        created_at: stevedore::now_ms(),
        last_fired_at: None,
        from_config: true,
    })
}
