//! on_duplicate, enforced in Redis: publish, start and finish are each one script over the
//! queue's slot, so the check and the change are atomic across the whole cluster.

use std::sync::LazyLock;
use std::time::Duration;

use super::Broker;
use crate::dedup::{KEY_HEADER, POLICY_HEADER};
use crate::{Destination, Message, Result};

pub(crate) static PUBLISH: LazyLock<&'static str> =
    LazyLock::new(|| include_str!("scripts/dup_publish.lua"));
static START: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/dup_start.lua")));
pub(crate) static FINISH: &str = include_str!("scripts/dup_finish.lua");

/// How long an on_duplicate state outlives its last change: the safety net for a holder that
/// was lost without its release (the reaper of lost nodes releases sooner).
pub const DEDUP_TTL: Duration = Duration::from_secs(3600);

/// A message's on_duplicate policy and key, when it has one.
pub fn policy_of(message: &Message) -> Option<(&str, &str)> {
    let policy = message.headers.get(POLICY_HEADER)?;
    let key = message.headers.get(KEY_HEADER)?;
    (policy != "parallel").then_some((policy.as_str(), key.as_str()))
}

impl Broker {
    /// Adds to `pipe` the publish of `payload` under `policy` (answers 1 if published, 0 if
    /// dropped as a duplicate). EVAL, not EVALSHA: a pipelined EVALSHA is not retried on
    /// NOSCRIPT.
    pub(crate) fn add_dedup_publish(
        &self,
        pipe: &mut redis::Pipeline,
        destination: &Destination,
        policy: &str,
        key: &str,
        payload: Vec<u8>,
    ) {
        pipe.cmd("EVAL")
            .arg(*PUBLISH)
            .arg(2)
            .arg(self.keys().stream(destination))
            .arg(self.keys().dup(destination, key))
            .arg(policy)
            .arg(payload)
            .arg(DEDUP_TTL.as_millis() as u64);
    }

    /// A worker reached `message` (entry `entry_id` read by `group`): returns whether to run
    /// it; `false` when it was parked behind the run holding its key (and acknowledged).
    pub async fn dedup_start(
        &self,
        destination: &Destination,
        message: &Message,
        group: &str,
        entry_id: &str,
        payload: &[u8],
    ) -> Result<bool> {
        let Some((policy, key)) = policy_of(message) else {
            return Ok(true);
        };
        let run: i64 = START
            .key(self.keys().stream(destination))
            .key(self.keys().dup(destination, key))
            .key(self.keys().dup_parked(destination, key))
            .arg(policy)
            .arg(&message.id)
            .arg(group)
            .arg(entry_id)
            .arg(payload)
            .arg(DEDUP_TTL.as_millis() as u64)
            .invoke_async(&mut self.commands())
            .await?;
        Ok(run == 1)
    }
}
