//! SPEC §10 (open endpoints), §11 (metrics) and §2 `healthcheck`, through
//! the real binary with the admin listener on a free loopback port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proxy {
    child: Child,
    dir: tempfile::TempDir,
    admin: u16,
    https: u16,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Proxy {
    start_with("")
}

/// Like [`start`], with extra `[server]` lines.
fn start_with(server: &str) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let (admin, https) = (free_port(), free_port());
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{https}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n{server}\n[[route]]\nupstream = \"http://127.0.0.1:9\"\n"
    );
    std::fs::write(dir.path().join("proxy.toml"), config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .arg("--config")
        .arg(dir.path().join("proxy.toml"))
        .env("CLOAKROOM_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Ready once the admin listener is logged (bounded by the pipe closing).
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines
        .by_ref()
        .take(50)
        .map_while(Result::ok)
        .any(|l| l.contains("\"listener\":\"admin\""));
    assert!(ready, "the admin listener was never logged");
    std::thread::spawn(move || lines.for_each(drop));
    Proxy {
        child,
        dir,
        admin,
        https,
    }
}

/// One plain HTTP/1.1 request to the admin port: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn healthcheck(dir: &std::path::Path) -> i32 {
    let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["healthcheck", "--config"])
        .arg(dir.join("proxy.toml"))
        .output()
        .unwrap();
    out.status.code().unwrap()
}

#[test]
fn s10_health_readiness_and_unbuilt_endpoints() {
    let p = start();
    assert_eq!(get(p.admin, "/healthz").0, 200);
    assert_eq!(get(p.admin, "/readyz").0, 200);
    // Without CLOAKROOM_ADMIN_TOKEN the session API answers 404.
    assert_eq!(get(p.admin, "/sessions?user=alice").0, 404);
    assert_eq!(get(p.admin, "/nope").0, 404);
}

#[test]
fn s3_admin_listener_cuts_slow_heads() {
    let p = start_with("request_header_timeout = \"1s\"");
    let mut s = TcpStream::connect(("127.0.0.1", p.admin)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    s.write_all(b"GET /healthz HT").unwrap();
    let started = Instant::now();
    let n = s.read(&mut [0u8; 256]).unwrap_or(0);
    assert_eq!(n, 0, "answered a head that never ended");
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[test]
fn s2_healthcheck_exit_codes() {
    let p = start();
    assert_eq!(healthcheck(p.dir.path()), 0);
    let dir = p.dir.path().to_path_buf();
    let kept = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("proxy.toml"), kept.path().join("proxy.toml")).unwrap();
    drop(p);
    assert_eq!(healthcheck(kept.path()), 1, "a stopped proxy is not ready");
}

#[test]
fn s11_metrics_count_failed_tls_handshakes() {
    let p = start();
    // A client that speaks no TLS: one failed handshake.
    let mut raw = TcpStream::connect(("127.0.0.1", p.https)).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = raw.read(&mut [0u8; 64]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut body = String::new();
    while Instant::now() < deadline {
        body = get(p.admin, "/metrics").1;
        if body.contains("cloakroom_tls_handshakes_total{result=\"error\"} 1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        body.contains("cloakroom_tls_handshakes_total{result=\"error\"} 1"),
        "{body}"
    );
    for name in [
        "cloakroom_sessions_active",
        "# TYPE cloakroom_tls_handshakes_total counter",
    ] {
        assert!(body.contains(name), "{name} missing from:\n{body}");
    }
}
