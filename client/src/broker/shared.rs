//! The shared command connection, and the pool of connections for blocking waits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use super::connection::Connection;
use super::deployment::Deployment;

/// A connection shared by every short command of a process; it reconnects on the next
/// command after the connection dropped, or after a `READONLY` reply (a master demoted by a
/// failover: with Sentinel, reconnecting finds the new master). Cheap to clone.
#[derive(Clone)]
pub struct SharedConnection {
    inner: Arc<SharedInner>,
}

struct SharedInner {
    deployment: Arc<Deployment>,
    connect_timeout: Duration,
    response_timeout: Duration,
    /// The connection in use and its generation, so a late error of an old connection does
    /// not throw away a newer one.
    current: Mutex<Option<(u64, Connection)>>,
    connecting: tokio::sync::Mutex<u64>,
}

impl SharedConnection {
    pub(crate) fn new(
        deployment: Arc<Deployment>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(SharedInner {
                deployment,
                connect_timeout,
                response_timeout,
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(0),
            }),
        }
    }

    fn current(&self) -> Option<(u64, Connection)> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) async fn get(&self) -> RedisResult<(u64, Connection)> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let mut generation = self.inner.connecting.lock().await;
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let conn = self
            .inner
            .deployment
            .connect(
                self.inner.connect_timeout,
                Some(self.inner.response_timeout),
            )
            .await?;
        *generation += 1;
        let current = (*generation, conn);
        *self.inner.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(current.clone());
        Ok(current)
    }

    /// Forgets connection `generation` when `error` says it is no use any more.
    pub(super) fn after_error(&self, generation: u64, error: &RedisError) {
        if !must_reconnect(error) || self.inner.deployment.is_cluster() {
            // A cluster connection follows MOVED and reconnects its nodes by itself.
            return;
        }
        let mut current = self.inner.current.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(&*current, Some((g, _)) if *g == generation) {
            *current = None;
        }
    }
}

impl SharedConnection {
    /// Runs `op` on the current connection (opening one if needed); when it fails with an
    /// error that says the connection is no use, the next command opens a new one.
    pub(super) async fn with<T, F, Fut>(&self, op: F) -> RedisResult<T>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let (generation, conn) = self.get().await?;
        let reply = op(conn).await;
        if let Err(error) = &reply {
            self.after_error(generation, error);
        }
        reply
    }

    /// Sends `cmd` to the node serving `key` (see [`Connection::query_on_node_of`]).
    pub async fn query_on_node_of<T: redis::FromRedisValue>(
        &mut self,
        key: &str,
        cmd: &Cmd,
    ) -> RedisResult<T> {
        self.with(|mut conn| async move { conn.query_on_node_of(key, cmd).await })
            .await
    }

    /// Every key matching `pattern` of type `kind`, on every master.
    pub async fn scan(&mut self, pattern: &str, kind: &str) -> RedisResult<Vec<String>> {
        self.with(|mut conn| async move { conn.scan(pattern, kind).await })
            .await
    }
}

/// Whether an error means the connection should be replaced.
pub(crate) fn must_reconnect(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
        || error.code() == Some("READONLY")
}

impl ConnectionLike for SharedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.with(move |mut conn| async move { conn.req_packed_command(cmd).await }))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut conn) = self.get().await?;
            let reply = conn.req_packed_commands(pipeline, offset, count).await;
            match &reply {
                Err(error) => self.after_error(generation, error),
                Ok(values) => {
                    if let Some(Value::ServerError(error)) = values
                        .iter()
                        .find(|v| matches!(v, Value::ServerError(e) if e.code() == "READONLY"))
                    {
                        self.after_error(generation, &error.clone().into());
                    }
                }
            }
            reply
        })
    }

    fn get_db(&self) -> i64 {
        self.current().map_or(0, |(_, conn)| conn.get_db())
    }
}

/// Opens pooled connections for blocking waits (no reply limit: each wait bounds itself).
pub(crate) struct PoolManager {
    pub deployment: Arc<Deployment>,
    pub connect_timeout: Duration,
}

impl deadpool::managed::Manager for PoolManager {
    type Type = Connection;
    type Error = RedisError;

    async fn create(&self) -> Result<Connection, RedisError> {
        self.deployment.connect(self.connect_timeout, None).await
    }

    async fn recycle(
        &self,
        conn: &mut Connection,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<RedisError> {
        let _: String = redis::cmd("PING").query_async(conn).await?;
        Ok(())
    }
}

/// The pool of connections for blocking waits.
pub(crate) type BlockingPool = deadpool::managed::Pool<PoolManager>;
