//! `on_duplicate`: what to do when the same task with the same arguments is already queued or
//! running (dispatcherd's policies, enforced across the whole cluster).

use std::fmt;
use std::str::FromStr;

use crate::{Error, Message};

/// The header naming a message's policy.
pub const POLICY_HEADER: &str = "on_duplicate";
/// The header carrying a message's dedup key (see [`dedup_key`]).
pub const KEY_HEADER: &str = "dedup";

/// What to do with a duplicate: the same task name and arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDuplicate {
    /// Run every copy, even at once (the default).
    #[default]
    Parallel,
    /// Drop the new copy if one is queued or running.
    Discard,
    /// Run one at a time; the others wait their turn.
    Serial,
    /// Run one at a time, with at most one more waiting; further copies are dropped.
    QueueOne,
}

impl OnDuplicate {
    /// The name used in headers, attributes and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parallel => "parallel",
            Self::Discard => "discard",
            Self::Serial => "serial",
            Self::QueueOne => "queue_one",
        }
    }

    /// The policy of `message` (parallel when it names none or one this version does not know).
    pub fn of(message: &Message) -> Self {
        message
            .headers
            .get(POLICY_HEADER)
            .and_then(|p| p.parse().ok())
            .unwrap_or_default()
    }
}

impl fmt::Display for OnDuplicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OnDuplicate {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        match text {
            "parallel" => Ok(Self::Parallel),
            "discard" => Ok(Self::Discard),
            "serial" => Ok(Self::Serial),
            "queue_one" => Ok(Self::QueueOne),
            other => Err(Error::InvalidOptions(format!(
                "unknown on_duplicate policy `{other}`; use parallel, discard, serial or queue_one"
            ))),
        }
    }
}

/// A message's on_duplicate policy name and dedup key, when it has a policy other than
/// `parallel` (the message headers `on_duplicate` and `dedup`).
pub fn dedup_policy(message: &Message) -> Option<(&str, &str)> {
    let policy = message.headers.get(POLICY_HEADER)?;
    let key = message.headers.get(KEY_HEADER)?;
    (policy != "parallel").then_some((policy.as_str(), key.as_str()))
}

/// The key that makes two calls duplicates: the SHA-1 (hex) of the MessagePack array
/// `[task, args, kwargs]`.
pub fn dedup_key(message: &Message) -> crate::Result<String> {
    let bytes =
        rmp_serde::to_vec(&(&message.task, &message.args, &message.kwargs)).map_err(|e| {
            Error::Encode {
                what: format!("dedup key of task `{}`", message.task),
                reason: e.to_string(),
            }
        })?;
    Ok(sha1_smol::Sha1::from(bytes).digest().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PublishOptions;

    #[test]
    fn policies_parse_and_print() {
        for policy in [
            OnDuplicate::Parallel,
            OnDuplicate::Discard,
            OnDuplicate::Serial,
            OnDuplicate::QueueOne,
        ] {
            assert_eq!(policy.as_str().parse::<OnDuplicate>().unwrap(), policy);
        }
        assert!("sometimes".parse::<OnDuplicate>().is_err());
    }

    #[test]
    fn same_task_and_arguments_give_the_same_key() {
        let make = |args: Vec<rmpv::Value>| {
            PublishOptions::new()
                .message("t", None, args, Default::default())
                .unwrap()
        };
        let a = dedup_key(&make(vec![1.into()])).unwrap();
        assert_eq!(a, dedup_key(&make(vec![1.into()])).unwrap());
        assert_ne!(a, dedup_key(&make(vec![2.into()])).unwrap());
        assert_eq!(a.len(), 40);
    }
}
