//! `/tasks?state=failed&queue=Q&task=NAME&since=1h&error=TEXT&before=MS`: finished tasks
//! found in the history, across queues, newest first, a page at a time (what `stevedore
//! tasks` prints). `/tasks?id=ID` goes to that task's page.

use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use stevedore::admin::{history_state, TaskPage, TaskQuery, HISTORY_STATES};
use stevedore::TaskState;

use super::{encoded, Answer, Failure};
use crate::guard::Csrf;
use crate::layout::{badge, page as shell, when};

/// The search's query string; every field optional.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct Search {
    #[serde(default)]
    id: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    queue: String,
    #[serde(default)]
    task: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    before: Option<u64>,
    /// Rows per page (the API's `limit`; the page uses the dashboard's page size).
    #[serde(default)]
    pub limit: Option<usize>,
}

impl Search {
    /// The operator API's query for this search (failed tasks when no state is given).
    pub fn query(&self, limit: usize) -> Answer<TaskQuery> {
        let state = match self.state.as_str() {
            "" => stevedore::TaskState::Failed,
            name => history_state(name)?,
        };
        let given = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
        let since = match given(&self.since) {
            Some(text) => Some(stevedore_duration(&text)?),
            None => None,
        };
        Ok(TaskQuery {
            state,
            queue: given(&self.queue),
            task: given(&self.task),
            since,
            error: given(&self.error),
            before_ms: self.before,
            limit,
        })
    }

    /// This search's path, for coming back after an action.
    fn back(&self) -> String {
        let pairs = [
            ("state", &self.state),
            ("queue", &self.queue),
            ("task", &self.task),
            ("since", &self.since),
            ("error", &self.error),
        ];
        let given = pairs.iter().filter(|(_, v)| !v.is_empty());
        let query: Vec<String> = given.map(|(n, v)| format!("{n}={}", encoded(v))).collect();
        format!("/tasks?{}", query.join("&"))
    }

    /// This search's path with `before` set to `next` (the next page).
    fn next_page(&self, next: u64) -> String {
        format!("{}&before={next}", self.back())
    }
}

/// A duration of the search form (`15m`, `1h`, `2d`), or 400 saying why not.
fn stevedore_duration(text: &str) -> Answer<std::time::Duration> {
    stevedore::admin::format::parse_duration(text)
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, format!("since: {e}")))
}

/// `GET /tasks`.
pub async fn page(
    State(web): crate::State,
    Query(search): Query<Search>,
    Query(notice): Query<super::Notice>,
    Extension(csrf): Extension<Csrf>,
) -> Answer<Response> {
    if !search.id.trim().is_empty() {
        let to = format!("/tasks/{}", encoded(search.id.trim()));
        return Ok(Redirect::to(&to).into_response());
    }
    let query = search.query(web.config.page_size)?;
    let found = web.admin.tasks(&query).await?;
    let retryable = matches!(query.state, TaskState::Failed | TaskState::TimedOut);
    let body = html! {
        (notice.shown())
        (form(&search, query.state.as_str()))
        @if retryable && !found.rows.is_empty() {
            form.bulk #bulk-tasks method="post" action="/tasks/retry" {
                input type="hidden" name="csrf" value=(csrf.0);
                input type="hidden" name="back" value=(search.back());
                button type="submit" { "Retry selected" }
            }
        }
        section #found data-live { (table(&found, retryable)) }
        @if let Some(next) = found.next {
            p { a href=(search.next_page(next)) { "older →" } }
        }
    };
    let title = format!("Tasks: {}", query.state.as_str());
    Ok(shell(&title, body).into_response())
}

/// The search form, filled with what was searched.
fn form(search: &Search, state: &str) -> Markup {
    html! {
        form.search method="get" action="/tasks" {
            label { "state " select name="state" {
                @for s in HISTORY_STATES {
                    option value=(s.as_str()) selected[s.as_str() == state] { (s.as_str()) }
                }
            } }
            label { " queue " input name="queue" value=(search.queue) size="10"; }
            label { " task " input name="task" value=(search.task) size="16"; }
            label { " within " input name="since" value=(search.since) size="4" placeholder="1h"; }
            label { " error contains " input name="error" value=(search.error) size="16"; }
            " " button type="submit" { "Search" }
        }
    }
}

/// The rows found (a box to tick each when they can be retried), and what was passed over.
fn table(found: &TaskPage, retryable: bool) -> Markup {
    let now = stevedore::now_ms();
    html! {
        @if found.rows.is_empty() { p.muted { "no such tasks in the history" } } @else {
            table {
                tr {
                    @if retryable { th { input type="checkbox" data-select-all form="bulk-tasks" aria-label="select all"; } }
                    th { "finished" } th { "state" } th { "id" } th { "task" } th { "queue" }
                    th { "node" } th.n { "attempt" } th { "error" }
                }
                @for row in &found.rows {
                    @let run = &row.run;
                    tr {
                        @if retryable { td { input type="checkbox" name="entry" value=(run.id) form="bulk-tasks"; } }
                        td { (when(row.finished_at, now)) }
                        td { (badge(run.state.as_str())) }
                        td { a href={ "/tasks/" (encoded(&run.id)) } { code { (run.id) } } }
                        td { (run.task) }
                        td { a href={ "/queues/" (encoded(&run.queue)) } { (run.queue) } }
                        td { (run.node) }
                        td.n { (run.attempt) }
                        td.bad { (run.error.as_deref().and_then(|e| e.lines().next()).unwrap_or("")) }
                    }
                }
            }
        }
        @if found.expired > 0 {
            p.muted {
                (found.expired) " more passed over: their records expired (successes nobody \
                 waits for are kept for the workers' --succeeded-ttl, 30 s by default)"
            }
        }
    }
}

/// `POST /tasks/retry` with an `entry` field per task ticked (and `back`, the search to
/// return to): retries each, going on past those that cannot be; back to the search saying
/// how many were retried, or 409 naming the first that could not be.
pub async fn retry_selected(State(web): crate::State, body: axum::body::Bytes) -> Answer<Redirect> {
    let (ids, back) = super::ticked(&body, "task", "back")?;
    // Only a path of this dashboard: never a redirect elsewhere.
    let back =
        (back.filter(|b| b.starts_with("/tasks?"))).unwrap_or_else(|| "/tasks?state=failed".into());
    let mut failed = Vec::new();
    for id in &ids {
        if let Err(error) = web.admin.retry_task(id).await {
            failed.push((id, error));
        }
    }
    match failed.first() {
        None => super::back(&format!(
            "{back}&done={}",
            encoded(&format!("{} retried", ids.len()))
        )),
        Some((id, why)) => Err(Failure(
            StatusCode::CONFLICT,
            format!(
                "{} of the selected were not retried ({} were); {id}: {why}",
                failed.len(),
                ids.len() - failed.len()
            ),
        )),
    }
}
