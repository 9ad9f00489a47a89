//! `/tasks/ID`: a task's record (its run, or each node's run of a broadcast; every attempt;
//! late runs), with cancel, retry once failed, and requeue once dead.

use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::response::Redirect;
use maud::{html, Markup};
use stevedore::admin::{TaskView, Whereabouts};
use stevedore::control::CancelSelector;
use stevedore::{Destination, RunRecord, TaskState};

use super::{args_link, back, encoded, Answer, ArgsToggle, Notice};
use crate::guard::Csrf;
use crate::layout::{action, page as shell, time};

/// How long a cancel waits for the nodes' answers.
const ANSWERS: Duration = Duration::from_secs(2);
/// `GET /tasks/ID`.
pub async fn page(
    State(web): crate::State,
    Path(id): Path<String>,
    Query(toggle): Query<ArgsToggle>,
    Query(notice): Query<Notice>,
    Extension(csrf): Extension<Csrf>,
) -> Answer {
    let shown = toggle.shown(&web)?;
    let task = web.admin.task(&id).await?;
    if !task.has_record() {
        return Ok(unstarted(&task, &notice, &csrf));
    }
    let (record, id) = (&task.record, &task.id);
    let state = record.state();
    let path = format!("/tasks/{}", encoded(id));
    let body = html! {
        (notice.shown())
        (args_link(&web, &path, shown))
        section #task data-live {
            p { "state: " (crate::layout::badge(state.as_str())) }
            @if let Some(workflow) = &record.workflow {
                p { "a step of workflow " a href={ "/workflows/" (encoded(workflow)) } { code { (workflow) } } }
            }
            @if let Some(p) = &task.progress {
                p.progress {
                    progress value=(p.done.min(p.total)) max=(p.total.max(1)) {}
                    " " (p.done) " / " (p.total)
                    @if let Some(percent) = p.percent() { " (" (percent) "%)" }
                    " " (p.message) " · " (crate::layout::when(p.at, stevedore::now_ms()))
                }
            }
            p {
                @if !state.is_final() { (action(&csrf, &format!("{path}/cancel"), "Cancel", false)) }
                @if state == TaskState::Dead { (action(&csrf, &format!("{path}/requeue"), "Requeue", false)) }
                @if matches!(state, TaskState::Failed | TaskState::TimedOut) { (action(&csrf, &format!("{path}/retry"), "Retry", false)) }
            }
            h2 { "Runs" } (runs(record.runs.values(), shown))
            @if !record.attempts.is_empty() {
                h2 { "Attempts" } (runs(record.attempts.values(), shown))
            }
            @if !task.log.is_empty() {
                h2 { "Log (what the task logged)" }
                pre.log { @for line in &task.log { (line) "\n" } }
            }
            @if !record.late.is_empty() {
                h2 { "Late runs (finished after their node was declared lost)" }
                (runs(record.late.values(), shown))
            }
        }
    };
    Ok(shell(&format!("Task {id}"), body))
}

/// The page of a task without a record: where it waits, and a cancel button while it waits
/// or is delayed (an unknown task is 404 before).
fn unstarted(task: &TaskView, notice: &Notice, csrf: &Csrf) -> maud::Markup {
    let link = |queue: &Destination| {
        let name = queue.wire_name();
        html! { a href={ "/queues/" (encoded(&name)) } { (name) } }
    };
    let body = match &task.whereabouts {
        Some(Whereabouts::Waiting(queue)) => html! { p { "waiting in " (link(queue)) } },
        Some(Whereabouts::Delayed(queue, due)) => {
            html! { p { "delayed in " (link(queue)) " until " (time(Some(*due))) } }
        }
        Some(Whereabouts::Rejected(queue, reason)) => html! {
            p { "rejected into the dead letters of " (link(queue)) ": " span.bad { (reason) } }
        },
        None => html! { p { "state: " (task.state) } },
    };
    let cancel = format!("/tasks/{}/cancel", encoded(&task.id));
    let waits = matches!(
        task.whereabouts,
        Some(Whereabouts::Waiting(_) | Whereabouts::Delayed(..))
    );
    let body = html! {
        (notice.shown())
        (body)
        @if waits { p { (action(csrf, &cancel, "Cancel", false)) } }
    };
    shell(&format!("Task {}", task.id), body)
}

fn runs<'a>(runs: impl Iterator<Item = &'a RunRecord>, show_results: bool) -> Markup {
    html! {
        table {
            tr {
                th { "attempt" } th { "task" } th { "queue" } th { "node" } th { "state" }
                th { "published" } th { "started" } th { "finished" } th { "error" }
                @if show_results { th { "result" } }
            }
            @for run in runs {
                tr {
                    td.n { (run.attempt) } td { (run.task) } td { (run.queue) } td { (run.node) }
                    td { (run.state.as_str()) }
                    td { (time(Some(run.published_at))) } td { (time(run.started_at)) }
                    td { (time(run.finished_at)) }
                    td.bad { (run.error.as_deref().unwrap_or("")) }
                    @if show_results { td { (run.result.as_ref().map(ToString::to_string).unwrap_or_default()) } }
                }
            }
        }
    }
}

/// `POST /tasks/ID/cancel`: back to the task's page, which says the cancel was asked for (a
/// waiting or delayed task is recorded cancelled when a worker reaches it; a running one is
/// stopped by its node).
pub async fn cancel(State(web): crate::State, Path(id): Path<String>) -> Answer<Redirect> {
    let selector = CancelSelector::ids([id.clone()]);
    web.admin.cancel(selector, ANSWERS).await?;
    let said = "cancel requested: it will not start, or its node stops it";
    back(&format!("/tasks/{}?done={}", encoded(&id), encoded(said)))
}

/// `POST /tasks/ID/retry`: a failed task is published again with its own options.
pub async fn retry(State(web): crate::State, Path(id): Path<String>) -> Answer<Redirect> {
    web.admin.retry_task(&id).await?;
    back(&format!("/tasks/{}", encoded(&id)))
}

/// `POST /tasks/ID/requeue`: its dead letter goes back to its queue (404 when it has none).
pub async fn requeue(State(web): crate::State, Path(id): Path<String>) -> Answer<Redirect> {
    web.admin.requeue_dead_task(&id).await?;
    back(&format!("/tasks/{}", encoded(&id)))
}
