//! The page shell every page shares (navigation, task search, style, the live script), the
//! action form, and how times are written.

use axum::http::header;
use axum::response::IntoResponse;
use maud::{html, Markup, DOCTYPE};

use crate::guard::Csrf;

/// Refreshes every element with `data-live` (and an id) from a fresh copy of the page every
/// few seconds; without it the page is simply static.
const LIVE_SCRIPT: &str = r#"setInterval(async () => {
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
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.2em}";

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
                    a href="/dead" { "Dead letters" }
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

/// Milliseconds since the epoch as UTC text.
pub fn time(ms: Option<u64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    let seconds = (ms / 1000) as i64;
    chrono_like(seconds, ms % 1000)
}

/// How long ago `ms` was, from `now`: `3s`, `5m 2s`, `2h 10m`, `4d 3h`.
pub fn age(ms: Option<u64>, now: u64) -> String {
    let Some(ms) = ms else { return "-".into() };
    let s = now.saturating_sub(ms) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s / 60 % 60),
        _ => format!("{}d {}h", s / 86_400, s / 3600 % 24),
    }
}

/// `YYYY-MM-DD HH:MM:SS.mmm` UTC (days from the civil calendar, no time zone database).
fn chrono_like(seconds: i64, milli: u64) -> String {
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{milli:03}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_ages_read_as_people_write_them() {
        assert_eq!(time(Some(0)), "1970-01-01 00:00:00.000");
        assert_eq!(time(Some(1_795_873_445_123)), "2026-11-28 13:44:05.123");
        assert_eq!(time(None), "-");
        assert_eq!(age(Some(0), 59_000), "59s");
        assert_eq!(age(Some(0), 3_725_000), "1h 2m");
        assert_eq!(age(Some(10), 0), "0s");
    }
}
