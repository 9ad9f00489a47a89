//! `/dead`: the dead letters of every queue that has some (one page each), with requeue and
//! delete per letter, for the letters ticked (a select-all box ticks the page), and purge
//! per queue (confirmed).

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
    Query(notice): Query<super::Notice>,
    Extension(csrf): Extension<Csrf>,
) -> Answer {
    let (admin, rows) = (&web.admin, web.config.page_size);
    let queues = match &cursor.queue {
        Some(name) => vec![admin.queue(name).await?],
        None => admin.queues().await?,
    };
    let mut sections = Vec::new();
    for queue in queues.into_iter().filter(|q| q.stats.dead > 0) {
        let after = cursor.after.as_deref().filter(|_| cursor.queue.is_some());
        let letters = (admin.dead_letters(&queue.stats.destination, after, rows)).await?;
        sections.push((queue.stats, letters));
    }
    let body = html! {
        (notice.shown())
        @if sections.is_empty() { p.muted { "No dead letters." } }
        @for (queue, letters) in &sections {
            @let name = queue.destination.wire_name();
            @let base = format!("/dead/{}", encoded(&name));
            h2 { (name) " · " (queue.dead) " dead" }
            p {
                (action(&csrf, &format!("{base}/requeue-all"), "Requeue all", true)) " "
                (action(&csrf, &format!("{base}/purge"), "Delete all", true))
            }
            form.bulk id={ "bulk-" (name) } method="post" action={ (base) "/selected" } {
                input type="hidden" name="csrf" value=(csrf.0);
                button type="submit" name="do" value="requeue" { "Requeue selected" } " "
                button type="submit" name="do" value="delete" { "Delete selected" }
            }
            table {
                tr {
                    th { input type="checkbox" data-select-all form={ "bulk-" (name) } aria-label="select all"; }
                    th { "task id" } th { "task" } th { "attempts" } th { "died" } th { "reason" } th {}
                }
                @for letter in letters {
                    @let at = format!("{base}/{}", encoded(&letter.entry_id));
                    tr {
                        td { input type="checkbox" name="entry" value=(letter.entry_id) form={ "bulk-" (name) }; }
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

/// `POST /dead/QUEUE/ENTRY/requeue` (404 when the letter is gone; 409 when it cannot be
/// requeued: unreadable, or signed and this server has no signing keys).
pub async fn requeue(
    State(web): crate::State,
    Path((queue, entry)): Path<(String, String)>,
) -> Answer<Redirect> {
    let destination = destination(&queue)?;
    match web.admin.requeue_dead(&destination, &entry).await {
        Ok(()) => back("/dead"),
        Err(error @ (stevedore::Error::Decode { .. } | stevedore::Error::Signature(_))) => {
            Err(Failure(
                StatusCode::CONFLICT,
                format!("dead letter {entry} stays: {error}"),
            ))
        }
        Err(error) => Err(error.into()),
    }
}

/// `POST /dead/QUEUE/ENTRY/delete` (404 when the letter is gone).
pub async fn delete(
    State(web): crate::State,
    Path((queue, entry)): Path<(String, String)>,
) -> Answer<Redirect> {
    web.admin.delete_dead(&destination(&queue)?, &entry).await?;
    back("/dead")
}

/// `POST /dead/QUEUE/requeue-all` (confirmed): every dead letter the queue holds now goes
/// back to it (the operator API's one rule: letters that die again meanwhile are left); those
/// that cannot (unreadable, or signed and this server has no keys) stay, and are counted in
/// the answer (409).
pub async fn requeue_all(
    State(web): crate::State,
    Path(queue): Path<String>,
    Form(form): Form<Confirmed>,
) -> Answer<Redirect> {
    form.required()?;
    let report = web.admin.requeue_all_dead(&destination(&queue)?).await?;
    match report.failed.first() {
        None => back("/dead"),
        Some((_, why)) => Err(Failure(
            StatusCode::CONFLICT,
            format!(
                "{} dead letter(s) were not requeued ({} were); the first: {why}",
                report.failed.len(),
                report.requeued.len()
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
    web.admin.purge_dead(&destination(&queue)?).await?;
    back("/dead")
}

/// `POST /dead/QUEUE/selected` with `do=requeue|delete` and an `entry` field per letter
/// ticked: acts on each, going on past those that cannot be; back to the queue's letters
/// saying how many were done, or 409 naming the first that could not be.
pub async fn selected(
    State(web): crate::State,
    Path(queue): Path<String>,
    body: axum::body::Bytes,
) -> Answer<Redirect> {
    let destination = destination(&queue)?;
    let (entries, action) = super::ticked(&body, "dead letter", "do")?;
    let action = action.unwrap_or_default();
    let (done, failed) = match action.as_str() {
        "requeue" => {
            let report = web
                .admin
                .requeue_dead_entries(&destination, &entries)
                .await?;
            (report.requeued.len(), report.failed)
        }
        "delete" => {
            let mut failed = Vec::new();
            for entry in &entries {
                if let Err(error) = web.admin.delete_dead(&destination, entry).await {
                    failed.push((entry.clone(), error.to_string()));
                }
            }
            (entries.len() - failed.len(), failed)
        }
        other => {
            return Err(Failure(
                StatusCode::BAD_REQUEST,
                format!("no bulk action `{other}`: requeue or delete"),
            ))
        }
    };
    match failed.first() {
        None => back(&format!(
            "/dead?queue={}&done={}",
            encoded(&queue),
            encoded(&format!("{done} {action}d"))
        )),
        Some((entry, why)) => Err(Failure(
            StatusCode::CONFLICT,
            format!(
                "{} of the selected were not {action}d ({done} were); {entry}: {why}",
                failed.len()
            ),
        )),
    }
}
