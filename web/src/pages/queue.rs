//! `/queues/NAME`: a queue's counts and its waiting, running, delayed and dead tasks (one
//! page of each); pause, resume, purge.

use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::response::Redirect;
use axum::Form;
use maud::{html, Markup};
use stevedore::admin::Listed;

use super::{args_link, back, encoded, Answer, ArgsToggle};
use crate::guard::Csrf;
use crate::layout::{action, page as shell, time};

/// How long a pause or resume waits for the nodes to take it in.
const TAKE_IN: Duration = Duration::from_secs(2);

/// `GET /queues/NAME`.
pub async fn page(
    State(web): crate::State,
    Path(name): Path<String>,
    Query(toggle): Query<ArgsToggle>,
    Query(cursor): Query<Cursor>,
    Extension(csrf): Extension<Csrf>,
) -> Answer<axum::response::Response> {
    use axum::response::IntoResponse as _;
    let shown = toggle.shown(&web)?;
    let tab = cursor.tab()?;
    if tab == Some("dead") {
        let dead = format!("/dead?queue={}", encoded(&name));
        return Ok(Redirect::to(&dead).into_response());
    }
    let view = web.admin.queue(&name).await?;
    let (queue, admin) = (&view.stats.destination, &web.admin);
    let rows = web.config.page_size;
    let from = cursor.delayed_from.unwrap_or(0);
    let (waiting, running, delayed) = tokio::try_join!(
        admin.waiting(queue, cursor.waiting_after.as_deref(), rows),
        admin.running(queue, rows),
        admin.delayed(queue, from, rows),
    )?;
    let path = format!("/queues/{}", encoded(&name));
    let (info, is_paused) = (&view.stats, view.paused);
    let body = html! {
        section #counts data-live {
            p {
                (info.waiting) " waiting · " (info.running) " running · " (info.delayed)
                " delayed · " a href={ "/dead?queue=" (encoded(&name)) } { (info.dead) " dead" }
                @if is_paused { " · " span.bad { "paused" } }
            }
        }
        p {
            @if is_paused { (action(&csrf, &format!("{path}/resume"), "Resume", false)) }
            @else { (action(&csrf, &format!("{path}/pause"), "Pause", false)) }
            " " (action(&csrf, &format!("{path}/purge"), "Purge waiting and delayed", true))
        }
        (args_link(&web, &path, shown))
        (tabs(&path, &name, tab))
        section #lists data-live {
            @if tab.is_none() || tab == Some("running") {
                h2 { "Running" } (listed(&running, "consumer", shown))
            }
            @if tab.is_none() || tab == Some("waiting") {
                h2 { "Waiting (oldest first)" } (listed(&waiting, "", shown))
                (pages(&path, shown, cursor.waiting_after.is_some(), (waiting.len() == rows)
                    .then(|| cursor.with_waiting_after(waiting.last().map(|t| t.entry_id.as_str())))))
            }
            @if tab.is_none() || tab == Some("delayed") {
                h2 { "Delayed (soonest first)" } (listed(&delayed, "due", shown))
            }
            @if tab == Some("retrying") {
                @let retrying: Vec<Listed> = delayed.iter()
                    .filter(|t| t.message.as_ref().is_some_and(|m| m.tried > 0)).cloned().collect();
                h2 { "Retrying (soonest first)" } (listed(&retrying, "due", shown))
            }
            @if matches!(tab, None | Some("delayed") | Some("retrying")) {
                (pages(&path, shown, from > 0, (delayed.len() == rows)
                    .then(|| cursor.with_delayed_from(from + rows))))
            }
        }
    };
    Ok(shell(&format!("Queue {name}"), body).into_response())
}

/// A table of listed tasks; `extra`: the column beside id and task (`due`, `consumer`);
/// `args`: with their arguments.
fn listed(tasks: &[Listed], extra: &str, args: bool) -> Markup {
    html! {
        @if tasks.is_empty() { p.muted { "none" } } @else {
            table {
                tr {
                    th { "id" } th { "task" } th { "published" }
                    @if !extra.is_empty() { th { (extra) } }
                    @if extra == "due" { th { "why" } }
                    @if args { th { "arguments" } }
                }
                @for task in tasks {
                    @let message = task.message.as_ref();
                    tr {
                        td { @match message {
                            Some(m) => a href={ "/tasks/" (encoded(&m.id)) } { (m.id) },
                            None => span.bad { "unreadable entry " (task.entry_id) },
                        } }
                        td { (message.map_or("", |m| m.task.as_str())) }
                        td { (time(message.map(|m| m.published_at))) }
                        @if extra == "due" { td { (time(task.due_ms)) } td { (delay_reason(message)) } }
                        @if extra == "consumer" { td { (task.consumer.as_deref().unwrap_or("-")) } }
                        @if args { td { code { (message.map(arguments).unwrap_or_default()) } } }
                    }
                }
            }
        }
    }
}

/// Where a queue page's lists start (the next pages of waiting and delayed tasks).
#[derive(Debug, Default, serde::Deserialize)]
pub struct Cursor {
    /// Waiting tasks after this entry.
    waiting_after: Option<String>,
    /// Delayed tasks from this position (0: the one due first).
    delayed_from: Option<usize>,
    /// Only one list: `running`, `waiting`, `delayed`, `retrying` (delayed retries) or `dead`.
    state: Option<String>,
}

/// The lists a queue page can show alone.
const TABS: [&str; 5] = ["running", "waiting", "delayed", "retrying", "dead"];

impl Cursor {
    /// The list asked for alone, or every list; 400 for a state that is not a list.
    fn tab(&self) -> Answer<Option<&'static str>> {
        match self.state.as_deref() {
            None | Some("") => Ok(None),
            Some(state) => TABS
                .iter()
                .find(|t| **t == state)
                .map(|t| Some(*t))
                .ok_or_else(|| {
                    super::Failure(
                        axum::http::StatusCode::BAD_REQUEST,
                        format!("no list `{state}`: give one of {}", TABS.join(", ")),
                    )
                }),
        }
    }

    /// The query of the next page of waiting tasks (the delayed list stays where it is).
    fn with_waiting_after(&self, last: Option<&str>) -> String {
        let from = self.delayed_from.unwrap_or(0);
        let query = format!("waiting_after={}&delayed_from={from}", last.unwrap_or(""));
        self.keeping_tab(query)
    }

    /// `query` with this page's list (`state`), so that paging stays in it.
    fn keeping_tab(&self, query: String) -> String {
        match self.tab().ok().flatten() {
            Some(tab) => format!("{query}&state={tab}"),
            None => query,
        }
    }

    /// The query of the next page of delayed tasks (the waiting list stays where it is).
    fn with_delayed_from(&self, from: usize) -> String {
        let query = match &self.waiting_after {
            Some(after) => format!("delayed_from={from}&waiting_after={after}"),
            None => format!("delayed_from={from}"),
        };
        self.keeping_tab(query)
    }
}

/// The links to each list alone, the current one in bold.
fn tabs(path: &str, name: &str, tab: Option<&str>) -> Markup {
    html! {
        p.tabs {
            @if tab.is_none() { strong { "all" } } @else { a href=(path) { "all" } }
            @for t in TABS {
                " · "
                @if tab == Some(t) { strong { (t) } }
                @else if t == "dead" { a href={ "/dead?queue=" (encoded(name)) } { (t) } }
                @else { a href={ (path) "?state=" (t) } { (t) } }
            }
        }
    }
}

/// The "first page" and "next page" links of a list on `path`: `next` is the query of the
/// next page, when the list was full.
fn pages(path: &str, args: bool, paged: bool, next: Option<String>) -> Markup {
    let keep = if args { "args=1&" } else { "" };
    html! {
        @if paged || next.is_some() {
            p {
                @if paged { a href={ (path) "?" (keep) } { "first page" } " " }
                @if let Some(next) = next { a href={ (path) "?" (keep) (next) } { "next page" } }
            }
        }
    }
}

/// Why a delayed task waits: a retry (which, of how many), its limit (a run that found every
/// permit held, or over its rate, waits in the delayed set for its turn), or its eta.
fn delay_reason(message: Option<&stevedore::Message>) -> String {
    let Some(m) = message else {
        return String::new();
    };
    match (m.tried, m.retries, &m.limit) {
        (0, _, _) if m.eta.is_some() => "eta".to_owned(),
        (0, _, Some(limit)) => format!("waiting for limit {limit}"),
        (0, _, None) => "waiting for its task's limit".to_owned(),
        (tried, Some(left), _) => format!("retry {tried} of {}", tried.saturating_add(left)),
        (tried, None, _) => format!("retry {tried}"),
    }
}

/// A call's arguments as JSON-like text: `[1, 2] {"n": 3}`.
fn arguments(message: &stevedore::Message) -> String {
    let args: Vec<String> = message.args.iter().map(ToString::to_string).collect();
    let mut text = format!("[{}]", args.join(", "));
    if !message.kwargs.is_empty() {
        let kwargs: Vec<String> = (message.kwargs.iter())
            .map(|(k, v)| format!("{k:?}: {v}"))
            .collect();
        text += &format!(" {{{}}}", kwargs.join(", "));
    }
    text
}

/// `POST /queues/NAME/pause`.
pub async fn pause(State(web): crate::State, Path(name): Path<String>) -> Answer<Redirect> {
    paused(&web, &name, true).await
}

/// `POST /queues/NAME/resume`.
pub async fn resume(State(web): crate::State, Path(name): Path<String>) -> Answer<Redirect> {
    paused(&web, &name, false).await
}

async fn paused(web: &crate::Web, name: &str, paused: bool) -> Answer<Redirect> {
    web.admin.pause_queue(name, paused, TAKE_IN).await?;
    back(&format!("/queues/{}", encoded(name)))
}

/// The confirmation box of dangerous actions.
#[derive(Debug, serde::Deserialize)]
pub struct Confirmed {
    /// `yes` when ticked.
    #[serde(default)]
    confirm: String,
}

impl Confirmed {
    /// 400 unless the box was ticked.
    pub fn required(&self) -> Answer<()> {
        match self.confirm.as_str() {
            "yes" => Ok(()),
            _ => Err(super::Failure(
                axum::http::StatusCode::BAD_REQUEST,
                "tick the confirmation box to do this".into(),
            )),
        }
    }
}

/// `POST /queues/NAME/purge` (confirmed): deletes what waits and what is delayed.
pub async fn purge(
    State(web): crate::State,
    Path(name): Path<String>,
    Form(form): Form<Confirmed>,
) -> Answer<Redirect> {
    form.required()?;
    web.admin.purge_queue(&name, true).await?;
    back(&format!("/queues/{}", encoded(&name)))
}
