//! One module per page, with the actions posted under its path.

pub mod dead;
pub mod limits;
pub mod nodes;
pub mod overview;
pub mod queue;
pub mod schedule_form;
pub mod schedules;
pub mod task;
pub mod tasks;
pub mod workflows;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use stevedore::Destination;

use crate::layout;

/// What a page or action answers when it fails: the page shell with one line saying why.
pub struct Failure(StatusCode, String);

impl Failure {
    /// Its status and why.
    pub fn parts(self) -> (StatusCode, String) {
        (self.0, self.1)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = layout::page("Error", html! { p.bad { (self.1) } });
        (self.0, body).into_response()
    }
}

impl From<stevedore::Error> for Failure {
    /// Unknown names are 404, names and options that cannot be are 400, the rest (Redis
    /// unreachable or failing) 503.
    fn from(error: stevedore::Error) -> Self {
        use stevedore::Error as E;
        let status = match &error {
            E::NotFound { .. } => StatusCode::NOT_FOUND,
            E::InvalidName { .. } | E::InvalidOptions(_) | E::InvalidSchedule(_) => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self(status, error.to_string())
    }
}

/// A page or an action's outcome.
pub type Answer<T = maud::Markup> = Result<T, Failure>;

/// The queue a URL names (`NAME`, `node:NAME` or `broadcast`), or 400 saying why not.
pub fn destination(name: &str) -> Answer<Destination> {
    Destination::from_wire_name(name).map_err(|e| Failure(StatusCode::BAD_REQUEST, e.to_string()))
}

/// `?args=1`: the operator asks to see task arguments (and results) on this page.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ArgsToggle {
    #[serde(default)]
    args: Option<String>,
}

impl ArgsToggle {
    /// Whether to show them: asked for and allowed (`--show-args`); asked for on a server that
    /// does not allow it is refused with 403.
    pub fn shown(&self, web: &crate::Web) -> Answer<bool> {
        match (self.args.as_deref() == Some("1"), web.config.show_args) {
            (false, _) => Ok(false),
            (true, true) => Ok(true),
            (true, false) => Err(Failure(
                StatusCode::FORBIDDEN,
                "this server hides task arguments and results (start it with --show-args)".into(),
            )),
        }
    }
}

/// The link that shows (or hides) arguments on `path`, when the server allows it.
pub fn args_link(web: &crate::Web, path: &str, shown: bool) -> maud::Markup {
    html! {
        @if web.config.show_args {
            p {
                @if shown { a href=(path) { "hide arguments" } }
                @else { a href={ (path) "?args=1" } { "show arguments" } }
            }
        }
    }
}

/// `?done=TEXT`: what the action that led here did, shown on top of the page.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Notice {
    #[serde(default)]
    done: Option<String>,
}

impl Notice {
    /// The notice line, if there is one.
    pub fn shown(&self) -> maud::Markup {
        html! { @if let Some(done) = &self.done { p.ok.notice { (done) } } }
    }
}

/// A bulk action's form: the ticked `entry` fields (at least one, else 400 saying "no `what`
/// selected"), and the value of its single field `field` (`do`, `back`), if given.
pub fn ticked(body: &[u8], what: &str, field: &str) -> Answer<(Vec<String>, Option<String>)> {
    let (mut entries, mut value) = (Vec::new(), None);
    for (key, given) in form_urlencoded::parse(body) {
        match &*key {
            "entry" => entries.push(given.into_owned()),
            key if key == field => value = Some(given.into_owned()),
            _ => {}
        }
    }
    match entries.is_empty() {
        true => Err(Failure(
            StatusCode::BAD_REQUEST,
            format!("no {what} selected: tick at least one"),
        )),
        false => Ok((entries, value)),
    }
}

/// After an action: back to `path` (303, so a reload does not post again).
pub fn back(path: &str) -> Answer<Redirect> {
    Ok(Redirect::to(path))
}

/// `path` with every byte outside the unreserved set percent-encoded (a queue or schedule
/// name in a link).
pub fn encoded(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                char::from(b).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}
