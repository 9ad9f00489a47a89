//! Publishing: one XADD per message, all of a batch in one pipelined round trip.

use super::keys::MESSAGE_FIELD;
use super::Broker;
use crate::{Destination, Message, Result};

impl Broker {
    /// Appends every message to its queue's stream in one round trip.
    ///
    /// Broadcasts go to the capped broadcast stream. Returns the stream entry ids, in order.
    pub async fn enqueue(&self, messages: &[Message]) -> Result<Vec<String>> {
        let mut pipe = redis::pipe();
        for message in messages {
            let destination = Destination::from_wire_name(&message.queue)?;
            let key = self.keys().stream(&destination);
            let payload = message.encode()?;
            let cmd = pipe.cmd("XADD").arg(&key);
            if destination == Destination::Broadcast {
                cmd.arg("MAXLEN").arg("~").arg(self.config().broadcast_cap);
            }
            cmd.arg("*").arg(MESSAGE_FIELD).arg(payload);
        }
        Ok(pipe.query_async(&mut self.commands()).await?)
    }

    /// Appends raw bytes to a queue's stream as if they were a message (for tests and tools
    /// that speak the protocol themselves). Returns the entry id.
    pub async fn enqueue_raw(&self, destination: &Destination, payload: &[u8]) -> Result<String> {
        Ok(redis::cmd("XADD")
            .arg(self.keys().stream(destination))
            .arg("*")
            .arg(MESSAGE_FIELD)
            .arg(payload)
            .query_async(&mut self.commands())
            .await?)
    }
}
