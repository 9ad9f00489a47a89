//! A local Sentinel deployment for one test: one master, one replica, three sentinels.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::tcp_node::{free_port, poll_until, TcpNode};

/// The master's service name the sentinels monitor.
pub const MASTER_NAME: &str = "stevedore-test";
/// The sentinels' own password (`requirepass`) in the TLS deployment.
pub const SENTINEL_PASSWORD: &str = "sentinel-secret";

/// A running Sentinel deployment, killed when dropped.
pub struct SentinelSetup {
    data: Vec<TcpNode>,
    sentinels: Vec<TcpNode>,
    /// The certificate to trust, when every node speaks TLS only.
    ca: Option<PathBuf>,
    /// The sentinels' own password, when they require one.
    sentinel_password: Option<&'static str>,
    _dir: tempfile::TempDir,
}

impl SentinelSetup {
    /// Starts the master (AOF on), its replica and three sentinels (quorum 2, down after
    /// 1 s), and waits until the replica is in sync and every sentinel knows the replica.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// The same deployment with every node (data and sentinels) speaking TLS only, with a
    /// certificate made for the test (see [`SentinelSetup::ca_file`]), and sentinels that
    /// require [`SENTINEL_PASSWORD`].
    pub fn start_tls() -> Self {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let sentinel_password = tls.then_some(SENTINEL_PASSWORD);
        let certificate = tls.then(|| crate::tls::make_certificate(dir.path()));
        let tls_args: Vec<String> = match &certificate {
            Some((cert, key)) => {
                let mut args = crate::tls::tls_args(cert, key);
                args.extend(["--tls-replication".to_owned(), "yes".to_owned()]);
                args
            }
            None => Vec::new(),
        };
        let data_args = |extra: &[String]| -> Vec<String> {
            let mut args: Vec<String> = ["--appendonly", "yes", "--maxmemory-policy", "noeviction"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            args.extend_from_slice(extra);
            args.extend_from_slice(&tls_args);
            args
        };
        let master = TcpNode::spawn(&dir.path().join("master"), free_port(), &data_args(&[]));
        master.wait_ready();
        let replica_of = vec![
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            master.port.to_string(),
        ];
        let replica = TcpNode::spawn(
            &dir.path().join("replica"),
            free_port(),
            &data_args(&replica_of),
        );
        replica.wait_ready();
        let sentinels: Vec<TcpNode> = (0..3)
            .map(|i| {
                let sdir = dir.path().join(format!("sentinel{i}"));
                std::fs::create_dir_all(&sdir).expect("create the sentinel's directory");
                let conf = sdir.join("sentinel.conf");
                let mut text = format!(
                    "sentinel monitor {MASTER_NAME} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 10000\n",
                    master.port
                );
                if let Some(password) = sentinel_password {
                    // Sentinels talk to each other with the same password.
                    text.push_str(&format!(
                        "requirepass {password}\nsentinel sentinel-pass {password}\n"
                    ));
                }
                std::fs::write(&conf, text).expect("write sentinel.conf");
                let mut args = vec![conf.display().to_string(), "--sentinel".to_owned()];
                args.extend_from_slice(&tls_args);
                let node = TcpNode::spawn(&sdir, free_port(), &args);
                match sentinel_password {
                    Some(password) => node.with_password(password),
                    None => node,
                }
            })
            .collect();
        let setup = Self {
            data: vec![master, replica],
            sentinels,
            ca: certificate.map(|(cert, _)| cert),
            sentinel_password,
            _dir: dir,
        };
        for sentinel in &setup.sentinels {
            sentinel.wait_ready();
        }
        setup.wait_until("the replica is in sync and known to every sentinel", || {
            setup.replica_in_sync() && setup.sentinels_know_the_replica()
        });
        setup
    }

    /// `redis+sentinel://S1,S2,S3/MASTER_NAME` (`rediss+sentinel://` over TLS).
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let scheme = if self.ca.is_some() { "rediss" } else { "redis" };
        format!("{scheme}+sentinel://{}/{MASTER_NAME}", sentinels.join(","))
    }

    /// The certificate to trust (`STEVEDORE_REDIS_CA_FILE`), when the deployment speaks TLS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// A config for namespace `namespace` on this deployment (trusting its CA over TLS).
    pub fn config(&self, namespace: &str) -> stevedore::broker::BrokerConfig {
        let mut config = stevedore::broker::BrokerConfig::new(self.url(), namespace);
        config.tls_ca_file = self.ca.clone();
        config.sentinel_password = self.sentinel_password.map(str::to_owned);
        config
    }

    /// The port of the master the sentinels name now.
    pub fn master_port(&self) -> u16 {
        let addr: Vec<String> = self.sentinels[0]
            .query(
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(MASTER_NAME),
            )
            .expect("SENTINEL GET-MASTER-ADDR-BY-NAME");
        addr.get(1).and_then(|p| p.parse().ok()).unwrap_or(0)
    }

    /// Forces a failover (`SENTINEL FAILOVER`) and waits until the old replica is master and
    /// the old master follows it; returns the new master's port.
    pub fn failover(&self) -> u16 {
        let old = self.master_port();
        let _: String = self.sentinels[0]
            .query(redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER_NAME))
            .expect("SENTINEL FAILOVER");
        self.wait_until("the sentinels to name a new master", || {
            let now = self.master_port();
            now != old && now != 0 && self.role_of(now) == "master"
        });
        let new = self.master_port();
        self.wait_until("the old master to follow the new one", || {
            self.role_of(old) == "slave"
        });
        new
    }

    /// The role a data node on `port` reports (`master`, `slave`), or "" when unreachable.
    pub fn role_of(&self, port: u16) -> String {
        self.data
            .iter()
            .find(|n| n.port == port)
            .and_then(|node| node.query::<Vec<redis::Value>>(&redis::cmd("ROLE")).ok())
            .and_then(|role| match role.first() {
                Some(redis::Value::BulkString(b)) => String::from_utf8(b.clone()).ok(),
                Some(redis::Value::SimpleString(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }

    fn replica_in_sync(&self) -> bool {
        self.data[1]
            .query::<String>(redis::cmd("INFO").arg("replication"))
            .map(|info| info.contains("master_link_status:up"))
            .unwrap_or(false)
    }

    fn sentinels_know_the_replica(&self) -> bool {
        self.sentinels.iter().all(|s| {
            s.query::<Vec<redis::Value>>(redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER_NAME))
                .map(|replicas| !replicas.is_empty())
                .unwrap_or(false)
        })
    }

    fn wait_until(&self, what: &str, check: impl FnMut() -> bool) {
        poll_until(what, Duration::from_secs(30), check);
    }
}
