//! The elector: takes the leader lease, keeps renewing it while it holds it, and tells the
//! scheduler whether (and with which fencing token) this beat leads.

use std::time::Duration;

use stevedore::broker::Broker;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Takes and renews the lease.
pub struct Elector {
    broker: Broker,
    id: String,
    lease: Duration,
    leadership: watch::Sender<Option<u64>>,
}

impl Elector {
    /// An elector for beat `id`, and the watch of its leadership (the token while leading).
    pub fn new(
        broker: Broker,
        id: String,
        lease: Duration,
    ) -> (watch::Receiver<Option<u64>>, Self) {
        let (leadership, watched) = watch::channel(None);
        (
            watched,
            Self {
                broker,
                id,
                lease,
                leadership,
            },
        )
    }

    /// Tries every third of the lease until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.lease / 3);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => break,
            }
            let token = match self.broker.lease(&self.id, self.lease).await {
                Ok(token) => token,
                Err(error) => {
                    tracing::warn!(%error, "cannot reach the lease; not leading until it can");
                    None
                }
            };
            let was = *self.leadership.borrow();
            if was != token {
                match token {
                    Some(token) => tracing::info!(token, "leading: firing schedules"),
                    None => tracing::info!("standing by: another beat leads"),
                }
                let _ = self.leadership.send(token);
            }
        }
        let _ = self.leadership.send(None);
    }
}
