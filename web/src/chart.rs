//! Charts drawn on the server as SVG (no script): runs per minute, succeeded and failed
//! stacked, with a labelled count axis, a time axis (UTC) and a legend.

use maud::{html, Markup};

/// Drawing size and margins, in SVG units.
const WIDTH: u64 = 760;
const HEIGHT: u64 = 200;
const LEFT: u64 = 48;
const BOTTOM: u64 = 24;
const TOP: u64 = 22;

/// One minute of the chart: (minute = ms since the epoch / 60,000, succeeded, failed).
pub type Minute = (u64, u64, u64);

/// Stacked bars of succeeded (below) and failed (above) runs per minute, oldest first.
pub fn runs_per_minute(minutes: &[Minute]) -> Markup {
    let peak = nice_ceiling(
        minutes
            .iter()
            .map(|(_, ok, bad)| ok + bad)
            .max()
            .unwrap_or(0),
    );
    let plot_height = HEIGHT - BOTTOM - TOP;
    let slot = (WIDTH - LEFT) / (minutes.len() as u64).max(1);
    let scale = |n: u64| n * plot_height / peak;
    let (ok_total, bad_total) = minutes
        .iter()
        .fold((0, 0), |(o, b), (_, ok, bad)| (o + ok, b + bad));
    html! {
        p {
            (ok_total) " succeeded, " span.bad { (bad_total) " failed" } " in the last "
            (minutes.len()) " minutes"
        }
        svg.chart width=(WIDTH) height=(HEIGHT) viewBox={ "0 0 " (WIDTH) " " (HEIGHT) }
            role="img" aria-label="runs per minute, succeeded and failed" {
            (legend())
            @for tick in [0, peak / 2, peak] {
                @let y = HEIGHT - BOTTOM - scale(tick);
                line x1=(LEFT) x2=(WIDTH) y1=(y) y2=(y) stroke="#e3e3e3" {}
                text x=(LEFT - 6) y=(y + 3) text-anchor="end" { (tick) }
            }
            text x="4" y=(TOP - 8) { "runs/min" }
            @for (i, (minute, ok, bad)) in minutes.iter().enumerate() {
                @let x = LEFT + i as u64 * slot + 1;
                @let (ok_h, bad_h) = (scale(*ok), scale(*bad));
                @let base = HEIGHT - BOTTOM;
                rect.ok x=(x) y=(base - ok_h) width=(slot.saturating_sub(2)) height=(ok_h)
                    fill="#2e7d32" {
                    title { (clock(*minute)) ": " (ok) " succeeded" }
                }
                rect.bad x=(x) y=(base - ok_h - bad_h) width=(slot.saturating_sub(2))
                    height=(bad_h) fill="#c62828" {
                    title { (clock(*minute)) ": " (bad) " failed" }
                }
                @if i % 10 == 0 || i + 1 == minutes.len() {
                    text x=(x) y=(HEIGHT - 8) { (clock(*minute)) }
                }
            }
            line x1=(LEFT) x2=(LEFT) y1=(TOP) y2=(HEIGHT - BOTTOM) stroke="#999" {}
            line x1=(LEFT) x2=(WIDTH) y1=(HEIGHT - BOTTOM) y2=(HEIGHT - BOTTOM) stroke="#999" {}
        }
    }
}

fn legend() -> Markup {
    html! {
        rect x=(WIDTH - 170) y="4" width="10" height="10" fill="#2e7d32" {}
        text x=(WIDTH - 156) y="13" { "succeeded" }
        rect x=(WIDTH - 90) y="4" width="10" height="10" fill="#c62828" {}
        text x=(WIDTH - 76) y="13" { "failed" }
    }
}

/// A small line of `values` (oldest first; `None`: no sample that minute), scaled to its
/// own peak, the peak labelled: a queue's depth over the hour at a glance.
pub fn sparkline(values: &[Option<u64>], label: &str) -> Markup {
    const W: u64 = 180;
    const H: u64 = 28;
    let peak = values.iter().flatten().copied().max().unwrap_or(0).max(1);
    let step = W / (values.len() as u64).saturating_sub(1).max(1);
    let points: Vec<String> = (values.iter().enumerate())
        .filter_map(|(i, v)| {
            v.map(|v| format!("{},{}", i as u64 * step, H - 2 - v * (H - 4) / peak))
        })
        .collect();
    html! {
        svg.spark width=(W) height=(H) viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(label) {
            title { (label) }
            line x1="0" x2=(W) y1=(H - 2) y2=(H - 2) stroke="#ddd" {}
            polyline points=(points.join(" ")) fill="none" stroke="#1f3a5f" stroke-width="1.5" {}
        }
    }
}

/// The smallest of 1, 2, 5 x 10^k that is at least `n` (at least 2, so that half of it is
/// a whole tick).
fn nice_ceiling(n: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [2, 5, 10] {
            if step.saturating_mul(m) >= n.max(2) {
                return step.saturating_mul(m);
            }
        }
        step = step.saturating_mul(10);
    }
}

/// `HH:MM` UTC of a minute number.
fn clock(minute: u64) -> String {
    format!("{:02}:{:02}", minute / 60 % 24, minute % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_stack_failed_on_succeeded_and_scale_to_a_round_peak() {
        let svg = runs_per_minute(&[(0, 0, 0), (61, 40, 10), (62, 100, 0)]).into_string();
        let plot = HEIGHT - BOTTOM - TOP;
        assert!(
            svg.contains(&format!("height=\"{}\"", 40 * plot / 100)),
            "{svg}"
        );
        assert!(
            svg.contains(&format!("height=\"{plot}\"")),
            "the peak: {svg}"
        );
        assert!(svg.contains("01:02: 100 succeeded"), "{svg}");
        assert!(svg.contains("01:01: 10 failed"), "{svg}");
        assert!(
            svg.contains(">100</text>") && svg.contains(">50</text>"),
            "axis: {svg}"
        );
        assert!(svg.contains(">00:00</text>"), "time axis: {svg}");
        assert!(svg.contains("140 succeeded"), "{svg}");
    }

    #[test]
    fn a_sparkline_puts_its_peak_at_the_top_and_skips_unsampled_minutes() {
        let svg = sparkline(&[Some(0), None, Some(10)], "q").into_string();
        assert!(svg.contains("points=\"0,26 180,2\""), "{svg}");
    }

    #[test]
    fn the_count_axis_ends_on_a_round_number() {
        assert_eq!(nice_ceiling(0), 2);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(4_100), 5_000);
        assert_eq!(nice_ceiling(u64::MAX), u64::MAX);
    }
}
