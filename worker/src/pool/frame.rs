//! What a process-pool parent and its child say to each other over their private socket
//! (never stdout, which the task may write to): length-prefixed MessagePack frames.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame accepted (a message is capped well below this).
const MAX_FRAME: u32 = 64 * 1024 * 1024;

/// Parent to child.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToChild {
    /// Run one task.
    Run {
        /// The task id.
        id: String,
        /// The task name.
        task: String,
        /// Positional arguments.
        args: Vec<rmpv::Value>,
        /// Keyword arguments.
        kwargs: std::collections::BTreeMap<String, rmpv::Value>,
        /// Attempt number.
        attempt: u32,
        /// Where it was published.
        queue: String,
    },
}

/// Child to parent.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToParent {
    /// The child is ready; its pid.
    Ready {
        /// Process id.
        pid: u32,
    },
    /// The run ended.
    Done {
        /// The encoded result, or the error's kind and message.
        outcome: Result<rmpv::Value, (ErrorKind, String)>,
    },
}

/// A task error's kind, as it crosses the socket.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum ErrorKind {
    /// May be retried.
    Failed,
    /// Never retried.
    Fatal,
    /// Stopped because it was cancelled.
    Cancelled,
}

/// Writes one frame.
pub async fn write<T: Serialize>(
    out: &mut (impl AsyncWrite + Unpin),
    value: &T,
) -> std::io::Result<()> {
    let bytes = rmp_serde::to_vec_named(value).map_err(std::io::Error::other)?;
    out.write_u32(bytes.len() as u32).await?;
    out.write_all(&bytes).await?;
    out.flush().await
}

/// Reads one frame; `None` at a clean end of stream.
pub async fn read<T: for<'de> Deserialize<'de>>(
    input: &mut (impl AsyncRead + Unpin),
) -> std::io::Result<Option<T>> {
    let len = match input.read_u32().await {
        Ok(len) => len,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes is too large"
        )));
    }
    let mut bytes = vec![0; len as usize];
    input.read_exact(&mut bytes).await?;
    rmp_serde::from_slice(&bytes)
        .map(Some)
        .map_err(std::io::Error::other)
}
