//! One way to print times and durations, for every view (the command line, the dashboard).

/// The latest time accepted (the end of year 9999), in ms since the epoch.
const LATEST_MS: u64 = 253_402_300_799_999;

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, RFC 3339).
pub fn timestamp(ms: u64) -> String {
    let at = i64::try_from(ms.min(LATEST_MS)).unwrap_or(0);
    chrono::DateTime::from_timestamp_millis(at)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// `text` with every control character escaped (`\n`, `\u{1b}`...): text a task or a
/// producer wrote (an error, a name) can neither start a line of its own nor send terminal
/// escapes when it is printed for people or logged as text.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let escape = |c: char| match c.is_control() {
        true => c.escape_default().to_string(),
        false => c.to_string(),
    };
    text.chars().map(escape).collect::<String>().into()
}

/// [`timestamp`], or `-` for no time.
pub fn time(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".to_owned(), timestamp)
}

/// How long ago `ms` was at `now`, in two units: `3s`, `5m 2s`, `2h 10m`, `4d 3h` (`-` for
/// no time).
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

/// A duration in one unit, at a glance: `850ms`, `12s`, `5m`, `3h`, `2d`.
pub fn short_age(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{}s", ms / 1_000),
        60_000..3_600_000 => format!("{}m", ms / 60_000),
        3_600_000..86_400_000 => format!("{}h", ms / 3_600_000),
        _ => format!("{}d", ms / 86_400_000),
    }
}

/// Parses an RFC 3339 time with its offset (`2026-01-01T09:00:00Z`,
/// `2026-01-01T10:00:00+01:00`, optional fraction) or Unix seconds into milliseconds since the
/// epoch. Dates that do not exist (February 31) and times after year 9999 are refused.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("`{text}` is not a time; write 2026-01-01T09:00:00Z (an offset such as +01:00 works too) or Unix seconds")
    };
    let ms = match text.parse::<u64>() {
        Ok(secs) => secs.checked_mul(1000).ok_or_else(bad)?,
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| bad())?;
            u64::try_from(at.timestamp_millis()).map_err(|_| format!("`{text}` is before 1970"))?
        }
    };
    match ms > LATEST_MS {
        true => Err(format!("`{text}` is after year 9999")),
        false => Ok(ms),
    }
}

/// The longest duration any flag takes (100 years): a longer one is a typo, and would overflow
/// the clocks it is added to.
const LONGEST: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);

/// Parses `500ms`, `30s`, `5m`, `1h`, `1d` (and combinations such as `1m 30s`); a bare number
/// is seconds. At most 100 years.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let parsed = match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => {
            std::time::Duration::try_from_secs_f64(secs).unwrap_or(std::time::Duration::MAX)
        }
        Ok(_) => {
            return Err(format!(
                "`{text}` is not a duration; write e.g. 500ms, 30s, 5m, 1h"
            ))
        }
        Err(_) => humantime::parse_duration(text).map_err(|e| {
            format!("`{text}` is not a duration ({e}); write e.g. 500ms, 30s, 5m, 1h")
        })?,
    };
    match parsed > LONGEST {
        true => Err(format!("`{text}` is longer than 100 years")),
        false => Ok(parsed),
    }
}

/// [`parse_duration`], refusing zero: for periods and lifetimes (`--heartbeat`, `--lease`,
/// `--record-ttl`, `--block`), where 0 would start a half-dead process.
pub fn parse_period(text: &str) -> Result<std::time::Duration, String> {
    match parse_duration(text)? {
        std::time::Duration::ZERO => Err(format!(
            "`{text}` is zero; give a positive duration, e.g. 2s"
        )),
        period => Ok(period),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_rfc_3339_with_milliseconds() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
        assert_eq!(timestamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(time(None), "-");
    }

    #[test]
    fn times_parse_back_to_what_they_print() {
        for ms in [0, 951_782_400_000, 1_767_225_600_123, 1_795_823_627_233] {
            assert_eq!(parse_time(&timestamp(ms)).unwrap(), ms);
        }
        assert_eq!(parse_time("1767225600").unwrap(), 1_767_225_600_000);
        assert_eq!(
            parse_time("2026-01-01T00:00:00+00:00").unwrap(),
            1_767_225_600_000
        );
        assert!(parse_time("tomorrow").is_err());
        assert!(parse_time("2026-13-01T00:00:00Z").is_err());
        assert!(
            parse_time("2026-02-31T00:00:00Z").is_err(),
            "February 31 does not exist"
        );
        assert_eq!(
            parse_time("2026-01-01T01:00:00+01:00").unwrap(),
            parse_time("2026-01-01T00:00:00Z").unwrap()
        );
        assert!(parse_time("99999999999999999").is_err(), "no wrap-around");
        assert!(parse_time("10000-01-01T00:00:00Z").is_err());
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(printable("plain, ünïcode"), "plain, ünïcode");
        assert_eq!(
            printable("boom\nstate:     succeeded\u{1b}[31m"),
            "boom\\nstate:     succeeded\\u{1b}[31m"
        );
    }

    #[test]
    fn ages_read_as_people_write_them() {
        assert_eq!(age(Some(0), 59_000), "59s");
        assert_eq!(age(Some(0), 3_725_000), "1h 2m");
        assert_eq!(age(Some(10), 0), "0s");
        assert_eq!(age(None, 0), "-");
        assert_eq!(short_age(850), "850ms");
        assert_eq!(short_age(3 * 86_400_000), "3d");
    }
}
