//! A `redis-server` speaking only TLS, with a certificate made by the test, and optional ACL
//! users.

use std::path::{Path, PathBuf};

use crate::tcp_node::{free_port, TcpNode};

/// A TLS-only server, killed when dropped.
pub struct TlsRedis {
    node: TcpNode,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    /// Starts a server whose certificate (for `localhost` and `127.0.0.1`) is self-signed
    /// by the test; `acl` lines (`user NAME on >PASS ...`) are added to its config, and
    /// `default_user_off` turns the passwordless default user off.
    pub fn start(acl: &[String], default_user_off: bool) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let (cert, key) = make_certificate(dir.path());
        let mut config = String::new();
        for line in acl {
            config.push_str(line);
            config.push('\n');
        }
        if default_user_off {
            config.push_str("user default off\n");
        }
        let conf = dir.path().join("redis.conf");
        std::fs::write(&conf, config).expect("write redis.conf");
        let mut args = vec![conf.display().to_string()];
        args.extend(tls_args(&cert, &key));
        args.extend(["--maxmemory-policy".into(), "noeviction".into()]);
        let node = TcpNode::spawn(&dir.path().join("data"), free_port(), &args);
        node.wait_ready();
        Self {
            node,
            ca: cert,
            _dir: dir,
        }
    }

    /// `rediss://[USER:PASS@]127.0.0.1:PORT`, verified against [`TlsRedis::ca_file`].
    pub fn url(&self, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((user, pass)) => format!("rediss://{user}:{pass}@127.0.0.1:{}", self.node.port),
            None => format!("rediss://127.0.0.1:{}", self.node.port),
        }
    }

    /// The PEM file to trust (the server's self-signed certificate).
    pub fn ca_file(&self) -> &std::path::Path {
        &self.ca
    }
}

/// Writes a certificate for `localhost` and `127.0.0.1`, self-signed, and its key into `dir`;
/// returns their paths (the certificate is also the CA to trust).
pub fn make_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("make a certificate");
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    std::fs::write(&cert, certified.cert.pem()).expect("write the certificate");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write the key");
    (cert, key)
}

/// `redis-server` arguments to serve TLS with `cert` and `key` (clients need no certificate).
pub fn tls_args(cert: &Path, key: &Path) -> Vec<String> {
    vec![
        "--tls-cert-file".into(),
        cert.display().to_string(),
        "--tls-key-file".into(),
        key.display().to_string(),
        "--tls-ca-cert-file".into(),
        cert.display().to_string(),
        "--tls-auth-clients".into(),
        "no".into(),
    ]
}
