//! Converting between JSON (the shell's side) and MessagePack values, and printing times.

use anyhow::Context as _;

/// A JSON value as a MessagePack value (integers stay integers, `1.0` stays a float).
pub fn json_to_value(json: &serde_json::Value) -> anyhow::Result<rmpv::Value> {
    rmpv::ext::to_value(json).context("cannot convert a JSON argument to MessagePack")
}

/// `--args JSON`: a JSON array of positional arguments, as MessagePack values.
pub fn parse_args(json: &str) -> anyhow::Result<Vec<rmpv::Value>> {
    let value: serde_json::Value =
        serde_json::from_str(json).with_context(|| format!("--args is not JSON: `{json}`"))?;
    let serde_json::Value::Array(items) = value else {
        anyhow::bail!("--args must be a JSON array, e.g. --args '[1, \"two\"]'");
    };
    items.iter().map(json_to_value).collect()
}

/// `--kwargs JSON`: a JSON object of keyword arguments, as MessagePack values.
pub fn parse_kwargs(json: &str) -> anyhow::Result<std::collections::BTreeMap<String, rmpv::Value>> {
    let value: serde_json::Value =
        serde_json::from_str(json).with_context(|| format!("--kwargs is not JSON: `{json}`"))?;
    let serde_json::Value::Object(items) = value else {
        anyhow::bail!("--kwargs must be a JSON object, e.g. --kwargs '{{\"n\": 1}}'");
    };
    items
        .iter()
        .map(|(k, v)| Ok((k.clone(), json_to_value(v)?)))
        .collect()
}

/// A MessagePack value as JSON text; values JSON cannot hold (binary, non-string map keys)
/// are shown in their debug form.
pub fn value_to_json(value: &rmpv::Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| format!("{value}"))
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn timestamp(ms: u64) -> String {
    let (days, rest) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// The latest time accepted (the end of year 9999), in ms since the epoch.
const LATEST_MS: u64 = 253_402_300_799_999;

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

/// Days since 1970-01-01 to a (year, month, day) of the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_iso_8601() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
        assert_eq!(timestamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
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
    fn json_integers_stay_integers() {
        let v = json_to_value(&serde_json::json!([1, 1.5, "x", {"a": null}])).unwrap();
        assert_eq!(value_to_json(&v), r#"[1,1.5,"x",{"a":null}]"#);
    }
}
