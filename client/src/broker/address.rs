//! The Redis URL forms stevedore accepts, parsed into where and how to connect.
//!
//! | form                                                   | deployment                    |
//! |--------------------------------------------------------|-------------------------------|
//! | `redis://[USER:PASS@]HOST:PORT[/DB]`                   | one server                    |
//! | `rediss://[USER:PASS@]HOST:PORT[/DB][#insecure]`       | one server over TLS           |
//! | `unix:///PATH[?db=N]`                                  | one server on a Unix socket   |
//! | `redis+sentinel://[USER:PASS@]H:P,H:P/MASTER[/DB]`     | Sentinel: the master of MASTER |
//! | `rediss+sentinel://...`                                | Sentinel, TLS to every server |
//! | `redis+cluster://[USER:PASS@]H:P,H:P,...`              | Redis Cluster (seed nodes)    |
//! | `rediss+cluster://...`                                 | Redis Cluster over TLS        |
//!
//! Credentials in the URL are for the data servers (master, replicas, cluster nodes);
//! sentinels are asked without them.

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

/// Where the data lives.
#[derive(Clone)]
pub(crate) enum Topology {
    /// One server (possibly with replicas nobody talks to).
    Single(ConnectionInfo),
    /// A master found through sentinels.
    Sentinel {
        /// The sentinels' addresses.
        sentinels: Vec<ConnectionAddr>,
        /// The master's service name.
        master: String,
        /// The database number on the master.
        db: i64,
    },
    /// A Redis Cluster reached through seed nodes.
    Cluster {
        /// The seed nodes.
        seeds: Vec<ConnectionInfo>,
    },
}

/// A parsed Redis URL.
#[derive(Clone)]
pub(crate) struct RedisAddress {
    pub topology: Topology,
    /// TLS to the data servers (`rediss`).
    pub tls: bool,
    /// Skip certificate verification (`#insecure`): for tests only.
    pub insecure: bool,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl RedisAddress {
    /// Parses `url`; the error says what is wrong in one line.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| "missing `://` after the scheme".to_owned())?;
        match scheme {
            "redis+cluster" | "rediss+cluster" => cluster(scheme.starts_with("rediss"), rest),
            "redis+sentinel" | "rediss+sentinel" => sentinel(scheme.starts_with("rediss"), rest),
            _ => single(url),
        }
    }
}

fn single(url: &str) -> Result<RedisAddress, String> {
    let info = url.into_connection_info().map_err(|e| e.to_string())?;
    let (tls, insecure) = match info.addr() {
        ConnectionAddr::TcpTls { insecure, .. } => (true, *insecure),
        _ => (false, false),
    };
    let settings = info.redis_settings();
    Ok(RedisAddress {
        username: settings.username().map(str::to_owned),
        password: settings.password().map(str::to_owned),
        topology: Topology::Single(info),
        tls,
        insecure,
    })
}

/// `[USER:PASS@]H:P,H:P,...[/]` (a fragment `#insecure` allowed).
fn cluster(tls: bool, rest: &str) -> Result<RedisAddress, String> {
    let (rest, insecure) = split_insecure(rest);
    let (username, password, hosts) = split_userinfo(rest)?;
    let hosts = hosts.trim_end_matches('/');
    if hosts.contains('/') {
        return Err("a cluster URL has no database or path: Redis Cluster has only db 0".into());
    }
    let seeds = host_ports(hosts)?
        .into_iter()
        .map(|(host, port)| tcp_addr(tls, insecure, host, port).into_connection_info())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok(RedisAddress {
        topology: Topology::Cluster { seeds },
        tls,
        insecure,
        username,
        password,
    })
}

/// `[USER:PASS@]H:P,H:P/MASTER[/DB]`.
fn sentinel(tls: bool, rest: &str) -> Result<RedisAddress, String> {
    let (rest, insecure) = split_insecure(rest);
    let (username, password, rest) = split_userinfo(rest)?;
    let (hosts, path) = rest
        .split_once('/')
        .ok_or_else(|| "a sentinel URL names the master: .../MASTER_NAME".to_owned())?;
    let (master, db) = match path.split_once('/') {
        Some((master, db)) => (
            master,
            db.trim_end_matches('/')
                .parse::<i64>()
                .map_err(|_| format!("database `{db}` is not a number"))?,
        ),
        None => (path, 0),
    };
    if master.is_empty() {
        return Err("a sentinel URL names the master: .../MASTER_NAME".into());
    }
    let sentinels = host_ports(hosts)?
        .into_iter()
        .map(|(host, port)| tcp_addr(tls, insecure, host, port))
        .collect();
    Ok(RedisAddress {
        topology: Topology::Sentinel {
            sentinels,
            master: master.to_owned(),
            db,
        },
        tls,
        insecure,
        username,
        password,
    })
}

fn split_insecure(rest: &str) -> (&str, bool) {
    match rest.split_once('#') {
        Some((rest, fragment)) => (rest, fragment == "insecure"),
        None => (rest, false),
    }
}

type Userinfo<'a> = (Option<String>, Option<String>, &'a str);

/// Splits `USER:PASS@rest`; user and password are percent-decoded.
fn split_userinfo(rest: &str) -> Result<Userinfo<'_>, String> {
    let Some((userinfo, hosts)) = rest.rsplit_once('@') else {
        return Ok((None, None, rest));
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    let user = Some(percent_decode(user)?).filter(|u| !u.is_empty());
    let password = password.map(percent_decode).transpose()?;
    Ok((user, password, hosts))
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "bad percent-escape in the user or password".to_owned())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the user or password is not UTF-8".to_owned())
}

/// `H:P,H:P` into (host, port) pairs; the port defaults to 6379 (26379 is not assumed).
fn host_ports(hosts: &str) -> Result<Vec<(String, u16)>, String> {
    let pairs: Vec<(String, u16)> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| match h.rsplit_once(':') {
            Some((host, port)) => port
                .parse::<u16>()
                .map(|port| (host.to_owned(), port))
                .map_err(|_| format!("port `{port}` of `{h}` is not a number")),
            None => Ok((h.to_owned(), 6379)),
        })
        .collect::<Result<_, _>>()?;
    if pairs.is_empty() {
        return Err("no HOST:PORT given".into());
    }
    Ok(pairs)
}

fn tcp_addr(tls: bool, insecure: bool, host: String, port: u16) -> ConnectionAddr {
    if tls {
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host, port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_list_seeds_and_credentials() {
        let address = RedisAddress::parse("rediss+cluster://app:p%40ss@a:7000,b:7001/").unwrap();
        assert!(address.tls && matches!(address.topology, Topology::Cluster { .. }));
        assert_eq!(address.username.as_deref(), Some("app"));
        assert_eq!(address.password.as_deref(), Some("p@ss"));
        let Topology::Cluster { seeds } = address.topology else {
            panic!("not a cluster");
        };
        assert_eq!(seeds.len(), 2);
        assert!(RedisAddress::parse("redis+cluster://a:7000/3").is_err());
        assert!(RedisAddress::parse("redis+cluster://").is_err());
    }

    #[test]
    fn sentinel_urls_name_the_master_and_db() {
        let address = RedisAddress::parse("redis+sentinel://s1:26379,s2:26380/mymaster/2").unwrap();
        let Topology::Sentinel {
            sentinels,
            master,
            db,
        } = address.topology
        else {
            panic!("not sentinel");
        };
        assert_eq!((sentinels.len(), master.as_str(), db), (2, "mymaster", 2));
        assert!(RedisAddress::parse("redis+sentinel://s1:26379").is_err());
        assert!(RedisAddress::parse("redis+sentinel://s1:26379/m/x").is_err());
    }

    #[test]
    fn single_urls_keep_their_tls_and_credentials() {
        let address = RedisAddress::parse("rediss://u:pw@h:6380/1#insecure").unwrap();
        assert!(address.tls && address.insecure);
        assert!(matches!(address.topology, Topology::Single(_)));
        assert_eq!(address.password.as_deref(), Some("pw"));
        assert!(RedisAddress::parse("localhost:6379").is_err());
    }
}
