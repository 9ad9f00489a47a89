//! Opening the broker: the shared command connection, the pool for blocking waits, and
//! dedicated connections for components that block (docs/decisions.md says why each exists:
//! redis-rs's reply timeout would cut a blocking read, and a blocked multiplexed connection
//! stalls every command behind it).

use std::sync::Arc;
use std::time::Duration;

use super::config::redact_url;
use super::deployment::{Deployment, DeploymentSettings};
use super::shared::{BlockingPool, PoolManager, SharedConnection};
use super::{Broker, BrokerConfig, Connection, Inner, Keys};
use crate::queue::validate_name;
use crate::signing::SigningKeys;
use crate::{Error, Result};

impl Broker {
    /// Opens the broker: parses the URL, connects, and checks the server answers.
    ///
    /// A bad URL or an unreachable server is one [`Error`] naming the URL, within
    /// `connect_timeout`.
    pub async fn connect(config: BrokerConfig) -> Result<Self> {
        let shown = redact_url(&config.url);
        let (timeout, broker) = (config.connect_timeout * 2, Self::unconnected(config, true)?);
        let unreachable = |e: &dyn std::fmt::Display| Error::Unreachable {
            url: shown.clone(),
            reason: e.to_string(),
        };
        let ping = redis::cmd("PING");
        tokio::time::timeout(timeout, ping.query_async::<String>(&mut broker.commands()))
            .await
            .map_err(|e| unreachable(&e))?
            .map_err(|e| unreachable(&e))?;
        Ok(broker)
    }

    /// A broker for `config` that has not reached Redis yet (its connections are made on first
    /// use); `keys_from_env`: without keys in the config, read `STEVEDORE_SIGNING_KEYS`.
    pub(crate) fn unconnected(config: BrokerConfig, keys_from_env: bool) -> Result<Self> {
        validate_name("namespace", &config.namespace)?;
        let shown = redact_url(&config.url);
        let address = config.address()?;
        let settings = DeploymentSettings {
            lib_name: "stevedore",
            lib_version: match &config.label {
                Some(label) => format!("{}+{label}", env!("CARGO_PKG_VERSION")),
                None => env!("CARGO_PKG_VERSION").to_owned(),
            },
            root_cert: config.root_cert()?,
            sentinel_username: config.sentinel_username.clone(),
            sentinel_password: config.sentinel_password.clone(),
        };
        let deployment = Deployment::new(&address, &settings).map_err(|e| Error::InvalidUrl {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        let deployment = Arc::new(deployment);
        let commands = SharedConnection::new(
            deployment.clone(),
            config.connect_timeout,
            config.response_timeout,
        );
        let blocking = blocking_pool(&config, deployment.clone())?;
        let signing = match (&config.signing, keys_from_env) {
            (Some(keys), _) => Some(keys.clone()),
            (None, true) => SigningKeys::from_env()?,
            (None, false) => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                keys: Keys::new(&config.namespace),
                config,
                deployment,
                commands,
                blocking,
                signing,
            }),
        })
    }

    /// Whether the deployment is a Redis Cluster (some reads then go slot by slot).
    pub fn is_cluster(&self) -> bool {
        self.inner.deployment.is_cluster()
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
            .deployment
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

fn blocking_pool(config: &BrokerConfig, deployment: Arc<Deployment>) -> Result<BlockingPool> {
    let manager = PoolManager {
        deployment,
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
