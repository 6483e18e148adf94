//! Real `redis-server` processes for the redis store's tests: one server on
//! a free loopback port ([`RedisServer`]), or a 3-node Redis Cluster
//! ([`RedisCluster`]), each in its own temporary directory, with no
//! persistence, killed on drop. Waits are bounded (PING, `cluster_state`).
//! `scripts/test.sh` installs `redis-server` and `redis-cli` when missing.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

// Also compiled alone (`tests/store_conformance.rs`), so the port helper
// comes with it.
#[path = "port.rs"]
mod port;
pub use port::free_port;

/// True when `redis-server` answers PING on `port` within `within`.
pub fn answers(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 16];
            if s.write_all(b"PING\r\n").is_ok()
                && s.read(&mut buf).is_ok_and(|n| {
                    // A server that wants a password is up too.
                    buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH")
                })
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// True when something accepts connections on `port` within `within`.
pub fn accepts(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// One `redis-server` on `127.0.0.1:port`.
pub struct RedisServer {
    pub port: u16,
    extra: Vec<String>,
    pub dir: TempDir,
    child: Option<Child>,
    /// TLS only (`--port 0 --tls-port`): readiness is the port accepting.
    tls: bool,
}

impl RedisServer {
    /// Starts a server on a free port; panics when there is none after a
    /// few tries or `redis-server` is not installed.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let mut server = RedisServer {
            port: 0,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            dir,
            child: None,
            tls: false,
        };
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server did not start; is it installed? (scripts/test.sh installs it)");
    }

    /// A server speaking only TLS, with a self-signed certificate for
    /// `localhost` written to `cert.pem` in [`RedisServer::dir`].
    pub fn start_tls() -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        let mut server = RedisServer {
            port: 0,
            extra: [
                "--tls-cert-file",
                "cert.pem",
                "--tls-key-file",
                "key.pem",
                "--tls-ca-cert-file",
                "cert.pem",
                "--tls-auth-clients",
                "no",
            ]
            .map(String::from)
            .to_vec(),
            dir,
            child: None,
            tls: true,
        };
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server with TLS did not start");
    }

    fn spawn(&mut self) -> bool {
        let port = self.port.to_string();
        let ports = if self.tls {
            vec!["--port", "0", "--tls-port", &port]
        } else {
            vec!["--port", &port]
        };
        let child = Command::new("redis-server")
            .args(ports)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(&self.extra)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let up = if self.tls {
            accepts(self.port, Duration::from_secs(5))
        } else {
            answers(self.port, Duration::from_secs(5))
        };
        if up {
            return true;
        }
        self.kill();
        false
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL), as an outage would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "redis-server did not come back on {}",
            self.port
        );
    }

    /// `redis-cli -p <port> <args>`; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    /// `redis-cli` with raw (unescaped) output, for binary values.
    pub fn cli_raw(&self, args: &[&str]) -> Vec<u8> {
        let out = cli_output(self.port, args);
        out.stdout
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn cli_output(port: u16, args: &[&str]) -> Output {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli is installed (scripts/test.sh installs it)")
}

pub fn cli(port: u16, args: &[&str]) -> String {
    let out = cli_output(port, args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Three primaries, no replicas, all 16384 slots assigned.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                // The cluster bus port is chosen too: port + 10000 may be
                // past 65535 for an ephemeral port.
                let bus = free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli is installed");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !cluster
            .nodes
            .iter()
            .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "the cluster never became ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}
