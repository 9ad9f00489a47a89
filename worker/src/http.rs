//! The few lines of HTTP/1.1 that `worker --http` needs, on a bare tokio listener: a worker
//! links no web framework (the dashboard's stack stays in `stevedore-cli`).
//!
//! 1. One request per connection: read the head (at most 8 KiB, within 5 s), answer, close.
//! 2. `GET` (and `HEAD`) of a known path answers what the route says; another method is 405,
//!    another path 404, a head that does not parse 400.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// How long a client has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// An answer: status code, reason, body (`text/plain`).
pub type Reply = (u16, &'static str, String);

/// What answers a path: `None` for a path it does not serve.
pub type Route = dyn Fn(&str) -> Option<Reply> + Send + Sync;

/// Serves `route` on `listener` until `stop`.
pub async fn serve(listener: TcpListener, route: Arc<Route>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "the metrics endpoint cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let route = route.clone();
        tokio::spawn(async move {
            let _ = answer(stream, &*route).await;
        });
    }
}

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
