//! on_duplicate, enforced in Redis: publish, start and finish are each one script over the
//! queue's slot, so the check and the change are atomic across the whole cluster.

use std::time::Duration;

use super::scripts::{DUP_FINISH, DUP_PUBLISH, DUP_START};
use super::Broker;
use crate::{Destination, Message, Result};

/// How long an on_duplicate state outlives its last change: the safety net for a holder that
/// was lost without its release (the reaper of lost nodes releases sooner).
pub const DEDUP_TTL: Duration = Duration::from_secs(3600);

impl Broker {
    /// Adds to `pipe` the publish of `payload` under `policy` (answers 1 if published, 0 if
    /// dropped as a duplicate).
    pub(crate) fn add_dedup_publish(
        &self,
        pipe: &mut redis::Pipeline,
        destination: &Destination,
        (policy, key): (&str, &str),
        payload: Vec<u8>,
        eta: Option<u64>,
    ) {
        let keys = self.keys();
        let (stream, state, delayed) = (
            keys.stream(destination),
            keys.dup(destination, key),
            keys.delayed(destination),
        );
        let ttl = DEDUP_TTL.as_millis() as u64;
        let invocation = match eta {
            None => DUP_PUBLISH.eval_in(pipe, &[&stream, &state]),
            Some(_) => DUP_PUBLISH.eval_in(pipe, &[&stream, &state, &delayed]),
        };
        invocation.arg(policy).arg(payload).arg(ttl);
        if let Some(eta) = eta {
            // The state outlives the wait: the copy counts as queued until it starts.
            let ttl = ttl + eta.saturating_sub(crate::now_ms());
            invocation.arg(eta).arg(ttl);
        }
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
        let Some((policy, key)) = crate::dedup_policy(message) else {
            return Ok(true);
        };
        let run: i64 = DUP_START
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

    /// Releases the on_duplicate key of `message` (in `destination`) if task `message.id`
    /// holds it, queueing the next parked copy: for a holder that ended without recording
    /// (reaped with its lost node). Returns whether it held the key.
    pub async fn release_duplicate(
        &self,
        destination: &Destination,
        message: &Message,
    ) -> Result<bool> {
        let Some((_, key)) = crate::dedup_policy(message) else {
            return Ok(false);
        };
        let released: i64 = DUP_FINISH
            .key(self.keys().stream(destination))
            .key(self.keys().dup(destination, key))
            .key(self.keys().dup_parked(destination, key))
            .arg(&message.id)
            .invoke_async(&mut self.commands())
            .await?;
        Ok(released == 1)
    }
}
