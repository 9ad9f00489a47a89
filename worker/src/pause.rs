//! Paused queues, and the gate that makes a pause take effect before it is acknowledged.
//!
//! A fetcher holds the gate's read side for the length of one read and reads only the queues
//! that are not paused. To change the set, the controller wakes the fetchers' blocked reads
//! (`CLIENT UNBLOCK`) and takes the write side, which waits for reads in flight to end; only then
//! does it answer. So once `stevedore queue pause Q` returns, no fetcher reads Q.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use stevedore::broker::{Broker, ClientId};
use tokio::sync::{Notify, RwLock, RwLockReadGuard};

/// The paused queues (wire names) and the fetchers to wake when they change.
#[derive(Debug, Default)]
pub struct PauseGate {
    paused: RwLock<BTreeSet<String>>,
    fetchers: Mutex<HashMap<String, Vec<ClientId>>>,
    changed: Notify,
}

impl PauseGate {
    /// Held for one read: the paused queues at the time.
    pub async fn read(&self) -> RwLockReadGuard<'_, BTreeSet<String>> {
        self.paused.read().await
    }

    /// Resolves when the set changes; create it before letting go of the read side, so that
    /// no change is missed in between.
    pub fn on_change(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Registers the connections (`CLIENT ID`) of the fetcher named `name`, to wake it.
    pub fn register(&self, name: &str, clients: Vec<ClientId>) {
        self.fetchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), clients);
    }

    /// A copy of the paused set.
    pub async fn snapshot(&self) -> BTreeSet<String> {
        self.paused.read().await.clone()
    }

    /// Sets the paused queues; returns once no fetcher reads with the old set.
    pub async fn set(&self, paused: BTreeSet<String>, broker: &Broker) {
        if *self.paused.read().await == paused {
            return;
        }
        // Queue for the write side first (new reads then wait behind it), then wake the reads
        // in flight until it is granted.
        let waking = self.keep_waking(broker);
        let mut waking = std::pin::pin!(waking);
        let mut current = tokio::select! {
            biased;
            current = self.paused.write() => current,
            never = &mut waking => match never {},
        };
        tracing::info!(?paused, "paused queues changed");
        *current = paused;
        drop(current);
        self.changed.notify_waiters();
    }

    /// Wakes the fetchers' blocked reads every few milliseconds, for ever.
    async fn keep_waking(&self, broker: &Broker) -> std::convert::Infallible {
        loop {
            let clients: Vec<ClientId> = self
                .fetchers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .flatten()
                .cloned()
                .collect();
            for client in &clients {
                if let Err(error) = broker.unblock(client).await {
                    tracing::debug!(%error, "could not wake a fetcher");
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
