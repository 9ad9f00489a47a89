//! `stevedore schedule add|list|show|remove|pause|resume|import`; the JSON shape is in
//! `schedule_json.rs`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use stevedore::admin::Admin;
use stevedore::schedule::{Missed, Schedule, Timing};

use anyhow::Context as _;

use super::format::{parse_args, parse_kwargs};
use super::schedule_json;
use stevedore::admin::format::timestamp;
use stevedore_runtime::{parse_duration, CallArgs};

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
    /// Publishes a schedule's task now, outside its timing (prints the task id; `--json`:
    /// `{"name", "id"}`).
    Run(NamedArgs),
    /// Creates (or replaces) the schedules of a JSON file (`-`: stdin) in the shape `list
    /// --json` prints: an array, or one object.
    Import(ImportArgs),
}

/// `schedule import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The JSON file (`-`: stdin).
    #[arg(default_value = "-")]
    file: String,
    /// Print JSON: the imported schedules.
    #[arg(long)]
    json: bool,
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
    /// Print JSON: the schedule as stored.
    #[arg(long)]
    json: bool,
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
pub async fn run(admin: &Admin, command: ScheduleCommand) -> anyhow::Result<ExitCode> {
    match command {
        ScheduleCommand::Add(args) => add(admin, *args).await,
        ScheduleCommand::List(args) => list(admin, args.json).await,
        ScheduleCommand::Show(args) => show(admin, &args.name, args.json).await,
        ScheduleCommand::Remove(args) => {
            admin.remove_schedule(&args.name).await?;
            done(&args, "removed")
        }
        ScheduleCommand::Pause(args) => {
            admin.pause_schedule(&args.name, true).await?;
            done(&args, "paused")
        }
        ScheduleCommand::Resume(args) => {
            admin.pause_schedule(&args.name, false).await?;
            done(&args, "resumed")
        }
        ScheduleCommand::Import(args) => import(admin, args).await,
        ScheduleCommand::Run(args) => {
            let id = admin.run_schedule_now(&args.name).await?;
            match args.json {
                true => say!("{}", serde_json::json!({"name": args.name, "id": id})),
                false => say!("{id}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `schedule import`: every schedule is checked before any is stored.
async fn import(admin: &Admin, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let text = match args.file.as_str() {
        "-" => std::io::read_to_string(std::io::stdin())?,
        path => std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?,
    };
    let value: serde_json::Value = serde_json::from_str(&text).context("not JSON")?;
    let values = match value {
        serde_json::Value::Array(values) => values,
        one => vec![one],
    };
    let schedules =
        (values.iter().map(schedule_json::from_json)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut printed = Vec::new();
    for schedule in &schedules {
        admin.put_schedule(schedule).await?;
        let (_, next) = admin.schedule(&schedule.name).await?;
        printed.push(schedule_json::to_json(schedule, next));
    }
    match args.json {
        true => say!("{}", serde_json::Value::Array(printed)),
        false => say!("imported {}", schedules.len()),
    }
    Ok(ExitCode::SUCCESS)
}

async fn add(admin: &Admin, args: AddArgs) -> anyhow::Result<ExitCode> {
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
    admin.put_schedule(&schedule).await?;
    if args.json {
        let (_, next) = admin.schedule(&schedule.name).await?;
        say!("{}", schedule_json::to_json(&schedule, next));
    } else {
        say!("added {}", schedule.name);
    }
    Ok(ExitCode::SUCCESS)
}

fn when(timing: &Timing) -> String {
    match timing {
        Timing::Every { ms } => format!("every {ms} ms"),
        Timing::Cron { expr, tz } => format!("cron '{expr}' {tz}"),
        Timing::RRule { text } => format!("rrule '{text}'"),
    }
}

async fn list(admin: &Admin, json: bool) -> anyhow::Result<ExitCode> {
    let (schedules, unreadable) = admin.schedules().await?;
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
            .map(|(s, next)| schedule_json::to_json(s, *next))
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

async fn show(admin: &Admin, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let (schedule, next) = admin.schedule(name).await?;
    let value = schedule_json::to_json(&schedule, next);
    if json {
        say!("{value}");
    } else {
        say!("{}", serde_json::to_string_pretty(&value)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn done(args: &NamedArgs, what: &str) -> anyhow::Result<ExitCode> {
    let name = &args.name;
    match args.json {
        true => say!("{}", serde_json::json!({"name": name, what: true})),
        false => say!("{what} {name}"),
    }
    Ok(ExitCode::SUCCESS)
}
