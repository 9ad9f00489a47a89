//! Adding and editing a schedule from the dashboard: `GET /schedules/new`, `GET
//! /schedules/NAME/edit` (the form, filled in), `POST /schedules` (stored as `stevedore
//! schedule add` stores it, checked by the same rules; an edit keeps its creation time, its
//! last fire and whether it is paused). A schedule from beat's `--config` file is put back as
//! the file says at beat's next start: the form says so.

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Redirect;
use axum::Form;
use maud::{html, Markup};
use stevedore::schedule::{Missed, Schedule, Timing};

use super::{back, Answer, Failure};
use crate::guard::Csrf;
use crate::layout::page as shell;

/// The form's fields.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ScheduleForm {
    name: String,
    task: String,
    #[serde(default)]
    queue: String,
    /// `every`, `cron` or `rrule`.
    kind: String,
    /// `5m`, `0 3 * * *`, or the RRULE text.
    when: String,
    #[serde(default)]
    tz: String,
    #[serde(default)]
    args: String,
    #[serde(default)]
    kwargs: String,
    #[serde(default)]
    missed: String,
    /// `yes` when it edits an existing schedule (else a taken name is refused).
    #[serde(default)]
    edit: String,
}

/// `GET /schedules/new`.
pub async fn new(Extension(csrf): Extension<Csrf>) -> Answer {
    Ok(shell("New schedule", form(&csrf, None)))
}

/// `GET /schedules/NAME/edit`.
pub async fn edit(
    State(web): crate::State,
    Path(name): Path<String>,
    Extension(csrf): Extension<Csrf>,
) -> Answer {
    let (schedule, _) = web.admin.schedule(&name).await?;
    Ok(shell(
        &format!("Schedule {name}"),
        form(&csrf, Some(&schedule)),
    ))
}

/// `POST /schedules`: adds (or, from the edit form, replaces) a schedule.
pub async fn save(State(web): crate::State, Form(form): Form<ScheduleForm>) -> Answer<Redirect> {
    let bad = |why: String| Failure(StatusCode::BAD_REQUEST, why);
    let existing = web.admin.schedule(&form.name).await.ok();
    let editing = form.edit == "yes";
    if existing.is_some() && !editing {
        let why = format!("a schedule named {} exists: edit it instead", form.name);
        return Err(Failure(StatusCode::CONFLICT, why));
    }
    let timing = timing(&form).map_err(bad)?;
    let missed = match form.missed.trim() {
        "" => Missed::Once,
        text => text.parse::<Missed>().map_err(|e| bad(e.to_string()))?,
    };
    let kept = existing.map(|(s, _)| s);
    let schedule = Schedule {
        name: form.name.trim().to_owned(),
        task: form.task.trim().to_owned(),
        args: json_args(&form.args).map_err(bad)?,
        kwargs: json_kwargs(&form.kwargs).map_err(bad)?,
        queue: Some(form.queue.trim())
            .filter(|q| !q.is_empty())
            .unwrap_or("default")
            .to_owned(),
        timing,
        missed,
        paused: kept.as_ref().is_some_and(|s| s.paused),
        created_at: kept
            .as_ref()
            .map_or_else(stevedore::now_ms, |s| s.created_at),
        last_fired_at: kept.as_ref().and_then(|s| s.last_fired_at),
        from_config: kept.as_ref().is_some_and(|s| s.from_config),
    };
    if schedule.task.is_empty() {
        return Err(bad("give the task each run publishes".into()));
    }
    web.admin.put_schedule(&schedule).await?;
    back("/schedules")
}

/// The timing the form describes.
fn timing(form: &ScheduleForm) -> Result<Timing, String> {
    let when = form.when.trim().to_owned();
    match form.kind.as_str() {
        "every" => {
            let every = stevedore::admin::format::parse_duration(&when)?;
            Ok(Timing::Every {
                ms: every.as_millis().min(u128::from(u64::MAX)) as u64,
            })
        }
        "cron" => {
            let tz = Some(form.tz.trim())
                .filter(|t| !t.is_empty())
                .unwrap_or("UTC");
            Ok(Timing::Cron {
                expr: when,
                tz: tz.to_owned(),
            })
        }
        "rrule" => Ok(Timing::RRule { text: when }),
        other => Err(format!("no timing `{other}`: every, cron or rrule")),
    }
}

/// `args`: a JSON array (empty: none).
fn json_args(text: &str) -> Result<Vec<rmpv::Value>, String> {
    match json(text, "args")? {
        None => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items.iter().map(to_value).collect(),
        Some(_) => Err("args must be a JSON array, e.g. [1, \"two\"]".into()),
    }
}

/// `kwargs`: a JSON object (empty: none).
fn json_kwargs(text: &str) -> Result<std::collections::BTreeMap<String, rmpv::Value>, String> {
    match json(text, "kwargs")? {
        None => Ok(Default::default()),
        Some(serde_json::Value::Object(items)) => items
            .iter()
            .map(|(k, v)| Ok((k.clone(), to_value(v)?)))
            .collect(),
        Some(_) => Err("kwargs must be a JSON object, e.g. {\"n\": 1}".into()),
    }
}

fn json(text: &str, what: &str) -> Result<Option<serde_json::Value>, String> {
    match text.trim() {
        "" => Ok(None),
        text => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| format!("{what} is not JSON: {e}")),
    }
}

fn to_value(json: &serde_json::Value) -> Result<rmpv::Value, String> {
    rmpv::ext::to_value(json).map_err(|e| format!("cannot convert an argument: {e}"))
}

/// The form, empty or filled with `schedule`.
fn form(csrf: &Csrf, schedule: Option<&Schedule>) -> Markup {
    let (kind, when, tz) = match schedule.map(|s| &s.timing) {
        Some(Timing::Every { ms }) => ("every", super::schedules::humanize(*ms), String::new()),
        Some(Timing::Cron { expr, tz }) => ("cron", expr.clone(), tz.clone()),
        Some(Timing::RRule { text }) => ("rrule", text.clone(), String::new()),
        None => ("every", String::new(), String::new()),
    };
    let json_text = |v: serde_json::Value| v.to_string();
    let args = schedule
        .map(|s| json_text(serde_json::json!(s.args)))
        .unwrap_or_default();
    let kwargs = (schedule.filter(|s| !s.kwargs.is_empty()))
        .map(|s| json_text(serde_json::json!(s.kwargs)))
        .unwrap_or_default();
    let missed = schedule.map_or_else(|| "once".into(), |s| super::schedules::missed(s.missed));
    html! {
        @if schedule.is_some_and(|s| s.from_config) {
            p.bad { "This schedule comes from beat's --config file: beat puts it back as the file says at its next start." }
        }
        form.schedule method="post" action="/schedules" {
            input type="hidden" name="csrf" value=(csrf.0);
            @if let Some(s) = schedule {
                input type="hidden" name="edit" value="yes";
                input type="hidden" name="name" value=(s.name);
                p { "name: " strong { (s.name) } }
            } @else {
                p { label { "name " input name="name" required; } }
            }
            p { label { "task " input name="task" required value=(schedule.map_or("", |s| s.task.as_str())); } }
            p { label { "queue " input name="queue" value=(schedule.map_or("default", |s| s.queue.as_str())); } }
            p {
                label { "timing " select name="kind" {
                    @for k in ["every", "cron", "rrule"] { option value=(k) selected[k == kind] { (k) } }
                } }
                " " input name="when" required size="40" value=(when) placeholder="5m · 0 3 * * * · DTSTART...";
                label { " time zone (cron) " input name="tz" value=(tz) placeholder="UTC"; }
            }
            p { label { "args (JSON array) " input name="args" size="40" value=(args); } }
            p { label { "kwargs (JSON object) " input name="kwargs" size="40" value=(kwargs); } }
            p { label { "missed runs " input name="missed" value=(missed) size="8"; } " skip, once, all or all:N" }
            button type="submit" { "Save" }
        }
    }
}
