//! How to reach Redis: [`BrokerConfig`] (URL, credentials, TLS roots, replicas, caps), filled
//! from the environment so no secret has to appear on a command line; [`redact_url`] for
//! anything printed.

use std::path::PathBuf;
use std::time::Duration;

use super::address::RedisAddress;
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
    /// A worker process whose heartbeat is older than this is lost (the workers'
    /// `--lost-after`): remote control of every node does not wait for it.
    pub lost_after: Duration,
    /// Whether to write task events to the event stream (`NS:{e}:events`): what this process
    /// publishes and, in a worker, its runs. Read from `STEVEDORE_EVENTS` (`1` or `true`);
    /// the worker's `--events` turns it on.
    pub events: bool,
    /// Shown in `CLIENT LIST` as `lib-ver=VERSION+LABEL` on every connection (the node name for
    /// a worker), so an operator can tell whose connections they are.
    pub label: Option<String>,
}

impl BrokerConfig {
    /// A config as the CLI and the binaries read it: `STEVEDORE_REDIS_URL` (default
    /// `redis://127.0.0.1:6379`) and `STEVEDORE_NAMESPACE` (default `stevedore`), then what
    /// [`BrokerConfig::new`] reads (credentials, CA file, `STEVEDORE_WAIT_REPLICAS`); signing
    /// keys come from `STEVEDORE_SIGNING_KEYS[_FILE]` when the broker opens.
    pub fn from_env() -> Self {
        Self::new(
            env("STEVEDORE_REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned()),
            env("STEVEDORE_NAMESPACE").unwrap_or_else(|| "stevedore".to_owned()),
        )
    }

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
            lost_after: crate::nodes::DEFAULT_LOST_AFTER,
            label: None,
            events: env("STEVEDORE_EVENTS")
                .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
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
    pub(super) fn address(&self) -> Result<RedisAddress> {
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

    pub(super) fn root_cert(&self) -> Result<Option<Vec<u8>>> {
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

/// Query parameters whose values are secrets.
const SECRET_PARAMS: [&str; 6] = ["password", "pass", "passwd", "pwd", "secret", "token"];

/// The URL with any password replaced by `***`, safe for logs and errors: the password of the
/// user info (`user:***@host`; without `://` a lone `x@host` is hidden too, since it may be a
/// password), and the values of `password`, `pass`, `passwd`, `pwd`, `secret`, `token` query
/// parameters.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let at = rest.rfind('@');
    let query_start = rest[at.map_or(0, |at| at + 1)..]
        .find('?')
        .map(|q| q + at.map_or(0, |at| at + 1));
    let (base, query) = match query_start {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    let base = match base.rsplit_once('@') {
        Some((userinfo, host)) => match (userinfo.split_once(':'), scheme) {
            (Some((user, _)), _) => format!("{user}:***@{host}"),
            (None, Some(_)) => format!("{userinfo}@{host}"),
            (None, None) => format!("***@{host}"),
        },
        None => base.to_owned(),
    };
    let mut shown = match scheme {
        Some(scheme) => format!("{scheme}://{base}"),
        None => base,
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if SECRET_PARAMS.contains(&name.to_ascii_lowercase().as_str()) => {
                    format!("{name}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&pairs.join("&"));
    }
    shown
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

    #[test]
    fn passwords_in_other_forms_never_reach_logs_either() {
        for (url, shown) in [
            ("user:secret@h:6379", "user:***@h:6379"),
            ("secret@h:6379", "***@h:6379"),
            (
                "redis://h:1/0?password=secret",
                "redis://h:1/0?password=***",
            ),
            (
                "redis://h?db=1&Pass=secret&x=y",
                "redis://h?db=1&Pass=***&x=y",
            ),
            ("h:1?pwd=secret", "h:1?pwd=***"),
            (
                "redis://u:pa?ss@h:1?token=secret",
                "redis://u:***@h:1?token=***",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
            assert!(!redact_url(url).contains("secret"), "{url}");
        }
    }
}
