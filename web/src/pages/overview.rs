//! `/`: every queue with its counts, runs settled per minute over the last half hour (an SVG
//! chart), the nodes, and the beat leader; all of it refreshes live.

use axum::extract::{Extension, State};
use maud::{html, Markup};
use stevedore::admin::{NodeCounts, QueueView};

use super::{encoded, Answer};
use crate::guard::Csrf;
use crate::layout::{age, page as shell};

/// Minutes the throughput chart shows.
const CHART_MINUTES: u64 = 30;

/// `GET /`: the overview.
pub async fn page(State(web): crate::State, Extension(csrf): Extension<Csrf>) -> Answer {
    let overview = web.admin.overview(CHART_MINUTES).await?;
    let (queues, nodes, leader) = (&overview.queues, &overview.nodes, &overview.beat_leader);
    let now = stevedore::now_ms();
    let counts = NodeCounts::of(nodes);
    let body = html! {
        section #queues data-live {
            h2 { "Queues" }
            (queue_table(queues, now))
        }
        section #throughput data-live {
            h2 { "Throughput (runs settled per minute)" }
            (crate::chart::throughput(&overview.throughput))
        }
        section #cluster data-live {
            h2 { "Nodes" }
            p { (counts.live) " live, " (counts.lost) " lost · " a href="/nodes" { "what they run" } }
            (super::nodes::heartbeats(nodes, &csrf, now))
            h2 { "Beat" }
            p {
                @match leader {
                    Some(leader) => { "leader: " code { (leader) } }
                    None => span.bad { "no beat holds the lease: schedules are not firing" },
                }
            }
        }
    };
    Ok(shell("Overview", body))
}

fn queue_table(queues: &[QueueView], now: u64) -> Markup {
    html! {
        table {
            tr {
                th { "queue" } th { "waiting" } th { "running" } th { "delayed" } th { "dead" }
                th { "paused" } th { "oldest waiting" }
            }
            @for q in queues {
                @let (name, s) = (q.name(), &q.stats);
                tr {
                    td { a href={ "/queues/" (encoded(&name)) } { (name) } }
                    td.n { (s.waiting) } td.n { (s.running) } td.n { (s.delayed) }
                    td.n { (s.dead) }
                    td { @if q.paused { span.bad { "paused" } } @else { "no" } }
                    td { (age(s.oldest_waiting_at, now)) }
                }
            }
        }
    }
}
