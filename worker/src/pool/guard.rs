//! Running a task body on this process's runtime under its stop signal and time limits.

use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::time::Duration;

use futures_util::FutureExt;
use stevedore::{Invocation, TaskError, TaskRegistration};
use tokio::time::{sleep_until, Instant};

use crate::stop::{StopReason, StopSignal};

/// Time limits of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeLimits {
    /// The task's token fires (it may stop itself); recorded `timed_out` if it then fails.
    pub soft: Option<Duration>,
    /// The run is aborted.
    pub hard: Option<Duration>,
}

/// Runs `task` with `invocation` until it returns, is aborted at its hard limit, or is aborted
/// after a cancel (at once when it takes no context, else after `grace`). A panic is a failure.
pub async fn run_guarded(
    task: &'static TaskRegistration,
    invocation: Invocation,
    stop: &StopSignal,
    limits: TimeLimits,
    grace: Duration,
) -> Result<rmpv::Value, TaskError> {
    let started = Instant::now();
    let body = AssertUnwindSafe((task.handler)(invocation)).catch_unwind();
    let mut body = pin!(body);
    let far = started + Duration::from_secs(86_400 * 365);
    let soft_at = limits.soft.map_or(far, |d| started + d);
    let hard_at = limits.hard.map_or(far, |d| started + d);
    let mut abort_at = far;
    let mut soft_fired = false;
    loop {
        tokio::select! {
            biased;
            outcome = &mut body => {
                return outcome.unwrap_or_else(|panic| Err(TaskError::new(format!(
                    "task panicked: {}",
                    stevedore::__private::panic_message(&panic)
                ))));
            }
            () = sleep_until(hard_at) => {
                stop.stop(StopReason::TimedOut);
                return Err(StopReason::TimedOut.error());
            }
            () = sleep_until(abort_at) => {
                return Err(stop.reason().unwrap_or(StopReason::Cancelled).error());
            }
            () = sleep_until(soft_at), if !soft_fired => {
                soft_fired = true;
                stop.stop(StopReason::TimedOut);
            }
            () = stop.cancel_requested().cancelled(), if abort_at == far => {
                let wait = if task.options.uses_context { grace } else { Duration::ZERO };
                abort_at = Instant::now() + wait;
            }
        }
    }
}
