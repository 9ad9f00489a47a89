//! Opening connections: the shared command connection, the pool for blocking waits, and
//! dedicated connections for components that block (see DESIGN §11 for why each exists).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::address::RedisAddress;
use super::connector::{Connector, ConnectorSettings};
use super::shared::{BlockingPool, PoolManager, SharedConnection};
use super::{Broker, Connection, Inner, Keys};
use crate::queue::validate_name;
use crate::signing::SigningKeys;
use crate::{Error, Result};

/// How to reach Redis and which namespace to use.
///
/// [`BrokerConfig::new`] fills the credentials, TLS roots and signing keys from the
/// environment (`STEVEDORE_REDIS_USERNAME`, `STEVEDORE_REDIS_PASSWORD`,
/// `STEVEDORE_REDIS_PASSWORD_FILE`, `STEVEDORE_REDIS_CA_FILE`, `STEVEDORE_SENTINEL_USERNAME`,
/// `STEVEDORE_SENTINEL_PASSWORD`, `STEVEDORE_SIGNING_KEYS`, `STEVEDORE_SIGNING_KEYS_FILE`),
/// so every binary takes them the same way and no secret
/// has to appear on a command line.
#[derive(Clone)]
pub struct BrokerConfig {
    /// Where Redis is: `redis://`, `rediss://`, `unix://`, `redis+sentinel://`,
    /// `redis+cluster://` (see docs/deployment.md).
    pub url: String,
    /// ACL user, when the URL has none.
    pub username: Option<String>,
    /// Password, when the URL has none (never printed).
    pub password: Option<String>,
    /// A file whose first line is the password, when neither the URL nor `password` has one.
    pub password_file: Option<PathBuf>,
    /// PEM file of the roots to trust for TLS instead of the system's (a private CA).
    pub tls_ca_file: Option<PathBuf>,
    /// ACL user for the sentinels themselves (`redis+sentinel://`), when they require one.
    pub sentinel_username: Option<String>,
    /// Password for the sentinels themselves (their `requirepass`; never printed).
    pub sentinel_password: Option<String>,
    /// Replicas that must confirm a publish, and a worker's records before it acknowledges
    /// (`WAIT`): with 1 or more, nothing Redis acknowledged is lost in a failover to a
    /// replica that confirmed. 0 (the default) trusts asynchronous replication.
    pub replicas_to_ack: u32,
    /// How long to wait for those replicas before failing the write.
    pub replica_ack_timeout: Duration,
    /// Keys to sign published messages with and to check read ones against; `None`: messages
    /// are neither signed nor checked.
    pub signing: Option<SigningKeys>,
    /// Prefix of every key, so several apps can share one Redis.
    pub namespace: String,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on the answer to a short command.
    pub response_timeout: Duration,
    /// Approximate cap of the broadcast stream.
    pub broadcast_cap: u64,
    /// Approximate cap of each dead-letter stream.
    pub dead_letter_cap: u64,
    /// Dead letters older than this are trimmed.
    pub dead_letter_max_age: Duration,
    /// Largest encoded message accepted at publish time, in bytes.
    pub max_payload: usize,
    /// Shown in `CLIENT LIST` as `lib-ver=VERSION+LABEL` on every connection (the node name for
    /// a worker), so an operator can tell whose connections they are.
    pub label: Option<String>,
}

impl BrokerConfig {
    /// A config with defaults for everything but the URL and namespace.
    pub fn new(url: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            namespace: namespace.into(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            broadcast_cap: 10_000,
            dead_letter_cap: 100_000,
            dead_letter_max_age: Duration::from_secs(7 * 86_400),
            max_payload: 1024 * 1024,
            label: None,
            username: env("STEVEDORE_REDIS_USERNAME"),
            password: env("STEVEDORE_REDIS_PASSWORD"),
            password_file: env("STEVEDORE_REDIS_PASSWORD_FILE").map(PathBuf::from),
            tls_ca_file: env("STEVEDORE_REDIS_CA_FILE").map(PathBuf::from),
            sentinel_username: env("STEVEDORE_SENTINEL_USERNAME"),
            sentinel_password: env("STEVEDORE_SENTINEL_PASSWORD"),
            signing: None,
            replicas_to_ack: env("STEVEDORE_WAIT_REPLICAS")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            replica_ack_timeout: Duration::from_secs(2),
        }
    }

    /// The address the URL names, with the credentials of the config filled in.
    fn address(&self) -> Result<RedisAddress> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: redact_url(&self.url),
            reason,
        };
        let mut address = RedisAddress::parse(&self.url).map_err(invalid)?;
        if address.username.is_none() {
            address.username.clone_from(&self.username);
        }
        if address.password.is_none() {
            address.password = match (&self.password, &self.password_file) {
                (Some(password), _) => Some(password.clone()),
                (None, Some(path)) => Some(read_secret_file(path)?),
                (None, None) => None,
            };
        }
        Ok(address)
    }

    fn root_cert(&self) -> Result<Option<Vec<u8>>> {
        self.tls_ca_file
            .as_ref()
            .map(|path| {
                std::fs::read(path).map_err(|e| {
                    Error::InvalidConfig(format!(
                        "cannot read the TLS CA file {} (STEVEDORE_REDIS_CA_FILE): {e}",
                        path.display()
                    ))
                })
            })
            .transpose()
    }
}

impl std::fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("url", &redact_url(&self.url))
            .field("namespace", &self.namespace)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_file", &self.password_file)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("sentinel_username", &self.sentinel_username)
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| "***"),
            )
            .field("signing", &self.signing)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The first line of a secret file, without its line ending.
pub(crate) fn read_secret_file(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::InvalidConfig(format!(
            "cannot read the secret file {}: {e}",
            path.display()
        ))
    })?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// The URL with any password replaced by `***`, safe for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl Broker {
    /// Opens the broker: parses the URL, connects, and checks the server answers.
    ///
    /// A bad URL or an unreachable server is one [`Error`] naming the URL, within
    /// `connect_timeout`.
    pub async fn connect(config: BrokerConfig) -> Result<Self> {
        validate_name("namespace", &config.namespace)?;
        let shown = redact_url(&config.url);
        let address = config.address()?;
        let settings = ConnectorSettings {
            lib_name: "stevedore",
            lib_version: match &config.label {
                Some(label) => format!("{}+{label}", env!("CARGO_PKG_VERSION")),
                None => env!("CARGO_PKG_VERSION").to_owned(),
            },
            root_cert: config.root_cert()?,
            sentinel_username: config.sentinel_username.clone(),
            sentinel_password: config.sentinel_password.clone(),
        };
        let connector =
            Arc::new(
                Connector::new(&address, &settings).map_err(|e| Error::InvalidUrl {
                    url: shown.clone(),
                    reason: e.to_string(),
                })?,
            );
        let mut commands = SharedConnection::new(
            connector.clone(),
            config.connect_timeout,
            config.response_timeout,
        );
        let unreachable = |e: &dyn std::fmt::Display| Error::Unreachable {
            url: shown.clone(),
            reason: e.to_string(),
        };
        let ping = redis::cmd("PING");
        tokio::time::timeout(
            config.connect_timeout * 2,
            ping.query_async::<String>(&mut commands),
        )
        .await
        .map_err(|e| unreachable(&e))?
        .map_err(|e| unreachable(&e))?;
        let blocking = blocking_pool(&config, connector.clone())?;
        let signing = match &config.signing {
            Some(keys) => Some(keys.clone()),
            None => SigningKeys::from_env()?,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                keys: Keys::new(&config.namespace),
                config,
                connector,
                commands,
                blocking,
                signing,
            }),
        })
    }

    /// Whether the deployment is a Redis Cluster (some reads then go slot by slot).
    pub fn is_cluster(&self) -> bool {
        self.inner.connector.is_cluster()
    }

    /// A connection of its own for a component that blocks on Redis (a fetcher's XREADGROUP
    /// BLOCK) or writes on the hot path; `block` is the longest server-side block it will ask
    /// for, so replies are awaited that long plus the response timeout.
    ///
    /// It is named `stevedore:LABEL:ROLE` (`CLIENT SETNAME`) so `CLIENT LIST` shows whose it is.
    pub async fn dedicated_connection(&self, block: Duration, role: &str) -> Result<Connection> {
        let unreachable = |e: redis::RedisError| Error::Unreachable {
            url: redact_url(&self.inner.config.url),
            reason: e.to_string(),
        };
        let mut conn = self
            .inner
            .connector
            .connect(
                self.inner.config.connect_timeout,
                Some(block + self.inner.config.response_timeout),
            )
            .await
            .map_err(unreachable)?;
        if let Connection::Single(_) = conn {
            let label = self.inner.config.label.as_deref().unwrap_or("client");
            redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg(format!("stevedore:{label}:{role}"))
                .query_async::<()>(&mut conn)
                .await
                .map_err(unreachable)?;
        }
        Ok(conn)
    }

    /// Checks out a pooled connection for one blocking wait.
    pub(crate) async fn blocking_connection(
        &self,
    ) -> Result<deadpool::managed::Object<PoolManager>> {
        self.inner
            .blocking
            .get()
            .await
            .map_err(|e| Error::Unreachable {
                url: redact_url(&self.inner.config.url),
                reason: e.to_string(),
            })
    }

    /// The server-side id of `conn` on the node that serves `key` (`CLIENT ID`), to wake it
    /// from a block on that key with [`Broker::unblock`].
    pub async fn client_id(&self, conn: &mut Connection, key: &str) -> Result<ClientId> {
        let id = conn
            .query_on_node_of(key, redis::cmd("CLIENT").arg("ID"))
            .await?;
        Ok(ClientId {
            id,
            key: key.to_owned(),
        })
    }

    /// Ends the blocking command of connection `client` as if it had timed out (used at
    /// shutdown so a fetcher stops at once without losing what it read).
    pub async fn unblock(&self, client: &ClientId) -> Result<()> {
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("UNBLOCK").arg(client.id).arg("TIMEOUT");
        let _: i64 = self.commands().query_on_node_of(&client.key, &cmd).await?;
        Ok(())
    }

    /// The server's `maxmemory-policy`; anything but `noeviction` may silently delete queued work.
    pub async fn eviction_policy(&self) -> Result<String> {
        let reply: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut self.commands())
            .await?;
        Ok(reply.get(1).cloned().unwrap_or_default())
    }
}

/// A connection's id on the server that serves one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId {
    id: i64,
    key: String,
}

fn blocking_pool(config: &BrokerConfig, connector: Arc<Connector>) -> Result<BlockingPool> {
    let manager = PoolManager {
        connector,
        connect_timeout: config.connect_timeout,
    };
    BlockingPool::builder(manager)
        .max_size(16)
        .wait_timeout(Some(config.connect_timeout))
        .create_timeout(Some(config.connect_timeout))
        .recycle_timeout(Some(config.connect_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| Error::InvalidUrl {
            url: redact_url(&config.url),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact_url("redis://user:secret@h:6379/0"),
            "redis://user:***@h:6379/0"
        );
        assert_eq!(redact_url("redis://:secret@h"), "redis://:***@h");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(
            redact_url("redis+cluster://app:pw@a:1,b:2"),
            "redis+cluster://app:***@a:1,b:2"
        );
        assert_eq!(redact_url("redis://app@h:1"), "redis://app@h:1");
    }
}
