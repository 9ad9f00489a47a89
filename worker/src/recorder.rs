//! The recorder: writes task records and acknowledges messages, in batches.
//!
//! 1. Gathers every event waiting in its channel into one batch and sends it in one pipelined
//!    round trip, so the cost per task falls as load rises.
//! 2. Writes a run's record before acknowledging its message (at-least-once: a crash between
//!    the two re-runs the task, never loses its outcome).
//! 3. Skips a run's `running` record when its outcome is in the same batch.
//! 4. Retries a failed batch on a new connection with capped backoff until it is written or
//!    the worker gives up at shutdown; what is not written stays pending in Redis. A retry
//!    resumes at the stage that failed (records, retries, acknowledgements), so a record is
//!    never written over the newer record of a retry that already ran.
//! 5. Ends when every sender is gone and the channel is drained.

use std::collections::HashSet;
use std::time::Duration;

use std::sync::Arc;
use stevedore::broker::{Broker, Connection, OutcomeBatch, RecordSlot, Settle};
use stevedore::{Destination, RunRecord};

use tokio::sync::mpsc;

use crate::in_flight::InFlight;
use tokio_util::sync::CancellationToken;

/// What the executor reports.
#[derive(Debug)]
pub enum Event {
    /// A run started.
    Started {
        /// The run, in state `running`.
        run: RunRecord,
        /// Where it is recorded.
        slot: RecordSlot,
    },
    /// A run ended: record it, then acknowledge its message.
    Finished {
        /// The run, in its final state.
        run: Box<RunRecord>,
        /// Where it is recorded.
        slot: RecordSlot,
        /// Whether waiters asked to be woken.
        notify: bool,
        /// The queue it was read from.
        destination: Destination,
        /// The group it was read through.
        group: String,
        /// Its stream entry.
        entry_id: String,
        /// What becomes of the message.
        settle: Settle,
        /// Whether to keep this run as attempt N too (a retried task).
        keep_attempt: bool,
        /// The on_duplicate key this run held, to release now that it ended for good.
        release: Option<String>,
    },
}

/// Most events written in one round trip.
const MAX_BATCH: usize = 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Writes outcomes until its channel closes.
pub struct Recorder {
    broker: Broker,
    in_flight: Arc<InFlight>,
    events: mpsc::UnboundedReceiver<Event>,
    ttl: Duration,
}

impl Recorder {
    /// A recorder keeping records for `ttl`.
    pub fn new(
        broker: Broker,
        events: mpsc::UnboundedReceiver<Event>,
        ttl: Duration,
        in_flight: Arc<InFlight>,
    ) -> Self {
        Self {
            broker,
            in_flight,
            events,
            ttl,
        }
    }

    /// Writes batches until every sender is dropped; `give_up` ends retries of a batch that
    /// cannot be written (Redis down at shutdown).
    pub async fn run(mut self, give_up: CancellationToken) {
        let mut conn: Option<Connection> = None;
        let mut events = Vec::with_capacity(MAX_BATCH);
        while self.events.recv_many(&mut events, MAX_BATCH).await > 0 {
            let mut batch = self.batch(&events);
            if self.write(&mut conn, &mut batch, &give_up).await {
                self.in_flight
                    .settled_all(events.iter().filter_map(|e| match e {
                        Event::Finished {
                            destination,
                            entry_id,
                            ..
                        } => Some((destination, entry_id.as_str())),
                        Event::Started { .. } => None,
                    }));
            } else {
                tracing::error!(
                    events = events.len(),
                    "gave up writing outcomes; their messages stay pending in Redis"
                );
            }
            events.clear();
        }
    }

    fn batch(&self, events: &[Event]) -> OutcomeBatch {
        let finished: HashSet<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::Finished { run, .. } => Some(run.id.as_str()),
                Event::Started { .. } => None,
            })
            .collect();
        let mut batch = OutcomeBatch::new(self.ttl);
        for event in events {
            let added = match event {
                Event::Started { run, .. } if finished.contains(run.id.as_str()) => Ok(()),
                Event::Started { run, slot } => {
                    batch.record(&self.broker, run, *slot, false, false)
                }
                Event::Finished {
                    run,
                    slot,
                    notify,
                    destination,
                    group,
                    entry_id,
                    settle,
                    keep_attempt,
                    release,
                } => {
                    if let Some(key) = release {
                        batch.release(destination, key, &run.id);
                    }
                    let recorded = batch.record(&self.broker, run, *slot, *notify, *keep_attempt);
                    batch.settle(destination, group, entry_id.clone(), settle.clone());
                    recorded
                }
            };
            if let Err(error) = added {
                tracing::error!(%error, "cannot encode a task record");
            }
        }
        batch
    }

    /// Writes one batch, reconnecting and retrying until it succeeds or `give_up` fires.
    async fn write(
        &self,
        conn: &mut Option<Connection>,
        batch: &mut OutcomeBatch,
        give_up: &CancellationToken,
    ) -> bool {
        let mut backoff = Duration::from_millis(50);
        let mut last_error: Option<String> = None;
        loop {
            match self.try_write(conn, batch).await {
                Ok(()) => {
                    if last_error.is_some() {
                        tracing::info!("writing outcomes again");
                    }
                    return true;
                }
                Err(error) => {
                    *conn = None;
                    let error = error.to_string();
                    if last_error.as_ref() != Some(&error) {
                        tracing::warn!(%error, "cannot write outcomes; retrying");
                        last_error = Some(error);
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = give_up.cancelled() => return false,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn try_write(
        &self,
        conn: &mut Option<Connection>,
        batch: &mut OutcomeBatch,
    ) -> stevedore::Result<()> {
        if conn.is_none() {
            *conn = Some(
                self.broker
                    .dedicated_connection(Duration::ZERO, "recorder")
                    .await?,
            );
        }
        let conn = conn.as_mut().expect("connection was just made");
        self.broker.write_outcomes(conn, batch).await
    }
}
