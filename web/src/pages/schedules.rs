//! `/schedules`: every schedule with its timing, next and last fire, missed-run policy and
//! state; add, edit (`schedule_form.rs`), run now, pause, resume, remove.

use axum::extract::{Extension, Path, State};
use axum::response::Redirect;
use maud::html;
use stevedore::schedule::{Missed, Timing};

use super::{back, encoded, Answer};
use crate::guard::Csrf;
use crate::layout::{action, page as shell, time};

/// `GET /schedules`.
pub async fn page(State(web): crate::State, Extension(csrf): Extension<Csrf>) -> Answer {
    let (schedules, unreadable) = web.admin.schedules().await?;
    let body = html! {
        p { a href="/schedules/new" { "New schedule" } }
        @for (name, error) in &unreadable {
            p.bad { "schedule " code { (name) } " cannot be read: " (error) " (remove it with `stevedore schedule remove`)" }
        }
        section #schedules data-live {
            @if schedules.is_empty() { p.muted { "No schedules." } }
            @else {
                table {
                    tr {
                        th { "name" } th { "task" } th { "queue" } th { "timing" } th { "next" }
                        th { "last fired" } th { "missed runs" } th { "state" } th {}
                    }
                    @for (schedule, next) in &schedules {
                        @let at = format!("/schedules/{}", encoded(&schedule.name));
                        tr {
                            td { (schedule.name) } td { (schedule.task) } td { (schedule.queue) }
                            td { (in_words(&schedule.timing)) }
                            td { (time(*next)) } td { (time(schedule.last_fired_at)) }
                            td { (missed(schedule.missed)) }
                            td { @if schedule.paused { span.bad { "paused" } } @else { "active" } }
                            td {
                                a href={ (at) "/edit" } { "Edit" } " "
                                (action(&csrf, &format!("{at}/run"), "Run now", false)) " "
                                @if schedule.paused { (action(&csrf, &format!("{at}/resume"), "Resume", false)) }
                                @else { (action(&csrf, &format!("{at}/pause"), "Pause", false)) }
                                " " (action(&csrf, &format!("{at}/remove"), "Remove", true))
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(shell("Schedules", body))
}

/// A timing as people say it: `every 5m`, `cron 0 3 * * * (Europe/Paris)`, `rrule ...`.
fn in_words(timing: &Timing) -> String {
    match timing {
        Timing::Every { ms } => format!("every {}", humanize(*ms)),
        Timing::Cron { expr, tz } => format!("cron {expr} ({tz})"),
        Timing::RRule { text } => format!("rrule {text}"),
    }
}

/// The missed-run policy as `schedule add --missed` takes it.
pub(super) fn missed(policy: Missed) -> String {
    match policy {
        Missed::Skip => "skip".into(),
        Missed::Once => "once".into(),
        Missed::All(max) => format!("all:{max}"),
    }
}

pub(super) fn humanize(ms: u64) -> String {
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// `POST /schedules/NAME/run`: publishes its task now; on to the task's page.
pub async fn run(State(web): crate::State, Path(name): Path<String>) -> Answer<Redirect> {
    let id = web.admin.run_schedule_now(&name).await?;
    back(&format!("/tasks/{}", encoded(&id)))
}

/// `POST /schedules/NAME/pause`.
pub async fn pause(State(web): crate::State, Path(name): Path<String>) -> Answer<Redirect> {
    paused(&web, &name, true).await
}

/// `POST /schedules/NAME/resume`.
pub async fn resume(State(web): crate::State, Path(name): Path<String>) -> Answer<Redirect> {
    paused(&web, &name, false).await
}

async fn paused(web: &crate::Web, name: &str, paused: bool) -> Answer<Redirect> {
    web.admin.pause_schedule(name, paused).await?;
    back("/schedules")
}

/// `POST /schedules/NAME/remove` (confirmed).
pub async fn remove(
    State(web): crate::State,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<super::queue::Confirmed>,
) -> Answer<Redirect> {
    form.required()?;
    web.admin.remove_schedule(&name).await?;
    back("/schedules")
}
