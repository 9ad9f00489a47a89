//! `/dead`: the dead letters of every queue that has some (one page each), with requeue and
//! delete per letter and purge per queue (confirmed).

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Redirect;
use axum::Form;
use maud::html;

use super::queue::Confirmed;
use super::{back, destination, encoded, Answer, Failure};
use crate::guard::Csrf;
use crate::layout::{action, page as shell, time};

/// `GET /dead`.
pub async fn page(
    State(web): crate::State,
    Query(cursor): Query<Cursor>,
    Extension(csrf): Extension<Csrf>,
) -> Answer {
    let broker = web.client.broker();
    let rows = web.config.page_size;
    let queues = web.client.queues().await?;
    let shown = |q: &stevedore::QueueStats| {
        q.dead > 0
            && cursor
                .queue
                .as_ref()
                .is_none_or(|name| *name == q.destination.wire_name())
    };
    let mut sections = Vec::new();
    for queue in queues.into_iter().filter(shown) {
        let after = cursor.after.as_deref().filter(|_| cursor.queue.is_some());
        let letters = broker
            .dead_letters_after(&queue.destination, after, rows)
            .await?;
        sections.push((queue, letters));
    }
    let body = html! {
        @if sections.is_empty() { p.muted { "No dead letters." } }
        @for (queue, letters) in &sections {
            @let name = queue.destination.wire_name();
            @let base = format!("/dead/{}", encoded(&name));
            h2 { (name) " · " (queue.dead) " dead" }
            p {
                (action(&csrf, &format!("{base}/requeue-all"), "Requeue all", true)) " "
                (action(&csrf, &format!("{base}/purge"), "Delete all", true))
            }
            table {
                tr { th { "task id" } th { "task" } th { "attempts" } th { "died" } th { "reason" } th {} }
                @for letter in letters {
                    @let at = format!("{base}/{}", encoded(&letter.entry_id));
                    tr {
                        td { @match &letter.id {
                            Some(id) => a href={ "/tasks/" (encoded(id)) } { (id) },
                            None => span.muted { "(unreadable)" },
                        } }
                        td { (letter.task.as_deref().unwrap_or("")) }
                        td.n { (letter.attempts.map(|a| a.to_string()).unwrap_or_default()) }
                        td { (time(Some(letter.dead_at))) }
                        td.bad { (letter.reason) }
                        td {
                            (action(&csrf, &format!("{at}/requeue"), "Requeue", false)) " "
                            (action(&csrf, &format!("{at}/delete"), "Delete", false))
                        }
                    }
                }
            }
            p {
                @if cursor.after.is_some() { a href={ "/dead?queue=" (encoded(&name)) } { "first page" } " " }
                @if letters.len() == rows {
                    @let last = letters.last().map_or("", |l| l.entry_id.as_str());
                    a href={ "/dead?queue=" (encoded(&name)) "&after=" (last) } { "next page" }
                }
            }
        }
    };
    Ok(shell("Dead letters", body))
}

/// Which dead letters a page shows: one queue's, after an entry (its next page).
#[derive(Debug, Default, serde::Deserialize)]
pub struct Cursor {
    /// Only this queue's letters.
    queue: Option<String>,
    /// Its letters after this entry.
    after: Option<String>,
}

/// `POST /dead/QUEUE/ENTRY/requeue`.
pub async fn requeue(
    State(web): crate::State,
    Path((queue, entry)): Path<(String, String)>,
) -> Answer<Redirect> {
    let destination = destination(&queue)?;
    if !web
        .client
        .broker()
        .requeue_dead(&destination, &entry)
        .await?
    {
        return Err(Failure(
            StatusCode::CONFLICT,
            format!("dead letter {entry} was not requeued: it is gone, or signed and this server has no signing keys"),
        ));
    }
    back("/dead")
}

/// `POST /dead/QUEUE/ENTRY/delete`.
pub async fn delete(
    State(web): crate::State,
    Path((queue, entry)): Path<(String, String)>,
) -> Answer<Redirect> {
    web.client
        .broker()
        .delete_dead(&destination(&queue)?, &entry)
        .await?;
    back("/dead")
}

/// Dead letters requeued per page of `POST /dead/QUEUE/requeue-all`.
const REQUEUE_PAGE: usize = 1000;

/// `POST /dead/QUEUE/requeue-all` (confirmed): every dead letter of the queue goes back to it;
/// those that cannot (unreadable, or signed and this server has no keys) stay, and are
/// counted in the answer (409).
pub async fn requeue_all(
    State(web): crate::State,
    Path(queue): Path<String>,
    Form(form): Form<Confirmed>,
) -> Answer<Redirect> {
    form.required()?;
    let destination = destination(&queue)?;
    let broker = web.client.broker();
    // Only the letters there now: a requeued task that dies again comes back with a newer
    // entry, which this loop must not requeue again.
    let Some(newest) = broker.newest_dead_letter(&destination).await? else {
        return back("/dead");
    };
    let (mut after, mut stayed) = (None::<String>, 0);
    'pages: loop {
        let letters = broker
            .dead_letters_after(&destination, after.as_deref(), REQUEUE_PAGE)
            .await?;
        let Some(last) = letters.last() else { break };
        after = Some(last.entry_id.clone());
        for letter in &letters {
            match broker.requeue_dead(&destination, &letter.entry_id).await {
                Ok(true) => {}
                // Unreadable, or signed and this server has no keys: it stays, counted.
                Ok(false)
                | Err(stevedore::Error::Decode { .. } | stevedore::Error::Signature(_)) => {
                    stayed += 1
                }
                Err(error) => return Err(error.into()),
            }
            if letter.entry_id == newest {
                break 'pages;
            }
        }
    }
    match stayed {
        0 => back("/dead"),
        n => Err(Failure(
            StatusCode::CONFLICT,
            format!(
                "{n} dead letters were not requeued: signed, and this server has no signing keys"
            ),
        )),
    }
}

/// `POST /dead/QUEUE/purge` (confirmed).
pub async fn purge(
    State(web): crate::State,
    Path(queue): Path<String>,
    Form(form): Form<Confirmed>,
) -> Answer<Redirect> {
    form.required()?;
    web.client
        .broker()
        .purge_dead(&destination(&queue)?)
        .await?;
    back("/dead")
}
