//! `/limits`: every cluster-wide limit (`stevedore limit set`) with its rate, burst and
//! concurrency, the permits held now and the runs waiting for one; a damaged definition is
//! named, the rest listed.

use axum::extract::State;
use maud::html;

use super::Answer;
use crate::layout::page as shell;

/// `GET /limits`.
pub async fn page(State(web): crate::State) -> Answer {
    let (limits, unreadable) = web.admin.limits().await?;
    let body = html! {
        section #limits data-live {
            @if limits.is_empty() && unreadable.is_empty() {
                p.muted { "no limits (define one with " code { "stevedore limit set NAME 100/s" } ")" }
            } @else {
                table {
                    tr {
                        th { "limit" } th { "rate" } th.n { "burst" } th.n { "concurrency" }
                        th.n { "held" } th.n { "waiting" }
                    }
                    @for info in &limits {
                        @let rate = info.spec.rate;
                        tr {
                            td { (info.name) }
                            td { (rate.map(|r| r.to_string()).unwrap_or_else(|| "-".into())) }
                            td.n { (rate.map(|r| r.burst.to_string()).unwrap_or_else(|| "-".into())) }
                            td.n { (info.spec.concurrency.map(|c| c.to_string()).unwrap_or_else(|| "-".into())) }
                            td.n { (info.held) }
                            td.n {
                                @if info.waiting > 0 { span.bad { (info.waiting) } } @else { "0" }
                            }
                        }
                    }
                }
            }
            @for (name, why) in &unreadable {
                p.bad { "limit " (name) " cannot be read: " (why) }
            }
        }
    };
    Ok(shell("Limits", body))
}
