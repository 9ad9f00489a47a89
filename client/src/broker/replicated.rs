//! Writes confirmed by replicas: a pipeline sent with `WAIT` after it, on the same connection
//! and in the same round trip (after each slot's part on a cluster).
//!
//! `WAIT` counts the replicas that have what *its own connection* wrote. Sent apart, it can
//! reach another connection than the writes did (a reconnect after a failover, a cluster
//! client that rerouted the slot to the new master) and confirm writes that are gone. In the
//! same pipeline it always follows the writes it confirms.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use super::connection::{bounded, split_by_slot, Connection};
use super::shared::SharedConnection;

impl Connection {
    /// Sends `pipeline`; with `replicas > 0`, fails unless that many replicas of every master
    /// written confirm the writes within `timeout`.
    pub async fn query_replicated<T: FromRedisValue>(
        &mut self,
        pipeline: &Pipeline,
        replicas: u32,
        timeout: Duration,
    ) -> RedisResult<T> {
        if replicas == 0 {
            return pipeline.query_async(self).await;
        }
        pipeline
            .query_async(&mut Replicated {
                conn: self,
                replicas,
                timeout,
            })
            .await
    }
}

impl SharedConnection {
    /// See [`Connection::query_replicated`].
    pub async fn query_replicated<T: FromRedisValue>(
        &mut self,
        pipeline: &Pipeline,
        replicas: u32,
        timeout: Duration,
    ) -> RedisResult<T> {
        match replicas {
            // Through this connection's own pipeline path, which notices a demoted master.
            0 => pipeline.query_async(self).await,
            _ => {
                let confirmed = |mut conn: Connection| async move {
                    conn.query_replicated(pipeline, replicas, timeout).await
                };
                self.with(confirmed).await
            }
        }
    }
}

/// A connection that follows every pipeline with `WAIT`.
struct Replicated<'c> {
    conn: &'c mut Connection,
    replicas: u32,
    timeout: Duration,
}

impl Replicated<'_> {
    async fn send(&mut self, pipeline: &Pipeline) -> RedisResult<Vec<Value>> {
        if pipeline.is_transaction() {
            return Err(RedisError::from((
                redis::ErrorKind::Client,
                "WAIT cannot follow a MULTI/EXEC pipeline here",
            )));
        }
        let mut wait = redis::cmd("WAIT");
        wait.arg(self.replicas).arg(self.timeout.as_millis() as u64);
        let (replies, confirmations) = match &mut *self.conn {
            Connection::Single(conn) => {
                let mut sent = Pipeline::with_capacity(pipeline.len() + 1);
                for cmd in pipeline.cmd_iter() {
                    sent.add_command(cmd.clone());
                }
                sent.add_command(wait);
                let mut replies = conn.req_packed_commands(&sent, 0, sent.len()).await?;
                let confirmation = replies.pop().into_iter().collect();
                (replies, confirmation)
            }
            Connection::Cluster(conn, limit) => {
                let sent = split_by_slot(conn.clone(), pipeline, Some(&wait));
                bounded(*limit + self.timeout, sent).await?
            }
        };
        for confirmation in confirmations {
            self.check(confirmation)?;
        }
        Ok(replies)
    }

    fn check(&self, confirmation: Value) -> RedisResult<()> {
        let confirmed = u32::from_redis_value(confirmation)?;
        if confirmed >= self.replicas {
            return Ok(());
        }
        Err(RedisError::from((
            redis::ErrorKind::Io,
            "writes not replicated",
            format!(
                "only {confirmed} of {} replicas confirmed the writes within {:?} \
                 (STEVEDORE_WAIT_REPLICAS); they may be lost if the master fails now",
                self.replicas, self.timeout
            ),
        )))
    }
}

impl ConnectionLike for Replicated<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut pipeline = Pipeline::with_capacity(1);
            pipeline.add_command(cmd.clone());
            let mut replies = self.send(&pipeline).await?;
            Ok(replies.pop().unwrap_or(Value::Nil))
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        _offset: usize,
        _count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.send(pipeline))
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}
