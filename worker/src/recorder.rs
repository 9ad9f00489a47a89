//! The recorder: writes task records and acknowledges messages, in batches.
//!
//! 1. Gathers every event waiting in its channel into one batch and sends it in one pipelined
//!    round trip, so the cost per task falls as load rises.
//! 2. Writes a run's record before acknowledging its message (at-least-once: a crash between
//!    the two re-runs the task, never loses its outcome).
//! 3. Passes each run's start and [`Outcome`] to one `OutcomeBatch` unchanged (the batch skips
//!    a run's `running` record when its outcome is in the same batch).
//! 4. Retries a failed batch on a new connection with capped backoff until it is written or
//!    the worker gives up at shutdown; what is not written stays pending in Redis. A retry
//!    resumes at the stage that failed (records, retries, acknowledgements), so a record is
//!    never written over the newer record of a retry that already ran.
//! 5. Ends when every sender is gone and the channel is drained.

use std::sync::Arc;
use std::time::Duration;

use stevedore::broker::{Broker, Connection, Outcome, OutcomeBatch};
use stevedore::{RecordField, RunRecord};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use stevedore_runtime::Backoff;

use crate::in_flight::InFlight;

/// What the executor reports.
#[derive(Debug)]
pub enum Event {
    /// A run started.
    Started {
        /// The run, in state `running`.
        run: RunRecord,
        /// Where it is recorded.
        field: RecordField,
    },
    /// A run ended: record it, then settle its message.
    Finished(Outcome),
}

/// How long records are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Every record but those below.
    pub records: Duration,
    /// The record of a success nobody waits for (at most `records`).
    pub successes: Duration,
    /// How many finished runs the history keeps per queue and state (0: none).
    pub history: usize,
    /// Whether each task's runs are counted per minute.
    pub task_minutes: bool,
}

/// Most events written in one round trip.
const MAX_BATCH: usize = 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Writes outcomes until its channel closes.
pub struct Recorder {
    broker: Broker,
    in_flight: Arc<InFlight>,
    events: mpsc::UnboundedReceiver<Event>,
    retention: Retention,
}

impl Recorder {
    /// A recorder keeping records as long as `retention` says.
    pub fn new(
        broker: Broker,
        events: mpsc::UnboundedReceiver<Event>,
        retention: Retention,
        in_flight: Arc<InFlight>,
    ) -> Self {
        Self {
            broker,
            in_flight,
            events,
            retention,
        }
    }

    /// Writes batches until every sender is dropped; `give_up` ends retries of a batch that
    /// cannot be written (Redis down at shutdown).
    pub async fn run(mut self, give_up: CancellationToken) {
        let mut conn: Option<Connection> = None;
        let mut events = Vec::with_capacity(MAX_BATCH);
        while self.events.recv_many(&mut events, MAX_BATCH).await > 0 {
            let Retention {
                records,
                successes,
                history,
                task_minutes,
            } = self.retention;
            let mut batch = OutcomeBatch::retaining(records, successes)
                .with_history(history)
                .with_task_minutes(task_minutes);
            for event in events.drain(..) {
                match event {
                    Event::Started { run, field } => batch.started(run, field),
                    Event::Finished(outcome) => batch.finished(outcome),
                }
            }
            if self.write(&mut conn, &mut batch, &give_up).await {
                self.in_flight.settled_all(
                    batch
                        .entries()
                        .map(|e| (&e.destination, e.entry_id.as_str())),
                );
            } else {
                tracing::error!(
                    entries = batch.entries().count(),
                    "gave up writing outcomes; their messages stay pending in Redis"
                );
            }
        }
    }

    /// Writes one batch, reconnecting and retrying until it succeeds or `give_up` fires.
    async fn write(
        &self,
        conn: &mut Option<Connection>,
        batch: &mut OutcomeBatch,
        give_up: &CancellationToken,
    ) -> bool {
        let mut backoff = Backoff::new(Duration::from_millis(50), MAX_BACKOFF);
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
            if !backoff.wait(give_up).await {
                return false;
            }
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
