//! Shared fixtures: the real `cloakroom` binary on `127.0.0.1:0`
//! ([`TestProxy`]), an in-process upstream ([`upstream`]) and a TLS client
//! ([`client`]). Each test binary uses a different subset.
#![allow(dead_code, unused_imports)]

pub mod body;
pub mod client;
pub mod flask;
pub mod node;
pub mod oidc;
pub mod realapp;
pub mod redis;
pub mod replicas;
pub mod session;
pub mod upstream;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

// One port helper per process (its counter must not be duplicated): it
// lives with `redis`, which `tests/store_conformance.rs` also compiles alone.
pub use redis::free_port;

pub use body::{empty, full, Body, Repeat};
pub use client::*;
pub use upstream::{read_request_path, Echo, Upstream};

/// The text of a `proxy.toml`. Listeners are always on `127.0.0.1:0`, the
/// admin API is off unless asked for and sessions live in memory (or, with
/// [`embedded`](ProxyConfig::embedded), in the proxy's own directory), so
/// tests never collide.
#[derive(Clone, Default)]
pub struct ProxyConfig {
    server: Vec<String>,
    rest: String,
    files: Vec<(String, Vec<u8>)>,
    whole: Option<String>,
    admin: bool,
    env: Vec<(String, String)>,
    /// The `[store]` lines; `backend = "memory"` when unset.
    store: Option<String>,
}

impl ProxyConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// One more line for `[server]`, e.g. `request_header_timeout = "1s"`.
    pub fn server(mut self, line: &str) -> Self {
        self.server.push(line.to_string());
        self
    }

    /// Turns the admin listener on (`TestProxy::admin_addr`).
    pub fn admin(mut self) -> Self {
        self.admin = true;
        self
    }

    /// An environment variable for the proxy process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// The `[store]` lines instead of `backend = "memory"`.
    pub fn store(mut self, lines: &str) -> Self {
        self.store = Some(lines.to_string());
        self
    }

    /// `[store] backend = "redis"` at `url` under `key_prefix`.
    pub fn redis(self, url: &str, key_prefix: &str) -> Self {
        self.store(&format!(
            "backend = \"redis\"\nredis_url = \"{url}\"\nkey_prefix = \"{key_prefix}\""
        ))
    }

    /// Adds the plain-HTTP redirect listener.
    pub fn redirect(self) -> Self {
        self.server("redirect_http = \"127.0.0.1:0\"")
    }

    /// A `[[route]]` to `upstream` (`http://…`), plus any extra keys.
    pub fn route(mut self, upstream: &str, extra: &str) -> Self {
        self.rest.push_str(&format!(
            "\n[[route]]\nupstream = \"{upstream}\"\n{extra}\n"
        ));
        self
    }

    /// The embedded store, in `data/sessions.db` under the proxy's directory.
    pub fn embedded(self) -> Self {
        self.store_at("data/sessions.db")
    }

    /// The embedded store at `path` (relative to the proxy's directory).
    pub fn store_at(mut self, path: &str) -> Self {
        self.store = Some(format!("backend = \"embedded\"\npath = \"{path}\""));
        self
    }

    /// Any other TOML, appended after `[server]` and `[store]`.
    pub fn raw(mut self, text: &str) -> Self {
        self.rest.push_str(&format!("\n{text}\n"));
        self
    }

    /// A complete `proxy.toml`, used as it is instead of the built one (no
    /// loopback, admin or store lines added: the caller sees to those).
    pub fn verbatim(text: &str) -> Self {
        Self {
            whole: Some(text.to_string()),
            ..Self::default()
        }
    }

    /// A file written into the proxy's directory before it starts.
    pub fn file(mut self, rel: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((rel.to_string(), contents.into()));
        self
    }

    pub fn render(&self) -> String {
        if let Some(whole) = &self.whole {
            return whole.clone();
        }
        let admin = if self.admin { "127.0.0.1:0" } else { "" };
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"{admin}\"\n{}\n\n[store]\n{}\n{}",
            self.server.join("\n"),
            self.store.as_deref().unwrap_or("backend = \"memory\""),
            self.rest
        )
    }

    fn has_redirect(&self) -> bool {
        if let Some(whole) = &self.whole {
            let table: toml::Table = toml::from_str(whole).unwrap();
            return table
                .get("server")
                .and_then(|s| s.get("redirect_http"))
                .and_then(|v| v.as_str())
                .is_some_and(|v| !v.is_empty());
        }
        self.server
            .iter()
            .any(|l| l.trim_start().starts_with("redirect_http"))
    }
}

/// The proxy binary, running in its own temporary directory; killed on drop.
pub struct TestProxy {
    pub dir: TempDir,
    pub https_addr: SocketAddr,
    pub redirect_addr: Option<SocketAddr>,
    /// Set when the config asked for the admin listener ([`ProxyConfig::admin`]).
    pub admin_addr: Option<SocketAddr>,
    pub pid: u32,
    /// The environment the process was started with (kept for restarts).
    env: Vec<(String, String)>,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

/// A proxy with one route to `up` and extra `[server]` lines.
pub async fn proxy_to(up: &Upstream, server: &[&str]) -> TestProxy {
    let mut config = ProxyConfig::new().route(&up.url(), "");
    for line in server {
        config = config.server(line);
    }
    TestProxy::start(&config).await
}

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cloakroom")
}

impl TestProxy {
    /// Writes the config, starts the binary and waits (up to 10 s) until it
    /// logs the addresses it listens on.
    pub async fn start(config: &ProxyConfig) -> TestProxy {
        let dir = tempfile::tempdir().unwrap();
        for (rel, contents) in &config.files {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
        std::fs::write(dir.path().join("proxy.toml"), config.render()).unwrap();
        let (child, stdout, stderr) = spawn_in(dir.path(), &config.env);
        let pid = child.id();
        let mut proxy = TestProxy {
            dir,
            https_addr: "0.0.0.0:0".parse().unwrap(),
            redirect_addr: None,
            admin_addr: None,
            pid,
            env: config.env.clone(),
            child,
            stdout,
            stderr,
        };
        proxy.https_addr = proxy.listening("https").await;
        if config.has_redirect() {
            proxy.redirect_addr = Some(proxy.listening("redirect").await);
        }
        if config.admin && config.whole.is_none() {
            proxy.admin_addr = Some(proxy.listening("admin").await);
        }
        proxy
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the binary again in the same directory (same config,
    /// certificate, secret, environment and data), killing the running one
    /// first if need be; the logs start afresh. The HTTPS listener, and the
    /// admin listener when there was one, are awaited (their ports change).
    pub async fn restart(&mut self) {
        self.kill9();
        let (child, stdout, stderr) = spawn_in(self.dir.path(), &self.env);
        self.pid = child.id();
        self.child = child;
        self.stdout = stdout;
        self.stderr = stderr;
        self.https_addr = self.listening("https").await;
        if self.admin_addr.is_some() {
            self.admin_addr = Some(self.listening("admin").await);
        }
    }

    async fn listening(&mut self, listener: &str) -> SocketAddr {
        let line = self
            .wait_log(10, |v| {
                v["message"] == "listening" && v["listener"] == listener
            })
            .await
            .unwrap_or_else(|| panic!("no {listener} listener logged; stderr: {}", self.stderr()));
        line["addr"].as_str().unwrap().parse().unwrap()
    }

    /// Every stdout line so far that is a JSON object. cloakroom writes its
    /// log in batches, a line up to about 10 ms after it is logged (README
    /// "Logs"), so this first waits for stdout to settle: no new line for
    /// 30 ms (at most 1 s, for a proxy that logs without pause). A line
    /// logged before the call is then in.
    pub fn logs(&self) -> Vec<Value> {
        self.settle_stdout();
        let lines = self.stdout.lock().unwrap();
        lines
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn settle_stdout(&self) {
        let started = std::time::Instant::now();
        let mut seen = self.stdout.lock().unwrap().len();
        let mut quiet_since = started;
        while started.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(5));
            let now = self.stdout.lock().unwrap().len();
            if now != seen {
                seen = now;
                quiet_since = std::time::Instant::now();
            } else if quiet_since.elapsed() >= Duration::from_millis(30) {
                return;
            }
        }
    }

    /// The access-log lines so far.
    pub fn access_logs(&self) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|v| v["target"] == "access")
            .collect()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Polls the log (every 20 ms, up to `secs`) for a line matching `pred`.
    /// Fails early when the process has exited.
    pub async fn wait_log(&mut self, secs: u64, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = self.logs().into_iter().find(&pred) {
                return Some(v);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader threads drain what was written before exit.
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Some(v) = self.logs().into_iter().find(&pred) {
                    return Some(v);
                }
                panic!(
                    "cloakroom exited ({status}); stderr: {}; stdout: {:?}",
                    self.stderr(),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Like [`wait_log`](Self::wait_log), counting only lines after the
    /// first `skip` lines (to wait for a second occurrence).
    pub async fn wait_log_after(
        &mut self,
        skip: usize,
        secs: u64,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = self.logs().into_iter().skip(skip).find(&pred) {
                return Some(v);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn cert_path(&self) -> PathBuf {
        self.path("certs/cert.pem")
    }

    /// Replaces `proxy.toml` (send SIGHUP to apply it).
    pub fn write_config(&self, config: &ProxyConfig) {
        std::fs::write(self.path("proxy.toml"), config.render()).unwrap();
    }

    /// Sends a signal by name (`HUP`, `TERM`, `INT`) with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid.to_string())
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{name} failed");
    }

    /// Waits up to `secs` for the process to exit.
    pub async fn wait_exit(&mut self, secs: u64) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then the exit status (within 10 s).
    pub async fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(10)
            .await
            .expect("cloakroom did not exit within 10 s of SIGTERM")
    }

    /// A field of `/proc/PID/status` in KiB, e.g. `VmHWM` (peak RSS).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// A client config trusting this proxy's generated certificate.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        client_config(&[self.cert_path().as_path()], alpn)
    }

    /// A TLS connection for SNI `localhost` with the given ALPN protocols.
    pub async fn tls(&self, alpn: &[&[u8]]) -> Tls {
        within(
            10,
            "TLS connect",
            tls_connect(self.https_addr, "localhost", self.client_config(alpn)),
        )
        .await
        .unwrap()
    }

    /// An HTTP/1.1 connection (ALPN `http/1.1`).
    pub async fn h1(&self) -> H1 {
        let tls = self.tls(&[b"http/1.1"]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        h1_over(tls).await
    }

    /// An HTTP/2 connection (ALPN `h2`).
    pub async fn h2(&self) -> H2 {
        h2_over(self.tls(&[b"h2"]).await).await
    }

    /// `GET path` with `Host: localhost` on a fresh HTTP/1.1 connection.
    pub async fn get(&self, path: &str) -> Resp {
        send1(
            &mut self.h1().await,
            get("localhost", path).body(empty()).unwrap(),
        )
        .await
    }

    /// The `https://localhost:PORT` origin.
    pub fn origin(&self) -> String {
        format!("https://localhost:{}", self.https_addr.port())
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Lines = Arc<Mutex<Vec<String>>>;

/// Starts the binary on `dir/proxy.toml` with JSON logs, collecting its
/// stdout lines and stderr text.
fn spawn_in(dir: &Path, env: &[(String, String)]) -> (Child, Lines, Arc<Mutex<String>>) {
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(dir.join("proxy.toml"))
        .current_dir(dir)
        .env("CLOAKROOM_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let (out, lines) = (child.stdout.take().unwrap(), stdout.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            lines.lock().unwrap().push(line);
        }
    });
    let (mut err, text) = (child.stderr.take().unwrap(), stderr.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (child, stdout, stderr)
}

/// Runs `cloakroom ARGS…` to completion (bounded by 30 s).
pub fn run_cli(args: &[&str], cwd: &Path) -> std::process::Output {
    let child = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("cloakroom {args:?} did not exit within 30 s");
        }
    }
}

/// A self-signed certificate and key (PEM) for these names.
pub fn self_signed(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let c = rcgen::generate_simple_self_signed(names).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}
