//! Moving entries that cannot be run aside, with the reason and the raw bytes.

use std::sync::LazyLock;

use super::{Broker, Delivery};
use crate::{Destination, Result};

static DEAD_LETTER: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/dead_letter.lua")));

impl Broker {
    /// Moves `delivery` (read by `group`) to its queue's dead letters with `reason`, and
    /// acknowledges it, atomically. Returns the dead-letter entry id.
    pub async fn dead_letter(
        &self,
        delivery: &Delivery,
        group: &str,
        reason: &str,
    ) -> Result<String> {
        let keys = self.keys();
        let delete = delivery.destination != Destination::Broadcast;
        Ok(DEAD_LETTER
            .key(keys.stream(&delivery.destination))
            .key(keys.dead_letters(&delivery.destination))
            .arg(group)
            .arg(&delivery.entry_id)
            .arg(reason)
            .arg(delivery.payload.as_deref().unwrap_or_default())
            .arg(crate::now_ms())
            .arg(self.config().dead_letter_cap)
            .arg(if delete { "1" } else { "0" })
            .invoke_async(&mut self.commands())
            .await?)
    }
}
