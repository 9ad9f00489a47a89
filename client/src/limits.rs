//! Cluster-wide limits on how fast and how many runs of some tasks go at once.
//!
//! 1. A [`Rate`] (`100/s`, `20/m`, `5/h`, with a burst) paces starts across every node: a run
//!    over the rate is not started but moved to its queue's delayed set for the moment the
//!    rate allows it (GCRA with reservations, in one script: see `docs/decisions.md`).
//! 2. A concurrency of N allows at most N runs at once across the cluster; a run waiting for
//!    a permit waits in the delayed set and is woken when a permit is released.
//! 3. A limit is named and defined in Redis (`stevedore limit set`), shared by every task that
//!    names it, or written on one task (`#[task(rate_limit = "100/s")]`,
//!    `#[task(concurrency = 3)]`), which makes a limit of that task's own.
//! 4. A limit may be keyed by one of the task's arguments (`limit_key = "customer_id"`): each
//!    value of it has its own bucket and permits.

use std::fmt;

use crate::{Error, Result};

/// A pace: `count` starts per `per_ms` milliseconds, `burst` of them at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Starts per period.
    pub count: u32,
    /// The period in milliseconds (1,000 for `/s`, 60,000 for `/m`, 3,600,000 for `/h`).
    pub per_ms: u64,
    /// How many may start at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl Rate {
    /// Parses `COUNT/UNIT` (`100/s`, `20/m`, `5/h`; `sec`, `min`, `hour` spelled out too); the
    /// burst is 1.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: &str| {
            Error::InvalidOptions(format!(
                "rate `{text}`: {reason}; write COUNT/UNIT, as in 100/s, 20/m or 5/h"
            ))
        };
        let (count, unit) = text.trim().split_once('/').ok_or_else(|| bad("no `/`"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| bad("the count is not a whole number"))?;
        let per_ms = match unit.trim() {
            "s" | "sec" | "second" => 1_000,
            "m" | "min" | "minute" => 60_000,
            "h" | "hour" => 3_600_000,
            _ => return Err(bad("the unit is not s, m or h")),
        };
        if count == 0 {
            return Err(bad("the count must be at least 1"));
        }
        Ok(Self {
            count,
            per_ms,
            burst: 1,
        })
    }

    /// The same pace with `burst` starts allowed at once (at least 1).
    pub fn with_burst(self, burst: u32) -> Self {
        Self {
            burst: burst.max(1),
            ..self
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per_ms {
            1_000 => "s",
            60_000 => "m",
            3_600_000 => "h",
            _ => return write!(f, "{}/{}ms", self.count, self.per_ms),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// What a limit allows: a rate, a concurrency, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitSpec {
    /// How fast runs may start.
    pub rate: Option<Rate>,
    /// How many may run at once.
    pub concurrency: Option<u32>,
}

impl LimitSpec {
    /// Refuses a limit that limits nothing, or a concurrency of 0.
    pub fn check(&self) -> Result<()> {
        if self.rate.is_none() && self.concurrency.is_none() {
            return Err(Error::InvalidOptions(
                "a limit needs a rate (such as 100/s), a concurrency (--concurrency N), or both"
                    .into(),
            ));
        }
        if self.concurrency == Some(0) {
            return Err(Error::InvalidOptions(
                "a concurrency of 0 would never run anything; use `stevedore pause` to stop a queue"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The fields it is stored as in Redis (see `docs/protocol.md`).
    pub fn to_fields(&self) -> Vec<(&'static str, u64)> {
        let mut fields = Vec::new();
        if let Some(rate) = self.rate {
            fields.push(("count", u64::from(rate.count)));
            fields.push(("per_ms", rate.per_ms));
            fields.push(("burst", u64::from(rate.burst)));
        }
        if let Some(concurrency) = self.concurrency {
            fields.push(("concurrency", u64::from(concurrency)));
        }
        fields
    }

    /// Reads the fields written by [`LimitSpec::to_fields`]; `None` when there are none.
    pub fn from_fields(fields: &std::collections::HashMap<String, u64>) -> Option<Self> {
        let get = |name: &str| fields.get(name).copied();
        let rate = match (get("count"), get("per_ms")) {
            (Some(count), Some(per_ms)) if count > 0 && per_ms > 0 => Some(Rate {
                count: u32::try_from(count).unwrap_or(u32::MAX),
                per_ms,
                burst: get("burst").map_or(1, |b| u32::try_from(b).unwrap_or(u32::MAX)),
            }),
            _ => None,
        };
        let concurrency = get("concurrency").map(|c| u32::try_from(c).unwrap_or(u32::MAX));
        let spec = Self { rate, concurrency };
        (spec.rate.is_some() || spec.concurrency.is_some()).then_some(spec)
    }
}

impl fmt::Display for LimitSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(rate) = self.rate {
            parts.push(format!("rate {rate} burst {}", rate.burst));
        }
        if let Some(concurrency) = self.concurrency {
            parts.push(format!("concurrency {concurrency}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// The argument a keyed limit is keyed by: its name (a keyword argument) and its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyArg {
    /// The parameter's name.
    pub name: &'static str,
    /// Its position among the task's arguments.
    pub position: usize,
}

/// The limit a task is under, as `#[task]` wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLimit {
    /// A named limit defined in Redis (`limit = "NAME"`); `None`: the task's own limit, named
    /// `task.TASK`.
    pub name: Option<&'static str>,
    /// The task's own rate and concurrency (`rate_limit`, `burst`, `concurrency`).
    pub own: Option<LimitSpec>,
    /// The argument the limit is keyed by (`limit_key`).
    pub key: Option<KeyArg>,
}

/// Who holds a permit (and a rate's pass): one attempt of one task, `TASK_ID:TRIED`. Per
/// attempt, so that giving back the permit of a lost attempt never frees the permit its next
/// attempt took meanwhile (the reaper queues the next attempt before it gives the lost one's
/// back).
pub fn permit_holder(message: &crate::Message) -> String {
    format!("{}:{}", message.id, message.tried)
}

/// The name of the limit of a task's own (`#[task(rate_limit = ...)]`).
pub fn own_limit_name(task: &str) -> String {
    format!("task.{task}")
}

/// Checks the name of a named limit: the rule of queue names.
pub fn validate_limit_name(name: &str) -> Result<()> {
    crate::queue::validate_name("limit", name)
}

/// The text a key argument's value stands for in its bucket's key: strings as they are,
/// numbers and booleans in decimal, anything else as its MessagePack text; a long key is
/// replaced by its SHA-256 in hex, so every key stays short.
pub fn key_text(value: &rmpv::Value) -> String {
    let text = match value {
        rmpv::Value::String(s) => s.as_str().map_or_else(|| value.to_string(), str::to_owned),
        rmpv::Value::Integer(i) => i.to_string(),
        rmpv::Value::Boolean(b) => b.to_string(),
        other => other.to_string(),
    };
    if text.len() <= 128 {
        return text;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_seconds_minutes_and_hours() {
        assert_eq!(Rate::parse("100/s").unwrap().per_ms, 1_000);
        assert_eq!(Rate::parse(" 20 / m ").unwrap().count, 20);
        assert_eq!(Rate::parse("5/h").unwrap().per_ms, 3_600_000);
        assert_eq!(Rate::parse("5/h").unwrap().to_string(), "5/h");
    }

    #[test]
    fn bad_rates_are_refused_with_the_form_to_write() {
        for bad in ["100", "x/s", "0/s", "10/d", "-1/s"] {
            let error = Rate::parse(bad).unwrap_err().to_string();
            assert!(error.contains("COUNT/UNIT"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_limit_of_nothing_or_of_zero_runs_is_refused() {
        assert!(LimitSpec::default().check().is_err());
        let zero = LimitSpec {
            rate: None,
            concurrency: Some(0),
        };
        assert!(zero.check().unwrap_err().to_string().contains("pause"));
    }

    #[test]
    fn a_spec_round_trips_through_its_fields() {
        let spec = LimitSpec {
            rate: Some(Rate::parse("10/m").unwrap().with_burst(3)),
            concurrency: Some(2),
        };
        let fields = spec
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(LimitSpec::from_fields(&fields), Some(spec));
    }

    #[test]
    fn long_keys_are_hashed_short_ones_kept() {
        assert_eq!(key_text(&rmpv::Value::from("acme")), "acme");
        assert_eq!(key_text(&rmpv::Value::from(42)), "42");
        assert_eq!(key_text(&rmpv::Value::from("x".repeat(500))).len(), 64);
    }
}
