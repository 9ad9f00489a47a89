//! Converting between JSON (the shell's side) and MessagePack values, and printing times.

use anyhow::Context as _;

/// A JSON value as a MessagePack value (integers stay integers, `1.0` stays a float).
pub fn json_to_value(json: &serde_json::Value) -> anyhow::Result<rmpv::Value> {
    rmpv::ext::to_value(json).context("cannot convert a JSON argument to MessagePack")
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
    fn json_integers_stay_integers() {
        let v = json_to_value(&serde_json::json!([1, 1.5, "x", {"a": null}])).unwrap();
        assert_eq!(value_to_json(&v), r#"[1,1.5,"x",{"a":null}]"#);
    }
}
