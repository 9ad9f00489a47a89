//! The page shell every page shares (navigation, task search, style, the live script), the
//! action form, and how times are written.

use axum::http::header;
use axum::response::IntoResponse;
use maud::{html, Markup, DOCTYPE};

use crate::guard::Csrf;

/// Ticks every box of a list with its select-all box, and refreshes every element with
/// `data-live` (and an id) from a fresh copy of the page every few seconds; without it the
/// page is simply static (and boxes are ticked one by one).
const LIVE_SCRIPT: &str = r#"document.addEventListener("change", (event) => {
  const all = event.target;
  if (!all.matches("input[data-select-all]")) return;
  const form = all.getAttribute("form");
  for (const box of document.querySelectorAll(`input[name=entry][form="${form}"]`)) box.checked = all.checked;
});
setInterval(async () => {
  const live = document.querySelectorAll("[data-live][id]");
  if (!live.length || document.hidden) return;
  const response = await fetch(location.href, {credentials: "same-origin"});
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const old of live) {
    const next = fresh.getElementById(old.id);
    if (next) old.replaceWith(document.importNode(next, true));
  }
}, 2000);
"#;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222}\
nav{background:#1f3a5f;padding:.5em 1em}nav a{color:#fff;margin-right:1.2em;text-decoration:none}\
nav form{display:inline;float:right}main{padding:1em}table{border-collapse:collapse;margin:.5em 0 1.5em}\
th,td{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}td.n{text-align:right}\
form.act{display:inline}button{cursor:pointer}.bad{color:#a00}.ok{color:#070}.muted{color:#777}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.2em}main{max-width:84em}\
.badge{display:inline-block;padding:0 .5em;border-radius:.7em;font-size:.85em;color:#fff;background:#777}\
.st-succeeded{background:#2e7d32}.st-failed,.st-dead{background:#c62828}.st-timed_out{background:#ad1457}\
.st-cancelled,.st-expired,.st-discarded{background:#757575}.st-running{background:#1565c0}\
.st-retrying,.st-pending{background:#ef6c00}.st-lost{background:#c62828}.st-live{background:#2e7d32}\
form.search{margin:.5em 0 1em}form.search label{margin-right:.6em}th.n{text-align:right}\
svg.chart text{font-size:10px;fill:#555}p.notice{background:#e8f5e9;padding:.4em .8em}\
form.bulk{margin:.3em 0}pre.log{background:#f6f6f6;padding:.6em;overflow-x:auto;max-height:30em}ul.tree,ul.tree ul{list-style:none;padding-left:1.4em}\
ul.tree li{margin:.25em 0}.st-not_started,.st-waiting{background:#9e9e9e}";

/// The script of [`LIVE_SCRIPT`], served at `/live.js`.
pub async fn live_script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript")], LIVE_SCRIPT)
}

/// A whole page titled `title` around `body`.
pub fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · stevedore" }
                style { (maud::PreEscaped(STYLE)) }
                script src="/live.js" defer {}
            }
            body {
                nav {
                    a href="/" { "Overview" }
                    a href="/nodes" { "Nodes" }
                    a href="/tasks?state=failed" { "Failed" }
                    a href="/dead" { "Dead letters" }
                    a href="/workflows" { "Workflows" }
                    a href="/limits" { "Limits" }
                    a href="/schedules" { "Schedules" }
                    form method="get" action="/tasks" {
                        input type="search" name="id" placeholder="task id" aria-label="task id";
                        button type="submit" { "Find" }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// A button that POSTs to `action` with the CSRF token; `confirm`: the operator must tick a
/// box first (purges, requeue all).
pub fn action(csrf: &Csrf, action: &str, label: &str, confirm: bool) -> Markup {
    html! {
        form.act method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf.0);
            @if confirm {
                label { input type="checkbox" name="confirm" value="yes" required; " sure" }
                " "
            }
            button type="submit" { (label) }
        }
    }
}

pub use stevedore::admin::format::{age, time};

/// A time as how long ago it was, the exact time on hover: `<time title=... datetime=...>`.
pub fn when(ms: u64, now: u64) -> Markup {
    let exact = stevedore::admin::format::timestamp(ms);
    html! { time datetime=(exact) title=(exact) { (age(Some(ms), now)) " ago" } }
}

/// A task state as a coloured badge (`span.badge.st-STATE`).
pub fn badge(state: &str) -> Markup {
    html! { span class={ "badge st-" (state) } { (state) } }
}
