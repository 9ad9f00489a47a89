//! The throughput chart, drawn on the server as SVG: one bar per minute, runs settled in it.

use maud::{html, Markup};

/// Drawing size, in SVG units.
const WIDTH: u64 = 600;
const HEIGHT: u64 = 120;

/// A bar chart of `(minute, runs)` (oldest first, the current partial minute last).
pub fn throughput(minutes: &[(u64, u64)]) -> Markup {
    let peak = minutes.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let slot = WIDTH / (minutes.len() as u64).max(1);
    let total: u64 = minutes.iter().map(|(_, n)| n).sum();
    let last_full = minutes.iter().rev().nth(1).map_or(0, |(_, n)| *n);
    html! {
        p {
            (last_full) " runs in the last full minute · " (total) " in "
            (minutes.len()) " minutes · peak " (peak) "/min"
        }
        svg.chart width=(WIDTH) height=(HEIGHT) viewBox={ "0 0 " (WIDTH) " " (HEIGHT) }
            role="img" aria-label="runs settled per minute" {
            @for (i, (minute, runs)) in minutes.iter().enumerate() {
                @let height = runs * (HEIGHT - 10) / peak;
                rect x=(i as u64 * slot + 1) y=(HEIGHT - height) width=(slot.saturating_sub(2))
                    height=(height) fill="#1f3a5f" {
                    title { (clock(*minute)) ": " (runs) " runs" }
                }
            }
        }
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
    fn bars_scale_to_the_peak_and_say_their_minute() {
        let svg = throughput(&[(0, 0), (61, 50), (62, 100)]).into_string();
        assert!(svg.contains("height=\"55\""), "half the peak: {svg}");
        assert!(svg.contains("height=\"110\""), "the peak: {svg}");
        assert!(svg.contains("01:02: 100 runs"), "{svg}");
        assert!(svg.contains("50 runs in the last full minute"), "{svg}");
    }
}
