//! `/nodes`: every worker process by its heartbeat: node, state, pool use, version, queues,
//! last work; refreshed live.

use axum::extract::State;
use maud::html;

use super::Answer;
use crate::layout::{age, page as shell};

/// `GET /nodes`.
pub async fn page(State(web): crate::State) -> Answer {
    let lost_after = web.client.broker().config().lost_after;
    let nodes = web.client.nodes(lost_after).await?;
    let now = stevedore::now_ms();
    let body = html! {
        section #nodes data-live {
            table {
                tr {
                    th { "node" } th { "process" } th { "state" } th { "busy / slots" }
                    th { "pool" } th { "version" } th { "queues" } th { "last heartbeat" }
                    th { "last work" }
                }
                @for node in &nodes {
                    @let beat = &node.beat;
                    tr {
                        td { (beat.node) } td { (beat.pid) }
                        td {
                            @if node.lost { span.bad { "lost" } }
                            @else if !beat.consuming { span.bad { "not consuming" } }
                            @else { span.ok { "live" } }
                        }
                        td.n { (beat.busy) " / " (beat.max_workers) }
                        td { (beat.pool) } td { (beat.version) }
                        td { (beat.queues.join(", ")) }
                        td { (age(Some(node.beat_at), now)) " ago" }
                        td { (age(beat.last_work_at, now)) }
                    }
                }
            }
        }
    };
    Ok(shell("Nodes", body))
}
