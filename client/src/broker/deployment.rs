//! Opening connections to the deployment a URL names.

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, ConnectionInfo, RedisResult, TlsCertificates, TlsMode};

use super::address::{RedisAddress, Topology};
use super::connection::Connection;

/// The longest reply wait that still counts as "no limit" where one must be given (cluster
/// connections for blocking waits, which bound themselves).
const NO_RESPONSE_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// Everything needed to open a connection, besides the URL.
pub(crate) struct DeploymentSettings {
    /// `CLIENT SETINFO lib-name` and `lib-ver`.
    pub lib_name: &'static str,
    pub lib_version: String,
    /// PEM roots to trust for TLS instead of the system's.
    pub root_cert: Option<Vec<u8>>,
    /// Credentials of the sentinels themselves (not of the data nodes).
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
}

/// Opens connections to one deployment.
pub(crate) enum Deployment {
    Single(redis::Client),
    /// The sentinels are asked for the current master at every connect.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    /// The seeds are kept for pub/sub, which any node serves.
    Cluster {
        client: ClusterClient,
        seeds: Vec<redis::Client>,
    },
}

impl Deployment {
    /// A deployment for `address`; fails on settings the client library refuses.
    pub fn new(address: &RedisAddress, settings: &DeploymentSettings) -> RedisResult<Self> {
        let certs = || TlsCertificates {
            client_tls: None,
            root_cert: settings.root_cert.clone(),
        };
        let tls_mode = match (address.tls, address.insecure) {
            (false, _) => None,
            (true, false) => Some(TlsMode::Secure),
            (true, true) => Some(TlsMode::Insecure),
        };
        match &address.topology {
            Topology::Single(info) => {
                let info = with_identity(info.clone(), address, settings);
                Ok(Self::Single(single_client(info, settings)?))
            }
            Topology::Sentinel {
                sentinels,
                master,
                db,
            } => {
                let mut builder = SentinelClientBuilder::new(
                    sentinels.clone(),
                    master,
                    SentinelServerType::Master,
                )?
                .set_client_to_redis_db(*db);
                if let Some(user) = &address.username {
                    builder = builder.set_client_to_redis_username(user);
                }
                if let Some(password) = &address.password {
                    builder = builder.set_client_to_redis_password(password);
                }
                if let Some(user) = &settings.sentinel_username {
                    builder = builder.set_client_to_sentinel_username(user);
                }
                if let Some(password) = &settings.sentinel_password {
                    builder = builder.set_client_to_sentinel_password(password);
                }
                if let Some(mode) = tls_mode {
                    builder = builder
                        .set_client_to_redis_tls_mode(mode)
                        .set_client_to_sentinel_tls_mode(mode);
                    if settings.root_cert.is_some() {
                        builder = builder
                            .set_client_to_redis_certificates(certs())
                            .set_client_to_sentinel_certificates(certs());
                    }
                }
                Ok(Self::Sentinel(tokio::sync::Mutex::new(builder.build()?)))
            }
            Topology::Cluster { seeds } => {
                let seeds: Vec<ConnectionInfo> = seeds
                    .iter()
                    .map(|seed| with_identity(seed.clone(), address, settings))
                    .collect();
                let seed_clients = seeds
                    .iter()
                    .map(|seed| single_client(seed.clone(), settings))
                    .collect::<RedisResult<_>>()?;
                let mut builder = ClusterClientBuilder::new(seeds).retries(3);
                if let Some(user) = &address.username {
                    builder = builder.username(user);
                }
                if let Some(password) = &address.password {
                    builder = builder.password(password);
                }
                if let Some(mode) = tls_mode {
                    builder = builder.tls(mode);
                    if settings.root_cert.is_some() {
                        builder = builder.certs(certs());
                    }
                }
                Ok(Self::Cluster {
                    client: builder.build()?,
                    seeds: seed_clients,
                })
            }
        }
    }

    /// Opens a connection within a few connect timeouts; `response` limits each reply wait
    /// (`None`: no limit, for connections that block).
    pub async fn connect(
        &self,
        connect: Duration,
        response: Option<Duration>,
    ) -> RedisResult<Connection> {
        // A cluster connection asks several nodes in turn; a sentinel one, several sentinels.
        let limit = connect * 3;
        tokio::time::timeout(limit, self.open(connect, response))
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("could not connect within {limit:?}"),
                )))
            })
    }

    async fn open(&self, connect: Duration, response: Option<Duration>) -> RedisResult<Connection> {
        match self {
            Self::Single(client) => single_connection(client, connect, response).await,
            Self::Sentinel(sentinel) => {
                let client = self.sentinel_master(sentinel).await?;
                single_connection(&client, connect, response).await
            }
            Self::Cluster { client, .. } => {
                let limit = response.unwrap_or(NO_RESPONSE_LIMIT);
                let config = ClusterConfig::new()
                    .set_connection_timeout(connect)
                    .set_response_timeout(limit);
                let conn = client.get_async_connection_with_config(config).await?;
                Ok(Connection::Cluster(conn, limit))
            }
        }
    }

    /// A pub/sub connection. On a cluster, classic pub/sub messages reach every node, so any
    /// reachable seed will do.
    pub async fn pubsub(&self) -> RedisResult<redis::aio::PubSub> {
        match self {
            Self::Single(client) => client.get_async_pubsub().await,
            Self::Sentinel(sentinel) => {
                self.sentinel_master(sentinel)
                    .await?
                    .get_async_pubsub()
                    .await
            }
            Self::Cluster { seeds, .. } => {
                let mut last = None;
                for seed in seeds {
                    match seed.get_async_pubsub().await {
                        Ok(pubsub) => return Ok(pubsub),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "no cluster seed to subscribe on",
                    ))
                }))
            }
        }
    }

    /// A client for the master the sentinels name now.
    async fn sentinel_master(
        &self,
        sentinel: &tokio::sync::Mutex<SentinelClient>,
    ) -> RedisResult<redis::Client> {
        sentinel.lock().await.async_get_client().await
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster { .. })
    }
}

/// A multiplexed connection to the server `client` names.
async fn single_connection(
    client: &redis::Client,
    connect: Duration,
    response: Option<Duration>,
) -> RedisResult<Connection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect))
        .set_response_timeout(response);
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    Ok(Connection::Single(conn))
}

/// A client for one server, trusting the configured roots for TLS.
fn single_client(
    info: ConnectionInfo,
    settings: &DeploymentSettings,
) -> RedisResult<redis::Client> {
    let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
    match &settings.root_cert {
        Some(root) if tls => redis::Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls: None,
                root_cert: Some(root.clone()),
            },
        ),
        _ => redis::Client::open(info),
    }
}

/// `info` with the credentials of `address` and the library's name for `CLIENT LIST`.
fn with_identity(
    info: ConnectionInfo,
    address: &RedisAddress,
    settings: &DeploymentSettings,
) -> ConnectionInfo {
    let mut redis = info
        .redis_settings()
        .clone()
        .set_lib_name(settings.lib_name, settings.lib_version.clone());
    if let Some(user) = &address.username {
        redis = redis.set_username(user);
    }
    if let Some(password) = &address.password {
        redis = redis.set_password(password);
    }
    info.set_redis_settings(redis)
}
