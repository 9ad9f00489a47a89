//! The few lines of HTTP/1.1 that `worker --http` needs, on a bare tokio listener: a worker
//! links no web framework (the dashboard's stack stays in `stevedore-cli`).
//!
//! 1. One request per connection: read the head (at most 8 KiB, within 5 s), answer (within
//!    5 s), close. A client that sends nothing, or sends slowly, is cut off at 5 s.
//! 2. At most [`MAX_CONNECTIONS`] connections at once: a client beyond them gets `503` and is
//!    closed at once, so idle or hostile clients can never take the file descriptors the task
//!    path needs (its Redis connections), nor fill the kernel's backlog.
//! 3. `GET` (and `HEAD`) of a known path answers what the route says; another method is 405,
//!    another path 404, a head that does not parse 400.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// How long a client has to send its request head, and to take the answer.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 64;

/// An answer: status code, reason, body (`text/plain`).
pub type Reply = (u16, &'static str, String);

/// What answers a path: `None` for a path it does not serve.
pub type Route = dyn Fn(&str) -> Option<Reply> + Send + Sync;

/// Serves `route` on `listener` until `stop`.
pub async fn serve(listener: TcpListener, route: Arc<Route>, stop: CancellationToken) {
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: pause before accepting again, not spin.
                    tracing::warn!(%error, "the metrics endpoint cannot accept a connection");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        () = stop.cancelled() => return,
                    }
                }
            },
            () = stop.cancelled() => return,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            // Full: one short answer if the socket takes it now, and closed at once.
            let _ = stream.try_write(BUSY);
            continue;
        };
        let route = route.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(2 * READ_TIMEOUT, answer(stream, &*route)).await;
            drop(permit);
        });
    }
}

/// The answer to a connection over [`MAX_CONNECTIONS`].
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\nconnection: close\r\n\r\nbusy\n";

/// Reads one request from `stream` and writes its answer.
async fn answer(mut stream: TcpStream, route: &Route) -> std::io::Result<()> {
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await;
    let (status, reason, body, with_body) = match head {
        Ok(Ok(Some(head))) => {
            let mut words = head.split(' ');
            match (words.next(), words.next()) {
                (Some(method @ ("GET" | "HEAD")), Some(path)) => {
                    let path = path.split('?').next().unwrap_or(path);
                    let (status, reason, body) =
                        route(path).unwrap_or((404, "Not Found", "not found\n".into()));
                    (status, reason, body, method == "GET")
                }
                (Some(_), Some(_)) => (405, "Method Not Allowed", "GET only\n".into(), true),
                _ => (400, "Bad Request", "bad request\n".into(), true),
            }
        }
        Ok(Ok(None)) => (400, "Bad Request", "bad request\n".into(), true),
        Ok(Err(error)) => return Err(error),
        Err(_) => (408, "Request Timeout", "request timeout\n".into(), true),
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

/// The request line of a head read up to its blank line; `None` when the head is too long,
/// cut short, or not text.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut chunk).await?;
        if read == 0 || head.len() + read > MAX_HEAD {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..read]);
    }
    let Ok(text) = std::str::from_utf8(&head) else {
        return Ok(None);
    };
    Ok(text.lines().next().map(str::to_owned))
}
