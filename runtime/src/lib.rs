//! What every long-lived stevedore binary (worker, beat, the admin command line) shares.
//!
//! 1. [`GlobalArgs`] (Redis URL and namespace), [`TargetArgs`] (`--queue`/`--node`/
//!    `--broadcast`), [`ControlArgs`] (`worker --status ...`) and the value parsers
//!    ([`parse_duration`], [`parse_size`]).
//! 2. Logging to stderr and exporting spans ([`init_logging`]), one-line errors ([`fail`], [`one_line`]), and the jittered
//!    [`Backoff`] of every reconnect and retry loop.
//! 3. Long-lived binaries ([`run_until_signalled`]): the first SIGINT/SIGTERM asks for a
//!    graceful stop, the second exits at once (what is unfinished stays pending in Redis);
//!    they wait for Redis at start ([`connect_waiting`]) instead of exiting.
//! 4. [`control`]: asking nodes (`worker --status|--running|--reload|--cancel`, and the
//!    `stevedore` commands of the same names) and printing their answers.
//!
//! The crate graph is `stevedore-macros <- stevedore <- stevedore-runtime <- stevedore-worker,
//! stevedore-beat`, with `stevedore-cli` (the admin binary and the dashboard server, over
//! `stevedore-web`) on top: worker and beat are siblings that share this crate, not each
//! other, and neither links the dashboard (tests/tests/ops/workspace.rs checks it).

mod args;
mod backoff;
pub mod control;
mod signals;
mod telemetry;

use std::future::Future;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

pub use args::{
    node_name, parse_duration, parse_period, parse_size, CallArgs, ControlArgs, GlobalArgs,
    LogFormat, TargetArgs,
};
pub use backoff::Backoff;
pub use telemetry::{init_logging, init_logging_with, BoxedLayer, Telemetry};

/// Prints `error: ...` on one line and returns failure.
pub fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {}", one_line(error));
    ExitCode::FAILURE
}

/// An error and its causes as one printable line: `what: why: why`, each cause once. A cause
/// whose text its parent already shows is left out (redis-rs shows a server error's text and
/// then gives the same error again as its source), and control characters are escaped.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut previous = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !previous.is_empty() && previous.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
        previous = text;
    }
    stevedore::admin::format::printable(&line).into_owned()
}

/// Runs a long-lived binary's `body` on a multi-threaded runtime until it returns; the first
/// SIGINT/SIGTERM cancels its token, the second exits at once. Errors become one line and a
/// failure exit code.
pub fn run_until_signalled<F, Fut>(body: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&anyhow::anyhow!("cannot start the async runtime: {error}")),
    };
    let outcome = runtime.block_on(async {
        let stop = CancellationToken::new();
        signals::install(stop.clone())?;
        body(stop).await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

/// Connects, retrying with capped backoff while Redis is unreachable (one log line per state
/// change); a bad URL or refused credentials fail at once. `None` when stopped before Redis answered.
pub async fn connect_waiting(
    config: stevedore::ClientConfig,
    stop: &CancellationToken,
) -> anyhow::Result<Option<stevedore::Client>> {
    let mut backoff = Backoff::new(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(5),
    );
    let mut warned = false;
    loop {
        match stevedore::Client::with_config(config.clone()).await {
            Ok(client) => {
                if warned {
                    tracing::info!("redis answers; starting");
                }
                return Ok(Some(client));
            }
            // A wrong password is not an outage: one line and a failure exit, not a wait.
            Err(error) if error.is_refused_credentials() => return Err(error.into()),
            Err(error @ stevedore::Error::Unreachable { .. }) => {
                if !warned {
                    tracing::warn!(%error, "waiting for redis");
                    warned = true;
                }
            }
            Err(error) => return Err(error.into()),
        }
        if !backoff.wait(stop).await {
            return Ok(None);
        }
    }
}
