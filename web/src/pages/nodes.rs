//! `/nodes`: every worker process, live or lost (state, pool use, version, queues, last
//! work; a lost one with when and how much was reaped) with a reload button per live node, and what each pool runs now (asked of the nodes with
//! a `status` control request, answered within a second) with a cancel button per task.

use std::time::Duration;

use axum::extract::{Extension, Path, State};
use axum::response::Redirect;
use maud::{html, Markup};
use stevedore::admin::NodeView;
use stevedore::control::{Answer as Said, Command, NodeAnswer, Target};

use super::{back, encoded, Answer};
use crate::guard::Csrf;
use crate::layout::{action, age, page as shell};

/// How long the page waits for the nodes' status answers.
const ANSWERS: Duration = Duration::from_secs(1);

/// `GET /nodes`.
pub async fn page(State(web): crate::State, Extension(csrf): Extension<Csrf>) -> Answer {
    let (nodes, answers) = tokio::try_join!(
        web.admin.nodes(),
        web.admin.ask(Target::All, Command::Status, ANSWERS),
    )?;
    let now = stevedore::now_ms();
    let body = html! {
        section #nodes data-live { (heartbeats(&nodes, &csrf, now)) }
        h2 { "Running now" }
        section #running data-live { (running(&answers, &csrf, now)) }
    };
    Ok(shell("Nodes", body))
}

/// The table of worker processes, live and lost, with a reload button per live one.
pub fn heartbeats(nodes: &[NodeView], csrf: &Csrf, now: u64) -> Markup {
    html! {
        table {
            tr {
                th { "node" } th { "process" } th { "state" } th { "units busy / capacity" } th { "pool" }
                th { "version" } th { "queues" } th { "last heartbeat" } th { "last work" } th {}
            }
            @for node in nodes {
                @let beat = &node.beat;
                tr.lost[node.is_lost()] {
                    td { (beat.node) } td { (beat.pid) }
                    td {
                        @if let (Some(at), Some(reaped)) = (node.lost_at, node.reaped) {
                            span.bad { "lost" } " " (age(Some(at), now)) " ago, "
                            (reaped) " reaped"
                        }
                        @else if !beat.consuming { span.bad { "not consuming" } }
                        @else { span.ok { "live" } }
                    }
                    td.n { (beat.busy) " / " (beat.max_workers) }
                    td { (beat.pool) } td { (beat.version) } td { (beat.queues.join(", ")) }
                    td { @if let Some(at) = node.beat_at { (age(Some(at), now)) " ago" } @else { "-" } }
                    td { (age(beat.last_work_at, now)) }
                    td { @if !node.is_lost() { (action(csrf, &format!("/nodes/{}/reload", encoded(&beat.node)), "Reload", false)) } }
                }
            }
        }
    }
}

fn running(answers: &[NodeAnswer], csrf: &Csrf, now: u64) -> Markup {
    html! {
        table {
            tr { th { "node" } th { "worker" } th { "task" } th { "call" } th { "running for" } th {} }
            @for answer in answers {
                @match answer {
                    NodeAnswer::Answered(reply) => @if let Said::Status(status) = &reply.answer {
                        @for worker in &status.workers {
                            @if let Some(task) = &worker.current {
                                tr {
                                    td { (reply.node) } td.n { (worker.id) }
                                    td { a href={ "/tasks/" (encoded(&task.id)) } { (task.id) } }
                                    td { (task.shape) }
                                    td { (age(Some(task.since_ms), now)) }
                                    td { (action(csrf, &format!("/tasks/{}/cancel", encoded(&task.id)), "Cancel", false)) }
                                }
                            }
                        }
                    },
                    NodeAnswer::NotAnswering(node) => tr { td { (node) } td.bad colspan="5" { "did not answer in time" } },
                    NodeAnswer::Lost(node) => tr { td { (node) } td.muted colspan="5" { "lost: not asked" } },
                }
            }
        }
    }
}

/// `POST /nodes/NODE/reload`: recycles the node's workers (each finishes its task first).
pub async fn reload(State(web): crate::State, Path(node): Path<String>) -> Answer<Redirect> {
    web.admin
        .ask(Target::Node(node), Command::Reload, ANSWERS)
        .await?;
    back("/nodes")
}
