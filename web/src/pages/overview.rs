//! `/`: every queue with its counts, runs per minute over the last hour (succeeded and
//! failed, an SVG chart with axes), each task's runs, failures and p50/p95 run time over the
//! hour, the nodes, and the beat leader; all of it refreshes live.

use axum::extract::{Extension, State};
use maud::{html, Markup};
use stevedore::admin::{NodeCounts, QueueMinutes, QueueView, TaskMinutes};

use super::{encoded, Answer};
use crate::guard::Csrf;
use crate::layout::{age, page as shell};

/// Minutes the chart and the task table cover.
const CHART_MINUTES: u64 = 60;

/// `GET /`: the overview.
pub async fn page(State(web): crate::State, Extension(csrf): Extension<Csrf>) -> Answer {
    let (overview, tasks, depths) = tokio::try_join!(
        web.admin.overview(CHART_MINUTES),
        web.admin.task_minutes(CHART_MINUTES),
        web.admin.queue_minutes(CHART_MINUTES),
    )?;
    let (queues, nodes, leader) = (&overview.queues, &overview.nodes, &overview.beat_leader);
    let now = stevedore::now_ms();
    let counts = NodeCounts::of(nodes);
    let body = html! {
        section #queues data-live {
            h2 { "Queues" }
            (queue_table(queues, now))
        }
        section #throughput data-live {
            h2 { "Runs per minute" }
            (crate::chart::runs_per_minute(&chart_minutes(&tasks)))
            h2 { "Tasks over the last hour" }
            (task_table(&tasks))
            h2 { "Queues over the last hour" }
            (depth_table(&depths))
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

/// The chart's minutes: (minute, succeeded, failed) summed over task names.
fn chart_minutes(tasks: &TaskMinutes) -> Vec<crate::chart::Minute> {
    (tasks.per_minute.iter())
        .map(|(minute, names)| {
            let (ok, bad) =
                (names.values()).fold((0, 0), |(o, b), m| (o + m.succeeded, b + m.failed));
            (*minute, ok, bad)
        })
        .collect()
}

/// Each task name's runs, failures and run-time quantiles over the chart's hour (Sidekiq's
/// Metrics page): the upper bound of the bucket the quantile falls in.
fn task_table(tasks: &TaskMinutes) -> Markup {
    let quantile = |ms: Option<u64>| match ms {
        None => "-".to_owned(),
        Some(u64::MAX) => "> 1h".to_owned(),
        Some(ms) => format!("≤ {}", stevedore::admin::format::short_age(ms)),
    };
    html! {
        @if tasks.total.is_empty() { p.muted { "no runs ended in the last hour" } } @else {
            table {
                tr { th { "task" } th.n { "runs" } th.n { "failed" } th.n { "p50" } th.n { "p95" } }
                @for (name, m) in &tasks.total {
                    tr {
                        td { a href={ "/tasks?state=failed&task=" (encoded(name)) } { (name) } }
                        td.n { (m.runs) }
                        td.n { @if m.failed > 0 { span.bad { (m.failed) } } @else { "0" } }
                        td.n { (quantile(m.quantile_ms(0.5))) }
                        td.n { (quantile(m.quantile_ms(0.95))) }
                    }
                }
            }
        }
    }
}

/// Each sampled queue's waiting tasks per minute over the hour (a line), now and at its
/// peak, and the oldest waiting task's age now and at its peak.
fn depth_table(minutes: &[QueueMinutes]) -> Markup {
    let mut names: Vec<&String> = minutes.iter().flat_map(|(_, q)| q.keys()).collect();
    names.sort();
    names.dedup();
    let ms = stevedore::admin::format::short_age;
    html! {
        @if names.is_empty() { p.muted { "no samples yet (each worker samples its queues once a minute)" } } @else {
            table {
                tr {
                    th { "queue" } th { "waiting, last hour" } th.n { "now" } th.n { "peak" }
                    th.n { "oldest now" } th.n { "oldest peak" }
                }
                @for name in names {
                    @let samples: Vec<_> = minutes.iter().map(|(_, q)| q.get(name).copied()).collect();
                    @let last = samples.iter().rev().flatten().next().copied().unwrap_or_default();
                    @let peak = samples.iter().flatten().map(|s| s.waiting).max().unwrap_or(0);
                    @let oldest = samples.iter().flatten().map(|s| s.oldest_age_ms).max().unwrap_or(0);
                    @let line: Vec<Option<u64>> = samples.iter().map(|s| s.map(|s| s.waiting)).collect();
                    tr {
                        td { a href={ "/queues/" (encoded(name)) } { (name) } }
                        td { (crate::chart::sparkline(&line, &format!("{name}: waiting per minute, peak {peak}"))) }
                        td.n { (last.waiting) } td.n { (peak) }
                        td.n { (ms(last.oldest_age_ms)) } td.n { (ms(oldest)) }
                    }
                }
            }
        }
    }
}
