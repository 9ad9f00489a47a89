//! `stevedore schedule add|list|show|remove|pause|resume`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use stevedore::schedule::{Missed, Schedule, Timing};
use stevedore::Client;

use super::format::{parse_args, parse_kwargs, timestamp};
use crate::{parse_duration, CallArgs};

/// Schedule commands.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Creates (or replaces) a schedule; its expression is checked first.
    Add(Box<AddArgs>),
    /// Lists schedules with their last and next fire times.
    List(JsonArg),
    /// Shows one schedule.
    Show(NamedArgs),
    /// Removes a schedule.
    Remove(NamedArgs),
    /// Stops firing a schedule until it is resumed.
    Pause(NamedArgs),
    /// Fires a paused schedule again, from now on.
    Resume(NamedArgs),
}

/// `--json`.
#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// A schedule's name.
#[derive(Debug, Args)]
pub struct NamedArgs {
    /// The schedule's name.
    name: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `schedule add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The schedule's name.
    name: String,
    /// The task each run publishes, its arguments and where it goes.
    #[command(flatten)]
    call: CallArgs,
    /// Fire every DUR (e.g. 30s, 5m).
    #[arg(long, value_parser = parse_interval, group = "when", required_unless_present_any = ["cron", "rrule"])]
    every: Option<Duration>,
    /// Fire on this crontab expression (5 fields, or 6 with seconds first).
    #[arg(long, group = "when")]
    cron: Option<String>,
    /// The time zone of --cron (IANA name; default UTC). Only with --cron: an RRULE names its
    /// zone in DTSTART;TZID=..., an interval has none.
    #[arg(long, requires = "cron")]
    tz: Option<String>,
    /// Fire on this iCal recurrence: 'DTSTART;TZID=America/New_York:20260101T090000 RRULE:FREQ=WEEKLY;BYDAY=MO'.
    #[arg(long, group = "when")]
    rrule: Option<String>,
    /// Runs missed while no beat ran: skip, once (default), all, or all:N.
    #[arg(long, default_value = "once", value_parser = |s: &str| s.parse::<Missed>().map_err(|e| e.to_string()))]
    missed: Missed,
}

/// `--every`: a duration no shorter than beat can keep.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let every = parse_duration(text)?;
    let shortest = Timing::SHORTEST_INTERVAL_MS;
    match every.as_millis() < u128::from(shortest) {
        true => Err(format!(
            "`{text}` is shorter than beat can keep ({shortest} ms at least)"
        )),
        false => Ok(every),
    }
}

/// Runs a schedule command.
pub async fn run(client: &Client, command: ScheduleCommand) -> anyhow::Result<ExitCode> {
    match command {
        ScheduleCommand::Add(args) => add(client, *args).await,
        ScheduleCommand::List(args) => list(client, args.json).await,
        ScheduleCommand::Show(args) => show(client, &args.name, args.json).await,
        ScheduleCommand::Remove(args) => done(
            client.remove_schedule(&args.name).await?,
            &args.name,
            "removed",
        ),
        ScheduleCommand::Pause(args) => done(
            client.pause_schedule(&args.name, true).await?,
            &args.name,
            "paused",
        ),
        ScheduleCommand::Resume(args) => done(
            client.pause_schedule(&args.name, false).await?,
            &args.name,
            "resumed",
        ),
    }
}

async fn add(client: &Client, args: AddArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.tz.is_none() || args.cron.is_some(),
        "--tz applies to --cron only (an RRULE names its zone in DTSTART;TZID=..., an interval has none)"
    );
    let timing = match (args.every, args.cron, args.rrule) {
        (Some(every), None, None) => Timing::Every {
            ms: every.as_millis() as u64,
        },
        (None, Some(expr), None) => Timing::Cron {
            expr,
            tz: args.tz.unwrap_or_else(|| "UTC".to_owned()),
        },
        (None, None, Some(text)) => Timing::RRule { text },
        _ => anyhow::bail!("give exactly one of --every, --cron and --rrule"),
    };
    let queue =
        (args.call.target.destination()?).map_or_else(|| "default".to_owned(), |d| d.wire_name());
    let schedule = Schedule {
        name: args.name,
        task: args.call.task,
        args: parse_args(&args.call.args)?,
        kwargs: parse_kwargs(&args.call.kwargs)?,
        queue,
        timing,
        missed: args.missed,
        paused: false,
        created_at: stevedore::now_ms(),
        last_fired_at: None,
        from_config: false,
    };
    client.put_schedule(&schedule).await?;
    say!("added {}", schedule.name);
    Ok(ExitCode::SUCCESS)
}

fn when(timing: &Timing) -> String {
    match timing {
        Timing::Every { ms } => format!("every {ms} ms"),
        Timing::Cron { expr, tz } => format!("cron '{expr}' {tz}"),
        Timing::RRule { text } => format!("rrule '{text}'"),
    }
}

fn schedule_json(schedule: &Schedule, next: Option<u64>) -> serde_json::Value {
    serde_json::json!({
        "name": schedule.name, "task": schedule.task, "args": schedule.args, "kwargs": schedule.kwargs,
        "queue": schedule.queue, "when": when(&schedule.timing), "missed": format!("{:?}", schedule.missed).to_lowercase(),
        "paused": schedule.paused, "last_fired_at": schedule.last_fired_at, "next_at": next,
    })
}

async fn list(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let (schedules, unreadable) = client.broker().schedules().await?;
    // One bad entry never hides the others: each is named on stderr, and the exit code says so.
    for (name, error) in &unreadable {
        eprintln!(
            "schedule {:?} cannot be read: {error}; `stevedore schedule remove` it",
            name
        );
    }
    let code = match unreadable.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    };
    if json {
        let rows: Vec<_> = schedules
            .iter()
            .map(|(s, next)| schedule_json(s, *next))
            .collect();
        say!("{}", serde_json::Value::Array(rows));
        return Ok(code);
    }
    say!(
        "{:<24} {:<28} {:<7} {:<24} {:<24} WHEN",
        "NAME",
        "TASK",
        "STATE",
        "LAST",
        "NEXT"
    );
    for (s, next) in &schedules {
        let time = |t: Option<u64>| t.map_or_else(|| "-".to_owned(), timestamp);
        let state = if s.paused { "paused" } else { "active" };
        say!(
            "{:<24} {:<28} {:<7} {:<24} {:<24} {}",
            s.name,
            s.task,
            state,
            time(s.last_fired_at),
            time(*next),
            when(&s.timing)
        );
    }
    Ok(code)
}

async fn show(client: &Client, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let Some((schedule, next)) = client.schedule(name).await? else {
        anyhow::bail!("no schedule named `{name}`");
    };
    let value = schedule_json(&schedule, next);
    if json {
        say!("{value}");
    } else {
        say!("{}", serde_json::to_string_pretty(&value)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn done(existed: bool, name: &str, what: &str) -> anyhow::Result<ExitCode> {
    if !existed {
        anyhow::bail!("no schedule named `{name}`");
    }
    say!("{what} {name}");
    Ok(ExitCode::SUCCESS)
}
