//! SIGINT/SIGTERM: the first asks for a graceful stop, the second stops at once.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Cancels `stop` at the first SIGINT or SIGTERM, and exits the process at the second (what is
/// unfinished stays pending in Redis).
pub fn install(stop: CancellationToken) -> std::io::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        for count in 1.. {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            if count == 1 {
                tracing::info!(
                    "stopping: no new work; finishing what runs (signal again to stop at once)"
                );
                stop.cancel();
            } else {
                tracing::warn!("stopping at once; unfinished work stays pending in Redis");
                std::process::exit(130);
            }
        }
    });
    Ok(())
}
