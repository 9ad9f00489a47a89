//! The child side of the process pool: run tasks handed over the private socket, one at a time,
//! until the parent closes it.
//!
//! 1. Connects to the socket named by `STEVEDORE_CHILD_SOCKET` and says it is ready.
//! 2. Runs each task it is given with the tasks linked into this binary, and replies.
//! 3. On SIGUSR1 fires the running task's cancellation token (the parent kills it if it does
//!    not stop); ignores SIGINT/SIGTERM, which belong to the parent.
//! 4. Exits when the socket closes (the parent retired it, or died).

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stevedore::{Client, Invocation, TaskContext, TaskError, TaskErrorKind};
use tokio::net::UnixStream;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use super::frame::{self, ErrorKind, ToChild, ToParent};
use super::guard::{run_guarded, TimeLimits};
use crate::stop::StopSignal;
use crate::task_table::TaskTable;

/// Runs this process as a pool child on `socket`.
pub fn main(socket: String) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: pool child cannot start its runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(socket)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: pool child: {}", stevedore_runtime::one_line(&error));
            ExitCode::FAILURE
        }
    }
}

async fn serve(socket: String) -> anyhow::Result<()> {
    let mut stream = UnixStream::connect(&socket).await?;
    let table = TaskTable::linked()?;
    let url = std::env::var("STEVEDORE_REDIS_URL").unwrap_or_default();
    let namespace = std::env::var("STEVEDORE_NAMESPACE").unwrap_or_else(|_| "stevedore".into());
    let node: Arc<str> = std::env::var("STEVEDORE_NODE").unwrap_or_default().into();
    let client = Client::connect(&url, &namespace).await?;
    let current: Arc<Mutex<Option<CancellationToken>>> = Arc::default();
    watch_signals(current.clone())?;
    frame::write(
        &mut stream,
        &ToParent::Ready {
            pid: std::process::id(),
        },
    )
    .await?;
    while let Some(ToChild::Run {
        id,
        task,
        args,
        kwargs,
        attempt,
        queue,
    }) = frame::read(&mut stream).await?
    {
        let stop = StopSignal::new(&CancellationToken::new());
        *current.lock().unwrap_or_else(|p| p.into_inner()) = Some(stop.token().clone());
        let outcome = match table.get(&task) {
            None => Err(TaskError::fatal(format!("unknown task {task}"))),
            Some(registration) => {
                let context = TaskContext::new(
                    &id,
                    &task,
                    attempt,
                    node.clone(),
                    &queue,
                    stop.token().clone(),
                    client.clone(),
                );
                let invocation = Invocation {
                    args,
                    kwargs,
                    context,
                };
                run_guarded(
                    registration,
                    invocation,
                    &stop,
                    TimeLimits::default(),
                    Duration::ZERO,
                )
                .await
            }
        };
        *current.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let outcome = outcome.map_err(|e| (error_kind(&e), e.message().to_owned()));
        frame::write(&mut stream, &ToParent::Done { outcome }).await?;
    }
    Ok(())
}

fn watch_signals(current: Arc<Mutex<Option<CancellationToken>>>) -> std::io::Result<()> {
    let mut user1 = signal(SignalKind::user_defined1())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = user1.recv() => {
                    if let Some(token) = current.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                        token.cancel();
                    }
                }
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
    });
    Ok(())
}

fn error_kind(error: &TaskError) -> ErrorKind {
    match error.kind() {
        TaskErrorKind::Fatal => ErrorKind::Fatal,
        TaskErrorKind::Cancelled => ErrorKind::Cancelled,
        _ => ErrorKind::Failed,
    }
}
