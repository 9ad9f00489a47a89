//! `/workflows`: the workflows that have not ended, most recently active first; and
//! `/workflows/ID`: one workflow's steps as a tree (chains, groups, chords and their links),
//! each with its state, its task (a link to its page), its arguments' shape, and its error
//! (results only where arguments may be shown).

use axum::extract::{Path, Query, State};
use maud::{html, Markup};
use stevedore::workflow::StepView;

use super::{args_link, encoded, Answer, ArgsToggle};
use crate::layout::{badge, page as shell, when};

/// `GET /workflows`.
pub async fn list(State(web): crate::State) -> Answer {
    let active = web.admin.active_workflows(web.config.page_size).await?;
    let now = stevedore::now_ms();
    let body = html! {
        section #workflows data-live {
            @if active.is_empty() { p.muted { "No workflow is running." } } @else {
                table {
                    tr { th { "workflow" } th { "last moved" } }
                    @for (id, at) in &active {
                        tr {
                            td { a href={ "/workflows/" (encoded(id)) } { code { (id) } } }
                            td { (when(*at, now)) }
                        }
                    }
                }
            }
        }
        p.muted { "Ended workflows are kept with their records; open one by its id: /workflows/ID." }
    };
    Ok(shell("Workflows", body))
}

/// `GET /workflows/ID`.
pub async fn page(
    State(web): crate::State,
    Path(id): Path<String>,
    Query(toggle): Query<ArgsToggle>,
) -> Answer {
    let shown = toggle.shown(&web)?;
    let view = web.admin.workflow(&id).await?;
    let path = format!("/workflows/{}", encoded(&id));
    let body = html! {
        (args_link(&web, &path, shown))
        section #workflow data-live {
            p { "status: " (badge(&view.status)) }
            ul.tree { (step(&view.root, shown)) }
        }
    };
    Ok(shell(&format!("Workflow {id}"), body))
}

/// One step and everything under and after it.
fn step(step: &StepView, results: bool) -> Markup {
    html! {
        li {
            @if step.kind == "task" {
                (badge(&step.state.replace(' ', "_"))) " "
                @match &step.id {
                    Some(id) => a href={ "/tasks/" (encoded(id)) } { (step.task.as_deref().unwrap_or("task")) },
                    None => (step.task.as_deref().unwrap_or("task")),
                }
                @if let Some(args) = &step.args { " " code { (args) } }
                @if let Some(error) = &step.error { " " span.bad { (error) } }
                @if results { @if let Some(result) = &step.result { " → " code { (result) } } }
            } @else {
                strong { (step.kind) } " " (badge(&step.state.replace(' ', "_")))
            }
            @if !step.children.is_empty() {
                ul { @for child in &step.children { (self::step(child, results)) } }
            }
            @for (kind, linked) in &step.links {
                ul { li { em { (kind.replace('_', " ")) } ul { (self::step(linked, results)) } } }
            }
        }
    }
}
