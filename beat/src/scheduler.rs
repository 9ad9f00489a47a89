//! The scheduler: while this beat leads, fires every due schedule, and sleeps until the next
//! due time (at most half a second, so schedule changes take effect within a second).

use std::time::Duration;

use stevedore::broker::{Fired, Firing};
use stevedore::schedule::Schedule;
use stevedore::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Longest sleep between looks at the due schedules.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// Schedules fired per look.
const BATCH: usize = 1000;

/// Fires due schedules while leading.
pub struct Scheduler {
    client: Client,
    id: String,
    leadership: watch::Receiver<Option<u64>>,
}

impl Scheduler {
    /// A scheduler for beat `id`.
    pub fn new(client: Client, id: String, leadership: watch::Receiver<Option<u64>>) -> Self {
        Self {
            client,
            id,
            leadership,
        }
    }

    /// Runs until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let sleep = match *self.leadership.borrow() {
                Some(token) => self.fire_due(token).await.unwrap_or_else(|error| {
                    tracing::warn!(%error, "cannot fire schedules now");
                    LOOK_EVERY
                }),
                None => LOOK_EVERY,
            };
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                _ = self.leadership.changed() => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// Fires what is due; returns how long to sleep.
    async fn fire_due(&self, token: u64) -> stevedore::Result<Duration> {
        let broker = self.client.broker();
        let left = broker.publish_outbox().await?;
        if left > 0 {
            tracing::warn!(
                firings = left,
                "published firings a previous leader had claimed"
            );
        }
        let now = stevedore::now_ms();
        let due = broker.due_schedules(now, BATCH).await?;
        let names: Vec<String> = due.iter().map(|(name, _)| name.clone()).collect();
        let found = broker.schedules_by_name(&names).await?;
        // Planning walks expressions (bounded, but up to milliseconds each): off the runtime.
        let planned = tokio::task::spawn_blocking(move || {
            (due.into_iter().zip(found))
                .map(|((name, due), schedule)| {
                    let firing =
                        schedule.and_then(|found| found.map(|s| firing(s, due, now)).transpose());
                    (name, firing)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let planned = match planned {
            Ok(planned) => planned,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return Ok(LOOK_EVERY), // the runtime is shutting down
        };
        let mut firings = Vec::with_capacity(planned.len());
        for (name, firing) in planned {
            match firing {
                Ok(Some(firing)) => firings.push(firing),
                Ok(None) => {} // removed meanwhile
                Err(error) => {
                    // One bad schedule never silences the others: it is parked and reported.
                    tracing::error!(schedule = %name.escape_debug(), %error,
                        "cannot fire this schedule; it is parked until it is added again");
                    broker.park_schedule(&name).await?;
                }
            }
        }
        // Each run is published under a send span of its own (with the `otel` feature).
        let sending = firings.iter_mut().flat_map(|f| f.messages.iter_mut());
        let _sending = stevedore::trace::sending(sending);
        let fired = broker.fire_schedules(&self.id, token, &firings).await?;
        for (firing, fired) in firings.iter().zip(fired) {
            let name = &firing.schedule.name;
            match fired {
                Fired::Fired => {
                    tracing::debug!(schedule = %name, runs = firing.messages.len(), "fired")
                }
                Fired::Stale => tracing::debug!(schedule = %name, "changed meanwhile; not fired"),
                Fired::NotLeader => {
                    tracing::warn!("lost the lease while firing; nothing more published");
                    return Ok(LOOK_EVERY);
                }
            }
        }
        let until_next = broker.next_schedule_due().await?.map_or(LOOK_EVERY, |due| {
            Duration::from_millis(due.saturating_sub(stevedore::now_ms()))
        });
        Ok(until_next.min(LOOK_EVERY))
    }
}

/// The firing of `schedule`, due at `due`, seen at `now`: its runs, and its next due time.
fn firing(mut schedule: Schedule, due: u64, now: u64) -> stevedore::Result<Firing> {
    let plan = schedule.plan(due, now)?;
    let messages = plan
        .fire_at
        .iter()
        .map(|t| schedule.message(*t))
        .collect::<stevedore::Result<Vec<_>>>()?;
    if let Some(last) = plan.fire_at.last() {
        schedule.last_fired_at = Some(*last);
    }
    Ok(Firing {
        schedule,
        due_ms: due,
        next_due_ms: plan.next_due,
        messages,
        missed: plan.missed,
    })
}
