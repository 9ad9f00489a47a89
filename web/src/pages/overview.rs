//! `/`: every queue with its counts, runs settled per minute over the last half hour (an SVG
//! chart), the nodes, and the beat leader; all of it refreshes live.

use axum::extract::{Extension, State};
use maud::{html, Markup};
use stevedore::QueueStats;

use super::{encoded, Answer};
use crate::guard::Csrf;
use crate::layout::{age, page as shell};

/// Minutes the throughput chart shows.
const CHART_MINUTES: u64 = 30;

/// `GET /`: the overview.
pub async fn page(State(web): crate::State, Extension(csrf): Extension<Csrf>) -> Answer {
    let client = &web.client;
    let broker = client.broker();
    let (queues, paused, nodes, leader, throughput) = tokio::try_join!(
        client.queues(),
        broker.paused_queues(),
        client.nodes(broker.config().lost_after),
        broker.beat_leader(),
        broker.throughput(CHART_MINUTES),
    )?;
    let now = stevedore::now_ms();
    let live = nodes.iter().filter(|n| !n.lost).count();
    let body = html! {
        section #queues data-live {
            h2 { "Queues" }
            (queue_table(&queues, &paused, now))
        }
        section #throughput data-live {
            h2 { "Throughput (runs settled per minute)" }
            (crate::chart::throughput(&throughput))
        }
        section #cluster data-live {
            h2 { "Nodes" }
            p { (live) " live, " (nodes.len() - live) " lost · " a href="/nodes" { "what they run" } }
            (super::nodes::heartbeats(&nodes, &csrf, now))
            h2 { "Beat" }
            p {
                @match &leader {
                    Some(leader) => { "leader: " code { (leader) } }
                    None => span.bad { "no beat holds the lease: schedules are not firing" },
                }
            }
        }
    };
    Ok(shell("Overview", body))
}

fn queue_table(queues: &[QueueStats], paused: &[String], now: u64) -> Markup {
    html! {
        table {
            tr {
                th { "queue" } th { "waiting" } th { "running" } th { "delayed" } th { "dead" }
                th { "paused" } th { "oldest waiting" }
            }
            @for q in queues {
                @let name = q.destination.wire_name();
                tr {
                    td { a href={ "/queues/" (encoded(&name)) } { (name) } }
                    td.n { (q.waiting) } td.n { (q.running) } td.n { (q.delayed) }
                    td.n { (q.dead) }
                    td { @if paused.contains(&name) { span.bad { "paused" } } @else { "no" } }
                    td { (age(q.oldest_waiting_at, now)) }
                }
            }
        }
    }
}
