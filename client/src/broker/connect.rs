//! Opening connections: the shared command connection, the pool for blocking waits, and
//! dedicated connections for components that block (see DESIGN §11 for why each exists).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use redis::{AsyncConnectionConfig, IntoConnectionInfo};

use super::{Broker, Connection, Inner, Keys};
use crate::queue::validate_name;
use crate::{Error, Result};

/// How to reach Redis and which namespace to use.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `redis://[user:password@]host:port[/db]` or `unix:///path/to/socket`.
    pub url: String,
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
        }
    }
}

/// The URL with any password replaced by `***`, safe for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
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
        let info = connection_info(&config)?;
        let client = redis::Client::open(info.clone()).map_err(|e| Error::InvalidUrl {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        let unreachable = |e: &dyn std::fmt::Display| Error::Unreachable {
            url: shown.clone(),
            reason: e.to_string(),
        };
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let mut commands = tokio::time::timeout(
            config.connect_timeout * 2,
            client.get_connection_manager_with_config(manager_config),
        )
        .await
        .map_err(|e| unreachable(&e))?
        .map_err(|e| unreachable(&e))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut commands)
            .await
            .map_err(|e| unreachable(&e))?;
        let blocking = blocking_pool(&config, info)?;
        Ok(Self {
            inner: Arc::new(Inner {
                keys: Keys::new(&config.namespace),
                config,
                client,
                commands,
                blocking,
            }),
        })
    }

    /// A connection of its own for a component that blocks on Redis (a fetcher's XREADGROUP
    /// BLOCK) or writes on the hot path; `block` is the longest server-side block it will ask
    /// for, so replies are awaited that long plus the response timeout.
    ///
    /// It is named `stevedore:LABEL:ROLE` (`CLIENT SETNAME`) so `CLIENT LIST` shows whose it is.
    pub async fn dedicated_connection(&self, block: Duration, role: &str) -> Result<Connection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.config.connect_timeout))
            .set_response_timeout(Some(block + self.inner.config.response_timeout));
        let unreachable = |e: redis::RedisError| Error::Unreachable {
            url: redact_url(&self.inner.config.url),
            reason: e.to_string(),
        };
        let mut conn = self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(unreachable)?;
        let label = self.inner.config.label.as_deref().unwrap_or("client");
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(format!("stevedore:{label}:{role}"))
            .query_async::<()>(&mut conn)
            .await
            .map_err(unreachable)?;
        Ok(conn)
    }

    /// Checks out a pooled connection for one blocking wait.
    pub(crate) async fn blocking_connection(&self) -> Result<deadpool_redis::Connection> {
        self.inner
            .blocking
            .get()
            .await
            .map_err(|e| Error::Unreachable {
                url: redact_url(&self.inner.config.url),
                reason: e.to_string(),
            })
    }

    /// The server-side id of `conn` (`CLIENT ID`), to wake it from a block with [`Broker::unblock`].
    pub async fn client_id(&self, conn: &mut Connection) -> Result<i64> {
        Ok(redis::cmd("CLIENT").arg("ID").query_async(conn).await?)
    }

    /// Ends the blocking command of connection `client_id` as if it had timed out (used at
    /// shutdown so a fetcher stops at once without losing what it read).
    pub async fn unblock(&self, client_id: i64) -> Result<()> {
        let _: i64 = redis::cmd("CLIENT")
            .arg("UNBLOCK")
            .arg(client_id)
            .arg("TIMEOUT")
            .query_async(&mut self.commands())
            .await?;
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

/// Parses the URL and labels the connections with the library version and the label.
fn connection_info(config: &BrokerConfig) -> Result<redis::ConnectionInfo> {
    let info = config
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| Error::InvalidUrl {
            url: redact_url(&config.url),
            reason: e.to_string(),
        })?;
    let version = match &config.label {
        Some(label) => format!("{}+{label}", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_owned(),
    };
    let settings = info
        .redis_settings()
        .clone()
        .set_lib_name("stevedore", version);
    Ok(info.set_redis_settings(settings))
}

fn blocking_pool(
    config: &BrokerConfig,
    info: redis::ConnectionInfo,
) -> Result<deadpool_redis::Pool> {
    let connection = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(None);
    let manager = deadpool_redis::Manager::new_with_config(info, connection).map_err(|e| {
        Error::InvalidUrl {
            url: redact_url(&config.url),
            reason: e.to_string(),
        }
    })?;
    deadpool_redis::Pool::builder(manager)
        .max_size(16)
        .wait_timeout(Some(config.connect_timeout))
        .create_timeout(Some(config.connect_timeout))
        .recycle_timeout(Some(config.connect_timeout))
        .runtime(deadpool_redis::Runtime::Tokio1)
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
    }
}
