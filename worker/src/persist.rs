//! Writing through a Redis outage: a step a run cannot go on without (deferring a message,
//! taking a limit, dead-lettering bytes) is retried with capped backoff until it is done or
//! the run is abandoned at shutdown; then the message stays pending in Redis, recoverable.

use std::time::Duration;

use stevedore_runtime::Backoff;
use tokio_util::sync::CancellationToken;

/// Runs `step` until it succeeds (`Some`), retrying with backoff and logging once per state
/// change; `None` when `abandon` fires first.
pub async fn until_written<T, F, Fut>(
    abandon: &CancellationToken,
    what: &str,
    mut step: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = stevedore::Result<T>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    let mut failing: Option<String> = None;
    loop {
        match step().await {
            Ok(done) => {
                if failing.is_some() {
                    tracing::info!("could {what} again");
                }
                return Some(done);
            }
            Err(error) if failing.as_deref() != Some(&error.to_string()) => {
                tracing::warn!(%error, "cannot {what}; retrying");
                failing = Some(error.to_string());
            }
            Err(_) => {}
        }
        if !backoff.wait(abandon).await {
            tracing::error!("cannot {what} before shutdown; the message stays pending");
            return None;
        }
    }
}
