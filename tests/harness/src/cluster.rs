//! A local Redis Cluster for one test: three masters and three replicas on loopback ports,
//! joined with `redis-cli --cluster create`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::tcp_node::{free_port, poll_until, TcpNode};

/// A running cluster, killed when dropped.
pub struct RedisCluster {
    nodes: Vec<TcpNode>,
    /// The certificate to trust, when the cluster speaks TLS only.
    ca: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts six nodes (node timeout 1 s, AOF on), joins them as three masters with one
    /// replica each, and waits until every node sees every slot served.
    pub fn start() -> Self {
        Self::start_with(1, false)
    }

    /// Three masters speaking TLS only (clients, cluster bus), without replicas, with a
    /// certificate made for the test (see [`RedisCluster::ca_file`]).
    pub fn start_tls() -> Self {
        Self::start_with(0, true)
    }

    /// `masters` masters without replicas or persistence (the benchmark's clusters): slots are
    /// shared equally and assigned by hand, since `redis-cli --cluster create` wants three.
    pub fn start_bare(masters: usize) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let nodes: Vec<(TcpNode, u16)> = (0..masters)
            .map(|i| {
                let (port, bus) = (free_port(), free_port());
                let args = node_args(bus, false);
                let node = TcpNode::spawn(&dir.path().join(format!("node{i}")), port, &args);
                (node, bus)
            })
            .collect();
        let (first_port, first_bus) = (nodes[0].0.port, nodes[0].1);
        let share = 16384 / masters;
        for (i, (node, _)) in nodes.iter().enumerate() {
            node.wait_ready();
            let last = if i + 1 == masters {
                16383
            } else {
                (i + 1) * share - 1
            };
            let mut add = redis::cmd("CLUSTER");
            add.arg("ADDSLOTSRANGE").arg(i * share).arg(last);
            node.query::<()>(&add).expect("assign the node's slots");
            if i > 0 {
                let mut meet = redis::cmd("CLUSTER");
                meet.arg("MEET")
                    .arg("127.0.0.1")
                    .arg(first_port)
                    .arg(first_bus);
                node.query::<()>(&meet).expect("join the first node");
            }
        }
        let cluster = Self {
            nodes: nodes.into_iter().map(|(node, _)| node).collect(),
            ca: None,
            _dir: dir,
        };
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    }

    fn start_with(replicas: usize, tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let ca = tls.then(|| crate::tls::make_certificate(dir.path()));
        let nodes: Vec<TcpNode> = (0..3 * (1 + replicas))
            .map(|i| {
                let (port, bus) = (free_port(), free_port());
                let mut args = node_args(bus, true);
                args.extend(["--cluster-node-timeout".into(), "1000".into()]);
                if let Some((cert, key)) = &ca {
                    args.extend(crate::tls::tls_args(cert, key));
                    args.extend(["--tls-cluster".into(), "yes".into()]);
                    args.extend(["--tls-replication".into(), "yes".into()]);
                }
                TcpNode::spawn(&dir.path().join(format!("node{i}")), port, &args)
            })
            .collect();
        for node in &nodes {
            node.wait_ready();
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = Command::new(crate::cli_binary());
        if let Some((cert, _)) = &ca {
            create.arg("--tls").arg("--cacert").arg(cert);
        }
        let status = create
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run redis-cli --cluster create");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = Self {
            nodes,
            ca: ca.map(|(cert, _)| cert),
            _dir: dir,
        };
        cluster.wait_healthy(Duration::from_secs(20));
        cluster
    }

    /// The URL to give stevedore: every master as a seed (`rediss+cluster://` over TLS).
    pub fn url(&self) -> String {
        let masters = self.nodes.len().min(3);
        let seeds: Vec<String> = self.nodes[..masters]
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let scheme = if self.ca.is_some() { "rediss" } else { "redis" };
        format!("{scheme}+cluster://{}", seeds.join(","))
    }

    /// The certificate to trust (`STEVEDORE_REDIS_CA_FILE`), when the cluster speaks TLS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// A stevedore client on namespace `stevedore`.
    pub async fn stevedore(&self) -> stevedore::Client {
        stevedore::Client::with_config(self.config("stevedore"))
            .await
            .expect("stevedore connects to the test cluster")
    }

    /// A config for namespace `namespace` on this cluster (trusting its CA over TLS).
    pub fn config(&self, namespace: &str) -> stevedore::broker::BrokerConfig {
        let mut config = stevedore::broker::BrokerConfig::new(self.url(), namespace);
        config.tls_ca_file = self.ca.clone();
        config
    }

    /// A cluster connection for the test's own commands.
    pub async fn connection(&self) -> stevedore::broker::Connection {
        crate::connection_with(self.config("tests")).await
    }

    /// Waits until every running node says `cluster_state:ok` and agrees on the masters.
    pub fn wait_healthy(&self, timeout: Duration) {
        poll_until("a healthy cluster", timeout, || {
            self.nodes.iter().filter(|n| n.is_running()).all(|node| {
                node.query::<String>(redis::cmd("CLUSTER").arg("INFO"))
                    .map(|info| info.contains("cluster_state:ok"))
                    .unwrap_or(false)
            })
        });
    }

    /// SIGKILLs the master serving `key`'s slot, waits until its replica has taken over and
    /// every survivor sees a healthy cluster; returns the killed node's port.
    pub fn kill_master_of(&mut self, key: &str) -> u16 {
        let port = self.master_port_of(key);
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("the master is one of ours");
        node.kill();
        poll_until("a replica to take over", Duration::from_secs(30), || {
            self.master_port_of(key) != port
        });
        self.wait_healthy(Duration::from_secs(30));
        port
    }

    /// Starts the node on `port` again after a kill; a former master rejoins as a replica of
    /// the master that replaced it. Waits until it is in sync.
    pub fn restart_node(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("the node is one of ours");
        node.restart();
        let node = self
            .nodes
            .iter()
            .find(|n| n.port == port)
            .expect("restarted");
        poll_until(
            "the restarted node to sync",
            Duration::from_secs(30),
            || {
                node.query::<String>(redis::cmd("INFO").arg("replication"))
                    .map(|info| {
                        info.contains("role:slave") && info.contains("master_link_status:up")
                    })
                    .unwrap_or(false)
            },
        );
        self.wait_healthy(Duration::from_secs(30));
    }

    /// Moves the slot of `key`, with its keys, to another master (a resharding, done the way
    /// `redis-cli --cluster reshard` does it); returns the new master's port.
    pub fn move_slot_of(&self, key: &str) -> u16 {
        let slot = stevedore::broker::hash_slot(key.as_bytes());
        let from_port = self.master_port_of(key);
        let masters: Vec<&TcpNode> = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .filter(|n| {
                n.query::<String>(redis::cmd("INFO").arg("replication"))
                    .map(|info| info.contains("role:master"))
                    .unwrap_or(false)
            })
            .collect();
        let from = masters
            .iter()
            .find(|n| n.port == from_port)
            .expect("the source master");
        let to = masters
            .iter()
            .find(|n| n.port != from_port)
            .expect("another master");
        let id = |node: &TcpNode| -> String {
            node.query(redis::cmd("CLUSTER").arg("MYID"))
                .expect("CLUSTER MYID")
        };
        let (from_id, to_id) = (id(from), id(to));
        let setslot = |node: &TcpNode, state: &str, owner: &str| {
            let _: () = node
                .query(
                    redis::cmd("CLUSTER")
                        .arg("SETSLOT")
                        .arg(slot)
                        .arg(state)
                        .arg(owner),
                )
                .expect("CLUSTER SETSLOT");
        };
        setslot(to, "IMPORTING", &from_id);
        setslot(from, "MIGRATING", &to_id);
        loop {
            let keys: Vec<String> = from
                .query(
                    redis::cmd("CLUSTER")
                        .arg("GETKEYSINSLOT")
                        .arg(slot)
                        .arg(100),
                )
                .expect("CLUSTER GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            let _: () = from
                .query(
                    redis::cmd("MIGRATE")
                        .arg("127.0.0.1")
                        .arg(to.port)
                        .arg("")
                        .arg(0)
                        .arg(5000)
                        .arg("KEYS")
                        .arg(&keys),
                )
                .expect("MIGRATE");
        }
        for node in &masters {
            setslot(node, "NODE", &to_id);
        }
        self.wait_healthy(Duration::from_secs(20));
        to.port
    }

    /// The port of the master serving `key`, as a running node sees it.
    pub fn master_port_of(&self, key: &str) -> u16 {
        let node = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .expect("a node runs");
        let slot = stevedore::broker::hash_slot(key.as_bytes());
        let slots: redis::Value = node
            .query(redis::cmd("CLUSTER").arg("SLOTS"))
            .expect("CLUSTER SLOTS");
        master_of_slot(&slots, slot).unwrap_or(0)
    }
}

/// The master port of `slot` in a `CLUSTER SLOTS` reply.
/// The arguments of a cluster node whose bus listens on `bus`, with AOF when `aof`.
fn node_args(bus: u16, aof: bool) -> Vec<String> {
    let aof = if aof { "yes" } else { "no" };
    [
        "--cluster-enabled",
        "yes",
        "--cluster-port",
        &bus.to_string(),
        "--cluster-config-file",
        "nodes.conf",
        "--appendonly",
        aof,
        "--maxmemory-policy",
        "noeviction",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn master_of_slot(reply: &redis::Value, slot: u16) -> Option<u16> {
    let redis::Value::Array(ranges) = reply else {
        return None;
    };
    ranges.iter().find_map(|range| {
        let redis::Value::Array(parts) = range else {
            return None;
        };
        let (redis::Value::Int(start), redis::Value::Int(end), redis::Value::Array(master)) =
            (parts.first()?, parts.get(1)?, parts.get(2)?)
        else {
            return None;
        };
        if !(*start..=*end).contains(&i64::from(slot)) {
            return None;
        }
        match master.get(1)? {
            redis::Value::Int(port) => u16::try_from(*port).ok(),
            _ => None,
        }
    })
}
