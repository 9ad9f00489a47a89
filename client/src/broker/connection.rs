//! Connections to any deployment (one server, Sentinel, Cluster) behind one type.
//!
//! - [`Connection`]: one multiplexed connection to a server, or one cluster connection (which
//!   follows MOVED/ASK and reconnects by itself). Pipelines whose commands fall in several
//!   cluster slots are split per slot and sent at once, so batching keeps working on Cluster.
//! - `Deployment`: knows how to open a [`Connection`]; with Sentinel it asks the sentinels for
//!   the current master every time, so a reconnect after a failover finds the new one.
//! - [`SharedConnection`]: the auto-reconnecting connection for short commands; a dropped
//!   connection or a `READONLY` reply (a demoted master) makes the next command reconnect.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// A connection to stevedore's Redis, whatever the deployment.
#[derive(Clone)]
pub enum Connection {
    /// One server (standalone, or the master Sentinel named).
    Single(MultiplexedConnection),
    /// A Redis Cluster, and the longest wait for one reply: the cluster client queues
    /// requests while it repairs its view of the cluster, so the limit is enforced here.
    Cluster(ClusterConnection, Duration),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn, limit) => Box::pin(bounded(*limit, conn.req_packed_command(cmd))),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn, limit) => {
                if pipeline.is_transaction() {
                    Box::pin(bounded(
                        *limit,
                        conn.req_packed_commands(pipeline, offset, count),
                    ))
                } else {
                    let replies = split_by_slot(conn.clone(), pipeline, None);
                    Box::pin(bounded(*limit, async move { Ok(replies.await?.0) }))
                }
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(..) => 0,
        }
    }
}

impl Connection {
    /// Whether this is a cluster connection (a pipeline's commands may then be applied out of
    /// order, one slot's part apart from another's).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(..))
    }

    /// Sends `cmd` to the master serving `key`'s slot: for commands about the connection
    /// itself (`CLIENT ID`, `CLIENT UNBLOCK`) that must reach the node a key lives on.
    pub async fn query_on_node_of<T: redis::FromRedisValue>(
        &mut self,
        key: &str,
        cmd: &Cmd,
    ) -> RedisResult<T> {
        match self {
            Self::Single(conn) => cmd.query_async(conn).await,
            Self::Cluster(conn, limit) => {
                let route = Route::new(hash_slot(key.as_bytes()), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let value = bounded(*limit, conn.route_command(cmd.clone(), routing)).await?;
                redis::FromRedisValue::from_redis_value(value).map_err(RedisError::from)
            }
        }
    }

    /// Every key matching `pattern` of `kind` (a Redis type name), scanning every master of a
    /// cluster.
    pub async fn scan(&mut self, pattern: &str, kind: &str) -> RedisResult<Vec<String>> {
        let mut keys = Vec::new();
        let nodes = match self {
            Self::Single(_) => vec![None],
            Self::Cluster(conn, _) => one_slot_per_master(conn)
                .await?
                .into_iter()
                .map(|slot| {
                    let route = Route::new(slot, SlotAddr::Master);
                    Some(SingleNodeRoutingInfo::SpecificNode(route))
                })
                .collect(),
        };
        for node in nodes {
            scan_node(self, node, pattern, kind, &mut keys).await?;
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

/// `reply`, or a timeout error once `limit` has passed.
pub(super) async fn bounded<T>(
    limit: Duration,
    reply: impl std::future::Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    tokio::time::timeout(limit, reply)
        .await
        .unwrap_or_else(|_| {
            Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no reply from the cluster within {limit:?}"),
            )))
        })
}

/// The cluster hash slot of `key` (CRC16/XMODEM of the hash tag, mod 16384).
pub fn hash_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let close = key[open + 1..].iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &key[open + 1..open + 1 + close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % 16384
}

/// The key a pipelined command is routed by: the first key of a script, else the first
/// argument.
fn routing_key(cmd: &Cmd) -> Option<Vec<u8>> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|arg| match arg {
            redis::Arg::Simple(bytes) => Some(bytes),
            _ => None,
        })
        .collect();
    let name = args.first()?.to_ascii_uppercase();
    let key = match name.as_slice() {
        b"EVAL" | b"EVALSHA" | b"FCALL" => {
            let keys: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
            (keys > 0).then(|| args.get(3)).flatten()?
        }
        _ => args.get(1)?,
    };
    Some(key.to_vec())
}

/// Sends the commands of `pipeline` as one pipeline per slot, all at once, each followed by
/// `trailer` when given (on the same node connection, in the same round trip); returns the
/// commands' replies in order, and the trailer's reply of each part.
pub(super) async fn split_by_slot(
    conn: ClusterConnection,
    pipeline: &Pipeline,
    trailer: Option<&Cmd>,
) -> RedisResult<(Vec<Value>, Vec<Value>)> {
    let mut groups: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    let mut keyless = Vec::new();
    let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
    for (index, cmd) in commands.iter().enumerate() {
        match routing_key(cmd) {
            Some(key) => groups.entry(hash_slot(&key)).or_default().push(index),
            None => keyless.push(index),
        }
    }
    match groups.values_mut().next() {
        Some(first) => first.extend(keyless),
        None => {
            groups.insert(0, keyless);
        }
    }
    let sends = groups.into_values().map(|indexes| {
        let mut conn = conn.clone();
        let mut part = Pipeline::with_capacity(indexes.len() + 1);
        for &index in &indexes {
            part.add_command(commands[index].clone());
        }
        if let Some(trailer) = trailer {
            part.add_command(trailer.clone());
        }
        async move {
            let mut replies = conn.req_packed_commands(&part, 0, part.len()).await?;
            let trailed = trailer.and_then(|_| replies.pop());
            Ok::<_, RedisError>((indexes.into_iter().zip(replies), trailed))
        }
    });
    let mut replies = vec![Value::Nil; commands.len()];
    let mut trailers = Vec::new();
    for (part, trailed) in try_join_all(sends).await? {
        for (index, reply) in part {
            replies[index] = reply;
        }
        trailers.extend(trailed);
    }
    Ok((replies, trailers))
}

/// Scans one server, or the cluster node `node` when given.
async fn scan_node(
    conn: &mut Connection,
    node: Option<SingleNodeRoutingInfo>,
    pattern: &str,
    kind: &str,
    keys: &mut Vec<String>,
) -> RedisResult<()> {
    let mut cursor = 0u64;
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .arg("TYPE")
            .arg(kind);
        let reply = match (&mut *conn, &node) {
            (Connection::Cluster(cluster, limit), Some(node)) => {
                let routing = RoutingInfo::SingleNode(node.clone());
                bounded(*limit, cluster.route_command(cmd, routing)).await?
            }
            (conn, _) => cmd.query_async::<Value>(conn).await?,
        };
        let (next, batch): (u64, Vec<String>) = redis::FromRedisValue::from_redis_value(reply)?;
        keys.extend(batch);
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// One slot served by each master of the cluster that is not failing (masters without slots
/// hold no keys and are left out).
///
/// A command routed by one of its slots reaches that master; routing by address fails when
/// the cluster client has not connected to that node yet.
async fn one_slot_per_master(conn: &mut ClusterConnection) -> RedisResult<Vec<u16>> {
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
    Ok(nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let flags = fields.get(2)?;
            if !flags.contains("master") || flags.contains("fail") {
                return None;
            }
            // Slots follow the 8 fixed fields: "START-END" or "SLOT" ("[...]" are migrations).
            let first = fields.iter().skip(8).find(|f| !f.starts_with('['))?;
            first.split('-').next()?.parse().ok()
        })
        .collect())
}
