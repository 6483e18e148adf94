//! End to end with the real `examples/legacy_app.py`: an unmodified Flask
//! app keeping its state in Flask's client-side `session` cookie. Behind
//! cloakroom that cookie lives in the server-side jar; the browser only
//! ever holds cloakroom's ticket, and cloakroom's timeouts and logout
//! govern the app's state.

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::Value;
use support::flask::{require_modules, ws_text, Flask};
use support::session::*;
use support::{Resp, TestProxy};

/// SPEC §9.3's 1 s, plus 0.5 s for scheduling on a loaded test machine.
const CLOSE_BOUND: Duration = Duration::from_millis(1500);

async fn legacy() -> (Flask, TestProxy) {
    let flask = Flask::start().await;
    let cfg = support::ProxyConfig::new()
        .raw(
            "[session]\nidle_timeout = \"2s\"\ntouch_interval = \"500ms\"\n\
             passive_paths = [\"/api/poll\"]",
        )
        .route(&flask.url(), "");
    let proxy = TestProxy::start(&cfg).await;
    (flask, proxy)
}

/// A browser that checks every response: Flask's `session` cookie never
/// reaches it, only cloakroom's.
struct Client(Browser);

impl Client {
    fn new(proxy: &TestProxy) -> Client {
        Client(Browser::new(proxy))
    }

    fn checked(&self, r: Resp) -> Resp {
        for sc in set_cookies(&r) {
            assert_eq!(parse_set_cookie(&sc).name, COOKIE, "leaked: {sc}");
        }
        assert!(self.0.cookies.iter().all(|(n, _)| n == COOKIE));
        r
    }

    async fn get(&mut self, path: &str) -> Resp {
        let r = self.0.get(path).await;
        self.checked(r)
    }

    async fn post(&mut self, path: &str, form: &str) -> Resp {
        let r = self.0.post(path, form).await;
        self.checked(r)
    }

    async fn login(&mut self, user: &str, password: &str) -> Resp {
        let r = self
            .post("/login", &format!("username={user}&password={password}"))
            .await;
        assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
        assert_eq!(r.header("location"), Some("/dashboard"));
        assert!(self.0.session().is_some());
        r
    }

    /// The app's view of its own session.
    async fn state(&mut self) -> Value {
        let r = self.get("/api/state").await;
        assert_eq!(r.status, 200, "{}", r.text());
        json(&r)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_app_login_dashboard_counter_and_cart_without_flask_cookie() {
    let (flask, proxy) = legacy().await;
    let mut c = Client::new(&proxy);
    let r = c.get("/").await;
    assert!(r.text().contains("Log in"), "{}", r.text());
    assert!(
        set_cookies(&r).is_empty(),
        "anonymous pages make no session"
    );
    let r = c.post("/login", "username=alice&password=nope").await;
    assert_eq!(r.status, 401);
    assert!(c.0.session().is_none());

    c.login("alice", "wonderland").await;
    let r = c.get("/dashboard").await;
    assert!(r.text().contains("alice: visit 1"), "{}", r.text());
    let r = c.get("/dashboard").await;
    assert!(r.text().contains("alice: visit 2"), "{}", r.text());
    let r = c.post("/cart", "item=apple").await;
    assert_eq!(json(&r)["cart"], serde_json::json!(["apple"]));
    let r = c.post("/cart", "item=pear").await;
    assert_eq!(json(&r)["cart"], serde_json::json!(["apple", "pear"]));

    let state = c.state().await;
    assert_eq!(state["user"], "alice");
    assert_eq!(state["visits"], 2);
    assert_eq!(state["cart"], serde_json::json!(["apple", "pear"]));
    // The app got its own cookie from the jar, and never cloakroom's.
    let sent = state["cookie_header"].as_str().unwrap();
    assert!(sent.starts_with("session="), "{sent}");
    assert!(!sent.contains(COOKIE), "{sent}");
    assert_eq!(c.0.cookies.len(), 1);
    drop(flask);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_app_logout_through_the_app_ends_its_state() {
    let (_flask, proxy) = legacy().await;
    let mut c = Client::new(&proxy);
    c.login("alice", "wonderland").await;
    c.post("/cart", "item=apple").await;
    let r = c.get("/logout").await;
    assert_eq!(r.status, StatusCode::FOUND);
    let state = c.state().await;
    assert_eq!(state["user"], Value::Null);
    assert_eq!(state["cart"], serde_json::json!([]));
    // Flask's deleting Set-Cookie emptied the jar: nothing is sent.
    assert_eq!(state["cookie_header"], Value::Null);
    let r = c.get("/dashboard").await;
    assert_eq!(r.header("location"), Some("/login"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_app_forged_and_replayed_cookies_get_nothing() {
    let (_flask, proxy) = legacy().await;
    let mut c = Client::new(&proxy);
    c.login("alice", "wonderland").await;
    c.post("/cart", "item=apple").await;
    let alice = c.0.session().unwrap();

    // A forged cookie: the MAC's last character changed.
    let mut forged = alice.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let mut f = Client::new(&proxy);
    f.0.set_session(&forged);
    let r = f.get("/api/state").await;
    assert!(clears_session(&r));
    assert_eq!(json(&r)["user"], Value::Null);

    // Logging in again rotates the id: the cookie from before is dead.
    // (This app writes no session before a login, so the login that
    // creates a session has no earlier cookie; a second login is the
    // rotation a browser can replay against.)
    c.login("bob", "builder").await;
    let bob = c.0.session().unwrap();
    assert_ne!(bob, alice);
    assert_eq!(c.state().await["user"], "bob");
    let mut replay = Client::new(&proxy);
    replay.0.set_session(&alice);
    let r = replay.get("/api/state").await;
    assert!(clears_session(&r));
    assert_eq!(json(&r)["user"], Value::Null);
    assert_eq!(json(&r)["cart"], serde_json::json!([]));

    // Logging out at the proxy kills the ticket, though the app itself
    // never logged out: its state went with the jar.
    let r = c.post("/.cloakroom/logout", "").await;
    assert_eq!(r.status, 204);
    let mut replay = Client::new(&proxy);
    replay.0.set_session(&bob);
    let state = replay.state().await;
    assert_eq!(state["user"], Value::Null);
    assert_eq!(state["cookie_header"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_app_idle_timeout_logs_the_user_out() {
    let (_flask, proxy) = legacy().await;
    let mut c = Client::new(&proxy);
    c.login("alice", "wonderland").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(c.state().await["user"], "alice");
    let last_use = Instant::now();
    // idle_timeout 2 s, plus touch_interval 0.5 s, plus slack.
    at(last_use, Duration::from_millis(2700)).await;
    let r = c.get("/api/state").await;
    assert!(clears_session(&r));
    assert_eq!(json(&r)["user"], Value::Null);
    assert!(c.0.session().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_app_polling_passive_path_does_not_keep_session_alive() {
    let (_flask, proxy) = legacy().await;
    let mut c = Client::new(&proxy);
    let start = Instant::now();
    c.login("alice", "wonderland").await;
    let mut seen = Vec::new();
    for t in (400..=3200).step_by(400) {
        at(start, Duration::from_millis(t)).await;
        let r = c.get("/api/poll").await;
        seen.push((t, json(&r)["user"].clone()));
    }
    // Served with the session while it lived, yet never refreshed it:
    // 2 s after the login it was gone.
    for (t, user) in &seen {
        if *t <= 1600 {
            assert_eq!(user, "alice", "poll at {t} ms: {seen:?}");
        } else if *t >= 2400 {
            assert_eq!(user, &Value::Null, "poll at {t} ms: {seen:?}");
        }
    }
    assert_eq!(c.state().await["user"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_app_websocket_closed_within_1s_of_logout() {
    require_modules(&["flask", "flask_sock"]);
    let (_flask, proxy) = legacy().await;
    let mut c = Client::new(&proxy);
    c.login("alice", "wonderland").await;
    let mut ws = c.0.websocket("/ws").await.expect("101");
    assert_eq!(ws_text(&mut ws, "hi").await, "alice: hi");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(ws_text(&mut ws, "still").await, "alice: still");

    let r = c.post("/.cloakroom/logout", "").await;
    assert_eq!(r.status, 204);
    let ended = Instant::now();
    let took = closed_within(&mut ws, ended, Duration::from_secs(5))
        .await
        .expect("tunnel still open 5 s after logout");
    assert!(took <= CLOSE_BOUND, "closed {took:?} after logout");
}
