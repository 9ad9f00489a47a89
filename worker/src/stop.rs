//! Stopping one run: a cancel request or a time limit, and what the task is allowed to see.
//!
//! ```text
//!            soft timeout                          hard timeout
//! running ───────────────► token fired ──────────────────────► aborted (timed_out)
//!    │                       (task may stop itself: timed_out)
//!    │ cancel
//!    └───────► token fired ── task takes no context ─► aborted at once (cancelled)
//!                         └─ task takes a context ──► grace ─► aborted (cancelled)
//! ```

use std::sync::{Arc, OnceLock};

use stevedore::{CancellationToken, TaskError, TaskState};

/// Why a run was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Someone cancelled the task.
    Cancelled,
    /// It ran past its soft or hard time limit.
    TimedOut,
}

impl StopReason {
    /// The state a run stopped for this reason is recorded with.
    pub fn state(self) -> TaskState {
        match self {
            Self::Cancelled => TaskState::Cancelled,
            Self::TimedOut => TaskState::TimedOut,
        }
    }

    /// The error recorded for a run stopped for this reason.
    pub fn error(self) -> TaskError {
        match self {
            Self::Cancelled => TaskError::cancelled(),
            Self::TimedOut => TaskError::fatal("timed out"),
        }
    }
}

/// The stop signal of one run, shared by the run and whoever may stop it.
#[derive(Debug, Clone)]
pub struct StopSignal {
    /// Fired for any reason; the task sees it through its context.
    token: CancellationToken,
    /// Fired only by a cancel request (the executor aborts on it).
    cancel: CancellationToken,
    reason: Arc<OnceLock<StopReason>>,
}

impl StopSignal {
    /// A signal that also fires when `parent` does (the node's shutdown).
    pub fn new(parent: &CancellationToken) -> Self {
        Self {
            token: parent.child_token(),
            cancel: CancellationToken::new(),
            reason: Arc::new(OnceLock::new()),
        }
    }

    /// The token the task sees.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Fired by a cancel request.
    pub fn cancel_requested(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Asks the run to stop; the first reason given wins.
    pub fn stop(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        if reason == StopReason::Cancelled {
            self.cancel.cancel();
        }
        self.token.cancel();
    }

    /// Why it was told to stop, if it was.
    pub fn reason(&self) -> Option<StopReason> {
        self.reason.get().copied()
    }
}
