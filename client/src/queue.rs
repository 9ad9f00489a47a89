//! Where a task goes: a shared queue, one node's own queue, or every node.

use std::fmt;

use crate::{Error, Result};

/// A validated name of a queue, node or namespace.
///
/// Names are 1 to 128 characters of ASCII letters, digits, `_`, `-` and `.`, so that they can
/// sit inside a Redis key and a Cluster hash tag without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueName(String);

impl QueueName {
    /// Checks `name` and wraps it; `kind` names what it is in the error ("queue", "node").
    pub fn new(kind: &'static str, name: &str) -> Result<Self> {
        validate_name(kind, name)?;
        Ok(Self(name.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a queue, node or namespace name; see [`QueueName`] for the rule.
pub(crate) fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 128 {
        Some("it is longer than 128 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        Some("use only ASCII letters, digits, `_`, `-` and `.`")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            kind,
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Where a message is published (AWX's direct and fanout messages).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    /// A shared queue: every node that reads it competes; exactly one runs each message.
    Queue(QueueName),
    /// One node's own queue: only that node runs the message.
    Node(QueueName),
    /// Every live node runs the message once.
    Broadcast,
}

impl Destination {
    /// The wire name of [`Destination::Broadcast`] (a message's `queue` field).
    pub const BROADCAST_WIRE_NAME: &'static str = "broadcast";

    /// A shared queue by name. `broadcast` is refused: it is the broadcasts' wire name, so a
    /// message for such a queue would be read back as a broadcast.
    pub fn queue(name: &str) -> Result<Self> {
        if name == Self::BROADCAST_WIRE_NAME {
            return Err(Error::InvalidName {
                kind: "queue",
                name: name.to_owned(),
                reason: "it is reserved for broadcasts (use --broadcast to reach every node)",
            });
        }
        let base = name.strip_suffix(Self::FIRST_LANE_SUFFIX).unwrap_or(name);
        QueueName::new("queue", base)?;
        Ok(Self::Queue(QueueName(name.to_owned())))
    }

    /// The suffix of a shared queue's first lane (`NAME+first`).
    pub const FIRST_LANE_SUFFIX: &'static str = "+first";

    /// The first lane of a shared queue: `NAME+first`, read before the queue itself by every
    /// node that reads the queue (exclusive tasks go there, as AWX's system jobs run first).
    /// `None` for a node's queue, the broadcasts and a lane itself.
    pub fn first_lane(&self) -> Option<Self> {
        match self {
            Self::Queue(q) if !q.0.ends_with(Self::FIRST_LANE_SUFFIX) => Some(Self::Queue(
                QueueName(format!("{}{}", q.0, Self::FIRST_LANE_SUFFIX)),
            )),
            _ => None,
        }
    }

    /// Whether it is a shared queue's first lane.
    pub fn is_first_lane(&self) -> bool {
        matches!(self, Self::Queue(q) if q.0.ends_with(Self::FIRST_LANE_SUFFIX))
    }

    /// The queue whose pause and listing a destination belongs to: a lane's queue, else its
    /// own wire name.
    pub fn base_wire_name(&self) -> String {
        let wire = self.wire_name();
        match wire.strip_suffix(Self::FIRST_LANE_SUFFIX) {
            Some(base) if matches!(self, Self::Queue(_)) => base.to_owned(),
            _ => wire,
        }
    }

    /// A node's own queue by node name.
    pub fn node(name: &str) -> Result<Self> {
        QueueName::new("node", name).map(Self::Node)
    }

    /// The form stored in a message's `queue` field: `NAME`, `node:NAME` or `broadcast`.
    pub fn wire_name(&self) -> String {
        match self {
            Self::Queue(q) => q.0.clone(),
            Self::Node(n) => format!("node:{n}"),
            Self::Broadcast => Self::BROADCAST_WIRE_NAME.to_owned(),
        }
    }

    /// The one destination a caller chose among a shared queue, a node's queue and every node
    /// (the CLI's `--queue`/`--node`/`--broadcast`, a schedule file's `queue`/`node`/
    /// `broadcast`); `None` when none was chosen.
    pub fn pick(queue: Option<&str>, node: Option<&str>, broadcast: bool) -> Result<Option<Self>> {
        match (queue, node, broadcast) {
            (Some(queue), None, false) => Self::queue(queue).map(Some),
            (None, Some(node), false) => Self::node(node).map(Some),
            (None, None, true) => Ok(Some(Self::Broadcast)),
            (None, None, false) => Ok(None),
            _ => Err(Error::InvalidOptions(
                "give at most one of a queue, a node and broadcast".into(),
            )),
        }
    }

    /// Parses the form written by [`Destination::wire_name`].
    pub fn from_wire_name(wire: &str) -> Result<Self> {
        match wire {
            Self::BROADCAST_WIRE_NAME => Ok(Self::Broadcast),
            _ => match wire.strip_prefix("node:") {
                Some(node) => Self::node(node),
                None => Self::queue(wire),
            },
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.wire_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_key_syntax_are_refused() {
        for bad in ["", "a b", "a{b}", "a:b", "é", &"x".repeat(129)] {
            assert!(QueueName::new("queue", bad).is_err(), "{bad:?} accepted");
        }
        assert!(QueueName::new("queue", "default-2.io_x").is_ok());
    }

    #[test]
    fn one_target_is_picked_and_two_are_refused() {
        assert_eq!(Destination::pick(None, None, false).unwrap(), None);
        assert_eq!(
            Destination::pick(None, Some("web-1"), false).unwrap(),
            Some(Destination::node("web-1").unwrap())
        );
        assert_eq!(
            Destination::pick(None, None, true).unwrap(),
            Some(Destination::Broadcast)
        );
        assert!(Destination::pick(Some("q"), None, true).is_err());
    }

    #[test]
    fn wire_names_round_trip() {
        for dest in [
            Destination::queue("default").unwrap(),
            Destination::node("web-1").unwrap(),
            Destination::Broadcast,
        ] {
            assert_eq!(
                Destination::from_wire_name(&dest.wire_name()).unwrap(),
                dest
            );
        }
    }

    #[test]
    fn a_queue_has_one_first_lane_and_plus_signs_stay_out_of_names() {
        let default = Destination::queue("default").unwrap();
        let lane = default.first_lane().unwrap();
        assert_eq!(lane.wire_name(), "default+first");
        assert!(lane.is_first_lane() && lane.first_lane().is_none());
        assert_eq!(lane.base_wire_name(), "default");
        assert_eq!(Destination::from_wire_name("default+first").unwrap(), lane);
        assert!(Destination::node("n").unwrap().first_lane().is_none());
        for bad in ["a+b", "+first", "a+first+first"] {
            assert!(Destination::queue(bad).is_err(), "{bad:?} accepted");
        }
    }
}
