//! What happens after a failed attempt: run it again later, or give up into the dead letters.
//!
//! ```text
//! attempt fails ── fatal error, cancelled ──► failed (its message kept in its record for an
//!      │                                      operator's retry) / cancelled (ack)
//!      │
//!      ├─ retries left ─► retrying: the message, one more attempt, waits in the queue's
//!      │                  delayed set for  min(max, first * 2^tried) with jitter
//!      │                  (or the delay the task asked for), then runs again
//!      ├─ none left, some used ─► dead: the message goes to the queue's dead letters
//!      └─ never had retries ────► failed (ack)
//! ```

use std::time::Duration;

use stevedore::broker::{Broker, Settle};
use stevedore::{
    Destination, Message, QueueName, RunRecord, TaskError, TaskErrorKind, TaskOptions, TaskState,
};

/// Default first retry delay.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// Default longest retry delay.
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(600);

/// What to do with a message after its attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Done (succeeded, or failed for good).
    Done,
    /// Run it again after this delay.
    Retry(Duration),
    /// Out of retries: to the dead letters.
    Dead,
}

/// The retry policy of one message: the call's settings, else the task's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Retries left after this attempt.
    pub retries_left: u32,
    /// First delay.
    pub backoff: Duration,
    /// Longest delay.
    pub max_backoff: Duration,
}

impl Policy {
    /// The policy for `message` of a task with `options` (`None`: unknown task, no retries).
    pub fn of(message: &Message, options: Option<&TaskOptions>) -> Self {
        let ms = Duration::from_millis;
        let task = options.copied().unwrap_or_default();
        Self {
            retries_left: message.retries.or(task.retries).unwrap_or(0),
            backoff: message
                .backoff
                .or(task.backoff_ms)
                .map_or(DEFAULT_BACKOFF, ms),
            max_backoff: message
                .max_backoff
                .or(task.max_backoff_ms)
                .map_or(DEFAULT_MAX_BACKOFF, ms),
        }
    }

    /// What to do after an attempt that ended in `state` with `error`; `tried` attempts came
    /// before it; `random` is any random number (for the jitter).
    pub fn plan(
        &self,
        state: TaskState,
        error: Option<&TaskError>,
        tried: u32,
        random: u64,
    ) -> Plan {
        let retryable = matches!(
            (state, error.map(TaskError::kind)),
            (TaskState::TimedOut, _)
                | (
                    TaskState::Failed,
                    Some(TaskErrorKind::Failed | TaskErrorKind::RetryAfter(_))
                )
        );
        if !retryable {
            return Plan::Done;
        }
        if self.retries_left == 0 {
            // Out of retries after using some: dead letters. A task that never had retries
            // simply failed.
            return if tried > 0 { Plan::Dead } else { Plan::Done };
        }
        match error.map(TaskError::kind) {
            Some(TaskErrorKind::RetryAfter(delay)) => Plan::Retry(delay),
            _ => Plan::Retry(self.delay(tried, random)),
        }
    }

    /// `min(max, first * 2^tried)`, then "equal jitter": half of it fixed, half random.
    pub fn delay(&self, tried: u32, random: u64) -> Duration {
        let exponential = self
            .backoff
            .saturating_mul(1u32.checked_shl(tried.min(31)).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        let half = exponential.as_millis() as u64 / 2;
        Duration::from_millis(half + random % (half + 1))
    }
}

/// One finished attempt, as the executor hands it over to be settled.
pub struct Attempt<'a> {
    /// The message as it ran (its arguments may have been moved out).
    pub message: &'a Message,
    /// The message's bytes as read (the next attempt is built from them).
    pub payload: &'a [u8],
    /// The task's options (`None`: the task is unknown here, so no retries).
    pub options: Option<&'a TaskOptions>,
    /// The queue it was read from.
    pub from: &'a Destination,
    /// This node's own queue, where a failed broadcast is retried (the broadcast itself is not
    /// run twice by a node).
    pub node_queue: &'a QueueName,
}

/// Decides what becomes of the message after `attempt` ended as `run` says (with `error`):
/// done, a retry in the delayed set, or the dead letters; marks the run `retrying` or `dead`
/// accordingly.
pub fn settle(
    broker: &Broker,
    attempt: &Attempt<'_>,
    run: &mut RunRecord,
    error: Option<&TaskError>,
) -> Settle {
    let message = attempt.message;
    let policy = Policy::of(message, attempt.options);
    // Jitter without a getrandom syscall per settled run (std's hasher keys are per thread).
    let random = std::hash::BuildHasher::hash_one(
        &std::collections::hash_map::RandomState::new(),
        &message.id,
    );
    let to = match attempt.from {
        Destination::Broadcast => Destination::Node(attempt.node_queue.clone()),
        other => other.clone(),
    };
    match policy.plan(run.state, error, message.tried, random) {
        // A failure that will not run again keeps its message for an operator's retry.
        Plan::Done
            if matches!(run.state, TaskState::Failed | TaskState::TimedOut)
                && attempt.payload.len() <= stevedore::broker::KEPT_MESSAGE_MAX =>
        {
            Settle::Failed {
                message: attempt.payload.to_vec(),
            }
        }
        Plan::Done => Settle::Ack,
        Plan::Retry(delay) => {
            let due_ms = stevedore::now_ms() + delay.as_millis() as u64;
            let next = broker
                .open(attempt.payload)
                .map(|original| next_attempt(original, policy.retries_left, due_ms))
                .and_then(|next| broker.seal(&next));
            match next {
                Ok(message) => {
                    run.state = TaskState::Retrying;
                    run.retry_at = Some(due_ms);
                    tracing::warn!(delay_ms = delay.as_millis() as u64, "retry scheduled");
                    Settle::Retry {
                        to,
                        message,
                        due_ms,
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "cannot build the retry; the task stays failed");
                    Settle::Ack
                }
            }
        }
        Plan::Dead => {
            run.state = TaskState::Dead;
            tracing::warn!("out of retries: dead-lettered");
            Settle::Dead {
                to,
                message: attempt.payload.to_vec(),
            }
        }
    }
}

/// The message of the next attempt: one more try, one retry fewer, due at `due_ms`.
pub fn next_attempt(mut message: Message, retries_left: u32, due_ms: u64) -> Message {
    message.tried = message.tried.saturating_add(1);
    message.retries = Some(retries_left.saturating_sub(1));
    message.eta = Some(due_ms);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(retries: u32) -> Policy {
        Policy {
            retries_left: retries,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
        }
    }

    #[test]
    fn delays_double_with_jitter_and_stop_at_the_cap() {
        let p = policy(5);
        for (tried, full) in [
            (0, 1000),
            (1, 2000),
            (2, 4000),
            (3, 8000),
            (4, 10_000),
            (30, 10_000),
        ] {
            assert_eq!(
                p.delay(tried, 0).as_millis(),
                full / 2,
                "low end, tried {tried}"
            );
            assert!(p.delay(tried, u64::MAX - 1).as_millis() <= full);
            assert_eq!(
                p.delay(tried, full as u64 / 2).as_millis(),
                full,
                "high end, tried {tried}"
            );
        }
    }

    #[test]
    fn failures_retry_until_the_budget_is_spent_then_die() {
        let failed = TaskError::new("boom");
        assert!(matches!(
            policy(2).plan(TaskState::Failed, Some(&failed), 0, 0),
            Plan::Retry(_)
        ));
        assert_eq!(
            policy(0).plan(TaskState::Failed, Some(&failed), 3, 0),
            Plan::Dead
        );
        assert!(matches!(
            policy(1).plan(TaskState::TimedOut, Some(&failed), 0, 0),
            Plan::Retry(_)
        ));
    }

    #[test]
    fn fatal_errors_and_cancels_never_retry() {
        let fatal = TaskError::fatal("bad input");
        assert_eq!(
            policy(5).plan(TaskState::Failed, Some(&fatal), 0, 0),
            Plan::Done
        );
        let cancelled = TaskError::cancelled();
        assert_eq!(
            policy(5).plan(TaskState::Cancelled, Some(&cancelled), 0, 0),
            Plan::Done
        );
        assert_eq!(policy(5).plan(TaskState::Succeeded, None, 0, 0), Plan::Done);
    }

    #[test]
    fn a_task_may_ask_for_its_own_delay() {
        let later = TaskError::retry_after(Duration::from_secs(42), "busy");
        assert_eq!(
            policy(1).plan(TaskState::Failed, Some(&later), 0, 0),
            Plan::Retry(Duration::from_secs(42))
        );
    }
}
