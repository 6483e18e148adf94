//! SPEC §10 (the admin API), §11 (metrics and the `revoked` event), §9.3
//! (a revoked session's tunnel closes), §7.3 (`max_sessions` on reload) and
//! §2 `healthcheck`, through the real binary with the admin listener on a
//! loopback port.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::session::*;
use support::{free_port, ProxyConfig, TestProxy, Upstream};

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
    request(port, "GET", path, None)
}

/// Any method, with an optional `Authorization` value: (status, body).
fn request(port: u16, method: &str, target: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
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
fn s10_open_endpoints_and_no_session_api_without_a_token() {
    let p = start();
    assert_eq!(get(p.admin, "/healthz").0, 200);
    assert_eq!(get(p.admin, "/readyz").0, 200);
    assert_eq!(get(p.admin, "/metrics").0, 200);
    // Without CLOAKROOM_ADMIN_TOKEN the session API answers 404.
    assert_eq!(get(p.admin, "/sessions?user=alice").0, 404);
    assert_eq!(get(p.admin, "/nope").0, 404);
    for (method, target) in [
        ("DELETE", "/sessions/0123456789abcdef"),
        ("DELETE", "/users/alice/sessions"),
        ("POST", "/reload"),
    ] {
        assert_eq!(request(p.admin, method, target, None).0, 404, "{target}");
    }
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

/// A keep-alive connection waiting for its next request is idle, not a
/// slow head: it stays open past `request_header_timeout` (a scraper that
/// reuses its connection every few seconds keeps it), and the next
/// request on it is answered.
#[test]
fn s3_admin_keep_alive_outlives_the_head_timeout() {
    let p = start_with("request_header_timeout = \"1s\"\nclient_idle_timeout = \"30s\"");
    let mut s = TcpStream::connect(("127.0.0.1", p.admin)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    for round in 0..2 {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap_or(0);
            assert!(n > 0, "round {round}: closed before an answer");
            got.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&got);
        assert!(head.starts_with("HTTP/1.1 200"), "round {round}: {head}");
        // Idle for twice the head timeout between the two requests.
        if round == 0 {
            std::thread::sleep(Duration::from_millis(2200));
        }
    }
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

// ---- The session API, through a proxy with sessions and a token. ----

const TOKEN: &str = "test-admin-token-0123456789";
const BEARER: &str = "Bearer test-admin-token-0123456789";

/// A SPEC §10 answer: status, head (lower-cased names) and body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// One request to a [`TestProxy`]'s admin listener, with the right token
/// unless `auth` says otherwise (`Some("")`: no `Authorization` at all).
async fn admin(proxy: &TestProxy, method: &str, target: &str, auth: Option<&str>) -> Answer {
    let addr: SocketAddr = proxy.admin_addr.expect("the admin listener is on");
    let auth = match auth.unwrap_or(BEARER) {
        "" => String::new(),
        a => format!("Authorization: {a}\r\n"),
    };
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    within_secs(10, s.read_to_end(&mut raw)).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    Answer {
        status: head[9..12].parse().unwrap(),
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

async fn within_secs<T>(secs: u64, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .expect("no answer in time")
}

/// A proxy with upstream logins, a route that needs one (except `/login`),
/// the admin listener and its token.
async fn admin_proxy(app: &App, session: &str) -> TestProxy {
    let route = "auth = \"required\"\npublic_paths = [\"/login\"]";
    let cfg = config(app, session, "provider = \"upstream\"", route)
        .admin()
        .env("CLOAKROOM_ADMIN_TOKEN", TOKEN);
    TestProxy::start(&cfg).await
}

/// A browser logged in as `user`, its jar holding the `Set-Cookie`s in `jar`.
async fn login(proxy: &TestProxy, user: &str, jar: &[&str]) -> Browser {
    let mut b = Browser::new(proxy);
    let mut headers = vec![format!("X-Cloakroom-Login: {user}")];
    headers.extend(jar.iter().map(|c| format!("Set-Cookie: {c}")));
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let r = b.get(&scripted("/login", &headers)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(b.session().is_some(), "no session for {user}");
    b
}

/// True when the proxy still knows the browser's session (`/` needs one).
async fn logged_in(b: &mut Browser) -> bool {
    let r = b.get("/").await;
    assert!(matches!(r.status.as_u16(), 200 | 401), "{}", r.status);
    r.status == 200
}

fn handles(list: &Value) -> Vec<String> {
    let mut h: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["handle"].as_str().unwrap().to_string())
        .collect();
    h.sort();
    h
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_missing_or_wrong_token_is_401_and_open_endpoints_stay_open() {
    let app = App::start("app").await;
    let proxy = admin_proxy(&app, "").await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(admin(&proxy, "GET", path, Some("")).await.status, 200);
    }
    for auth in [
        "",
        "Bearer wrong",
        "Bearer test-admin-token-012345678",
        "Basic dGVzdDp0ZXN0",
        TOKEN,
    ] {
        let a = admin(&proxy, "GET", "/sessions?user=alice", Some(auth)).await;
        assert_eq!(a.status, 401, "{auth:?}");
        assert!(a.head.contains("www-authenticate: bearer"), "{}", a.head);
        // Even where nothing exists: the token is checked first.
        assert_eq!(admin(&proxy, "GET", "/nope", Some(auth)).await.status, 401);
    }
    let ok = admin(&proxy, "GET", "/sessions?user=alice", None).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json(), serde_json::json!([]));
    assert_eq!(admin(&proxy, "GET", "/nope", None).await.status, 404);
    assert_eq!(admin(&proxy, "GET", "/sessions", None).await.status, 400);
    let wrong_method = admin(&proxy, "GET", "/reload", None).await;
    assert_eq!(wrong_method.status, 405);
    assert!(wrong_method.head.contains("allow: post"));
    let long = format!("/sessions?user={}", "a".repeat(2000));
    assert_eq!(admin(&proxy, "GET", &long, None).await.status, 414);
    // The token is never logged.
    let logs = serde_json::to_string(&proxy.logs()).unwrap();
    assert!(!logs.contains(TOKEN) && !proxy.stderr().contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_list_shows_live_sessions_and_jar_sizes_never_values() {
    let app = App::start("app").await;
    let proxy = admin_proxy(&app, "idle_timeout = \"2s\"\ntouch_interval = \"1s\"").await;
    // This one ends (idle) before the listing; the purge has not run yet.
    let ended = login(&proxy, "alice", &[]).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let jarred = login(
        &proxy,
        "alice",
        &["sid=SECRETVALUE; Path=/", "pref=dark; Path=/app"],
    )
    .await;
    let plain = login(&proxy, "alice", &[]).await;
    let bob = login(&proxy, "bob", &[]).await;

    let a = admin(&proxy, "GET", "/sessions?user=alice", None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.head.contains("content-type: application/json"));
    assert!(!a.body.contains("SECRETVALUE") && !a.body.contains("dark"));
    let list = a.json();
    let live = [&jarred, &plain].map(|b| handle_of(&b.session().unwrap()));
    assert_eq!(handles(&list), sorted(live.to_vec()));
    assert!(!handles(&list).contains(&handle_of(&ended.session().unwrap())));
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["handle"] == live[0])
        .unwrap();
    assert_eq!(entry["user"], "alice");
    assert_eq!(entry["client_ip"], "127.0.0.1");
    assert_eq!(entry["route"], "/");
    assert!(entry["user_agent"].is_string());
    for t in ["created", "last_seen", "expires_at"] {
        let v = entry[t].as_str().unwrap();
        // RFC 3339, UTC, to the second: 2025-01-31T09:30:00Z
        assert!(
            v.len() == 20 && v.ends_with('Z') && &v[10..11] == "T",
            "{t}: {v}"
        );
    }
    assert!(entry["expires_at"].as_str() > entry["last_seen"].as_str());
    let mut jar = entry["jar"].as_array().unwrap().clone();
    jar.sort_by_key(|c| c["name"].as_str().unwrap().to_string());
    assert_eq!(
        jar,
        [
            serde_json::json!({"name": "pref", "path": "/app", "bytes": 8}),
            serde_json::json!({"name": "sid", "path": "/", "bytes": 14}),
        ]
    );
    let b = admin(&proxy, "GET", "/sessions?user=bob", None)
        .await
        .json();
    assert_eq!(handles(&b), [handle_of(&bob.session().unwrap())]);
    let none = admin(&proxy, "GET", "/sessions?user=nobody", None).await;
    assert_eq!(none.json(), serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_revoke_by_handle_ends_the_session_on_the_next_request() {
    let app = App::start("app").await;
    let proxy = admin_proxy(&app, "").await;
    let mut alice = login(&proxy, "alice", &[]).await;
    let mut other = login(&proxy, "alice", &[]).await;
    let cookie = alice.session().unwrap();
    let handle = handle_of(&cookie);
    assert!(logged_in(&mut alice).await);

    let a = admin(&proxy, "DELETE", &format!("/sessions/{handle}"), None).await;
    assert_eq!(a.status, 204, "{}", a.body);
    let hits = app.hits();
    let r = alice.get("/").await;
    assert_eq!(r.status, 401, "the revoked cookie still works");
    assert!(clears_session(&r));
    assert_eq!(app.hits(), hits);
    assert!(logged_in(&mut other).await, "only that session is revoked");

    let revoked = audits(&proxy, "revoked");
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["session"], handle.as_str());
    assert_eq!(revoked[0]["user"], "alice");
    assert!(!serde_json::to_string(&proxy.logs())
        .unwrap()
        .contains(&cookie));

    // Again, an unknown handle, and malformed ones: 404.
    for target in [
        format!("/sessions/{handle}"),
        "/sessions/0000000000000000".to_string(),
        "/sessions/xyz".to_string(),
        format!("/sessions/{handle}0"),
        format!("/sessions/{}", &handle[..15]),
    ] {
        assert_eq!(
            admin(&proxy, "DELETE", &target, None).await.status,
            404,
            "{target}"
        );
    }
    assert_eq!(audits(&proxy, "revoked").len(), 1);
    let metrics = admin(&proxy, "GET", "/metrics", None).await.body;
    assert!(
        metrics.contains("cloakroom_session_events_total{event=\"revoked\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("cloakroom_sessions_active 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_revoke_all_of_a_user() {
    let app = App::start("app").await;
    let proxy = admin_proxy(&app, "").await;
    let mut alices = Vec::new();
    for _ in 0..3 {
        alices.push(login(&proxy, "alice", &[]).await);
    }
    let mut bob = login(&proxy, "bob", &[]).await;
    // A name that needs percent-encoding in a path and in a query.
    let mut ops = login(&proxy, "ops/zed smith", &[]).await;

    let a = admin(&proxy, "DELETE", "/users/alice/sessions", None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json(), serde_json::json!({"revoked": 3}));
    for b in &mut alices {
        assert!(!logged_in(b).await);
    }
    assert!(logged_in(&mut bob).await);
    // The log is written by its own thread: wait (bounded) for the lines.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while audits(&proxy, "revoked").len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(audits(&proxy, "revoked").len(), 3);
    let list = admin(&proxy, "GET", "/sessions?user=alice", None).await;
    assert_eq!(list.json(), serde_json::json!([]));
    let again = admin(&proxy, "DELETE", "/users/alice/sessions", None).await;
    assert_eq!(again.json(), serde_json::json!({"revoked": 0}));

    let listed = admin(&proxy, "GET", "/sessions?user=ops%2Fzed+smith", None).await;
    assert_eq!(
        handles(&listed.json()),
        [handle_of(&ops.session().unwrap())]
    );
    let a = admin(&proxy, "DELETE", "/users/ops%2Fzed%20smith/sessions", None).await;
    assert_eq!(a.json(), serde_json::json!({"revoked": 1}));
    assert!(!logged_in(&mut ops).await);
    let bad = admin(&proxy, "DELETE", "/users/%FF/sessions", None).await;
    assert_eq!(bad.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_3_a_revoked_sessions_websocket_closes_within_1s() {
    let app = App::start("app").await;
    let proxy = admin_proxy(&app, "").await;
    let b = login(&proxy, "alice", &[]).await;
    let mut ws = b.websocket("/ws").await.expect("101");
    ws_roundtrip(&mut ws, &ws_frame("hello")).await;
    let handle = handle_of(&b.session().unwrap());
    let a = admin(&proxy, "DELETE", &format!("/sessions/{handle}"), None).await;
    assert_eq!(a.status, 204);
    let revoked = Instant::now();
    let took = closed_within(&mut ws, revoked, Duration::from_secs(5))
        .await
        .expect("tunnel still open 5 s after revocation");
    // SPEC §9.3 allows 1 s; 0.5 s more absorbs a loaded test machine.
    assert!(took <= Duration::from_millis(1500), "closed {took:?} after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_post_reload_applies_or_answers_422_and_keeps_the_old_config() {
    let (a, b) = (App::start("a").await, App::start("b").await);
    let to = |app: &App| ProxyConfig::new().admin().route(&app.url(), "");
    let proxy = TestProxy::start(&to(&a).env("CLOAKROOM_ADMIN_TOKEN", TOKEN)).await;
    let mut browser = Browser::new(&proxy);
    let upstream = |r: &support::Resp| json(r)["upstream"].as_str().unwrap().to_string();
    assert_eq!(upstream(&browser.get("/").await), "a");

    proxy.write_config(&to(&b).server("request_header_timeout = \"soon\""));
    let r = admin(&proxy, "POST", "/reload", None).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let errors = r.json()["errors"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["key"], "server.request_header_timeout");
    assert!(errors[0]["file"].as_str().unwrap().ends_with("proxy.toml"));
    assert!(errors[0]["line"].as_u64().unwrap() > 0);
    assert!(errors[0]["message"].is_string());
    assert_eq!(
        upstream(&browser.get("/").await),
        "a",
        "the old config keeps running"
    );

    std::fs::write(proxy.path("broken.pem"), "not a certificate").unwrap();
    proxy.write_config(&to(&b).raw("[tls]\ncert = \"broken.pem\"\nkey = \"certs/key.pem\""));
    let r = admin(&proxy, "POST", "/reload", None).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let errors = r.json()["errors"].clone();
    assert_eq!(errors[0]["key"], "tls");
    assert!(errors[0]["file"].as_str().unwrap().ends_with("broken.pem"));
    assert_eq!(upstream(&browser.get("/").await), "a");

    proxy.write_config(&to(&b).server("max_connections = 77"));
    let r = admin(&proxy, "POST", "/reload", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        serde_json::json!({"restart_required": ["server.max_connections"]})
    );
    assert_eq!(upstream(&browser.get("/").await), "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_readyz_is_503_once_shutdown_begins() {
    let up = Upstream::start("slow").await;
    let cfg = ProxyConfig::new()
        .admin()
        .route(&up.url(), "")
        .server("shutdown_grace = \"20s\"");
    let mut proxy = TestProxy::start(&cfg).await;
    assert_eq!(admin(&proxy, "GET", "/readyz", Some("")).await.status, 200);
    // An in-flight request holds the drain open.
    let mut h1 = proxy.h1().await;
    let slow = tokio::spawn(async move {
        let req = support::get("localhost", "/slow?ms=3000")
            .body(support::empty())
            .unwrap();
        support::send1(&mut h1, req).await.status
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.hits() == 0 {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let a = admin(&proxy, "GET", "/readyz", Some("")).await;
        if a.status == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {} while draining",
            a.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(admin(&proxy, "GET", "/healthz", Some("")).await.status, 200);
    assert_eq!(slow.await.unwrap(), 200, "the in-flight request completes");
    let status = proxy.wait_exit(10).await.expect("exits after the drain");
    assert!(status.success());
}

/// SPEC §7.3 with a reload: a lowered `max_sessions` applies at the next
/// session created, which evicts the longest-idle anonymous ones down to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_3_sighup_applies_a_lowered_max_sessions() {
    let app = App::start("app").await;
    let cfg = |max: usize| config(&app, &format!("max_sessions = {max}"), "", "");
    let mut proxy = TestProxy::start(&cfg(10)).await;
    let mut anonymous = Vec::new();
    for _ in 0..4 {
        let mut b = Browser::new(&proxy);
        b.get(&scripted("/", &["Set-Cookie: a=1; Path=/"])).await;
        assert!(b.session().is_some());
        anonymous.push(b);
        // Distinct last-seen times (milliseconds).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let skip = proxy.logs().len();
    proxy.write_config(&cfg(3));
    proxy.signal("HUP");
    proxy
        .wait_log_after(skip, 10, |v| v["message"] == "configuration reloaded")
        .await
        .expect("reloaded");
    assert!(
        !proxy.logs()[skip..]
            .iter()
            .any(|v| v["key"] == "session.max_sessions"),
        "max_sessions applies: no restart-required warning"
    );
    let mut newest = Browser::new(&proxy);
    newest
        .get(&scripted("/", &["Set-Cookie: a=1; Path=/"]))
        .await;
    assert!(newest.session().is_some());
    let mut kept = Vec::new();
    for b in anonymous.iter_mut().chain([&mut newest]) {
        let r = b.get("/").await;
        kept.push(upstream_cookies(&r).contains(&"a=1".to_string()));
    }
    // 4 held + 1 new at a cap of 3: the two longest idle went.
    assert_eq!(kept, [false, false, true, true, true]);
}
