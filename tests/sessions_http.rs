//! SPEC §9.3 (websocket tunnels live no longer than their session), §9.5
//! (caching of session responses) and §9.6 (CSRF), through the real binary.

mod support;

use std::time::{Duration, Instant};

use http::{header, Method};
use support::session::*;
use support::{empty, TestProxy};

/// SPEC §9.3 allows 1 s between the end of a session and the tunnel's
/// close; the extra 0.5 s absorbs scheduling on a loaded test machine.
const CLOSE_BOUND: Duration = Duration::from_millis(1500);

/// A proxy with upstream logins and a route that needs one (but not for
/// `/login`), and a browser logged in as alice.
async fn logged_in(app: &App, session: &str) -> (TestProxy, Browser) {
    let route = "auth = \"required\"\npublic_paths = [\"/login\"]";
    let proxy = TestProxy::start(&config(app, session, "provider = \"upstream\"", route)).await;
    let mut b = Browser::new(&proxy);
    b.get(&scripted("/login", &["X-Cloakroom-Login: alice"]))
        .await;
    assert!(b.session().is_some());
    (proxy, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_3_websocket_closed_within_1s_of_logout() {
    let app = App::start("app").await;
    let (proxy, mut b) = logged_in(&app, "").await;
    let mut ws = b.websocket("/ws").await.expect("101");
    ws_roundtrip(&mut ws, &ws_frame("hello")).await;
    // The tunnel outlives the poll interval while the session lives.
    tokio::time::sleep(Duration::from_millis(600)).await;
    ws_roundtrip(&mut ws, &ws_frame("still here")).await;

    let v = b.session().unwrap();
    let r = b.post("/.cloakroom/logout", "").await;
    assert_eq!(r.status, 204);
    let ended = Instant::now();
    let took = closed_within(&mut ws, ended, Duration::from_secs(5)).await;
    let took = took.expect("tunnel still open 5 s after logout");
    assert!(took <= CLOSE_BOUND, "closed {took:?} after logout");

    // The session is checked at the upgrade: the old cookie opens nothing.
    let hits = app.hits();
    let mut replay = Browser::new(&proxy);
    replay.set_session(&v);
    let refused = replay.websocket("/ws").await.expect_err("upgrade refused");
    assert_eq!(refused.status, 401);
    assert_eq!(app.hits(), hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_3_websocket_closed_within_1s_of_rotation() {
    let app = App::start("app").await;
    let (_proxy, mut b) = logged_in(&app, "").await;
    let mut ws = b.websocket("/ws").await.expect("101");
    ws_roundtrip(&mut ws, &ws_frame("hello")).await;
    // Another login rotates the id away from the tunnel's session.
    b.get(&scripted("/login", &["X-Cloakroom-Login: bob"]))
        .await;
    let rotated = Instant::now();
    let took = closed_within(&mut ws, rotated, Duration::from_secs(5))
        .await
        .expect("tunnel still open 5 s after rotation");
    assert!(took <= CLOSE_BOUND, "closed {took:?} after rotation");
    // The new session opens a new tunnel.
    let mut ws = b.websocket("/ws").await.expect("101 for the new id");
    ws_roundtrip(&mut ws, &ws_frame("again")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_3_websocket_closed_on_idle_expiry_traffic_is_not_activity() {
    let app = App::start("app").await;
    let session = "idle_timeout = \"2s\"\ntouch_interval = \"500ms\"";
    let (_proxy, b) = logged_in(&app, session).await;
    let opened = Instant::now();
    let mut ws = b.websocket("/ws").await.expect("101");
    // Keep talking: if tunnel traffic were activity, it would never close.
    let frame = ws_frame("ping");
    let closed = loop {
        let elapsed = opened.elapsed();
        // Idle 2 s, plus at most one touch interval (the upgrade request
        // may have touched), plus the 1 s close bound, plus 0.5 s slack.
        assert!(
            elapsed < Duration::from_secs(4),
            "tunnel open {elapsed:?} after its last request"
        );
        let step = Instant::now();
        if let Some(t) = closed_within(&mut ws, step, Duration::from_millis(200)).await {
            break opened.elapsed() - (step.elapsed() - t);
        }
        if tokio::io::AsyncWriteExt::write_all(&mut ws, &frame)
            .await
            .is_err()
        {
            break opened.elapsed();
        }
    };
    assert!(
        closed >= Duration::from_millis(1500),
        "closed early: {closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_5_vary_cookie_and_cache_control() {
    let app = App::start("app").await;
    let proxy = TestProxy::start(&config(&app, "", "", "")).await;
    let mut b = Browser::new(&proxy);
    let tokens = |r: &support::Resp, name: &str| -> Vec<String> {
        r.headers
            .get_all(name)
            .iter()
            .flat_map(|v| v.to_str().unwrap().split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect()
    };
    // No session: the upstream's caching headers are left alone.
    let r = b.get("/").await;
    assert!(tokens(&r, "vary").is_empty());
    assert_eq!(r.header("cache-control"), None);

    // Cloakroom's own Set-Cookie: no-store, whatever the upstream said.
    let r = b
        .get(&scripted(
            "/",
            &["Set-Cookie: a=1", "Cache-Control: public, max-age=600"],
        ))
        .await;
    assert!(session_set_cookie(&r).is_some());
    assert_eq!(tokens(&r, "cache-control"), ["no-store"]);

    // A session response without Cache-Control: private, Vary: Cookie.
    let r = b.get("/").await;
    assert_eq!(tokens(&r, "cache-control"), ["private"]);
    assert_eq!(tokens(&r, "vary"), ["cookie"]);
    // Existing Vary is merged into; the upstream's Cache-Control is kept.
    let r = b
        .get(&scripted(
            "/",
            &["Vary: Accept-Encoding", "Cache-Control: max-age=60"],
        ))
        .await;
    let mut vary = tokens(&r, "vary");
    vary.sort();
    assert_eq!(vary, ["accept-encoding", "cookie"]);
    assert_eq!(tokens(&r, "cache-control"), ["max-age=60"]);
    let r = b.get(&scripted("/", &["Vary: Cookie, Accept"])).await;
    assert_eq!(tokens(&r, "vary"), ["cookie", "accept"]);
    let r = b.get(&scripted("/", &["Vary: *"])).await;
    assert_eq!(tokens(&r, "vary"), ["*"]);

    // A clearing cookie is cloakroom's Set-Cookie too.
    let mut f = Browser::new(&proxy);
    f.set_session("forged.cookie");
    let r = f
        .get(&scripted("/", &["Cache-Control: public, max-age=600"]))
        .await;
    assert!(clears_session(&r));
    assert_eq!(tokens(&r, "cache-control"), ["no-store"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_6_csrf_origin_and_sec_fetch_site() {
    let app = App::start("app").await;
    let cfg = config(&app, "", "", "").raw("[csrf]\nallowed_origins = [\"https://partner.test\"]");
    let mut proxy = TestProxy::start(&cfg).await;
    // Without a session there is nothing to forge: requests pass.
    let mut anon = Browser::new(&proxy);
    let req = anon
        .request_from(Method::POST, "/", Some("https://evil.test"))
        .body(empty())
        .unwrap();
    assert_eq!(anon.send(req).await.status, 200);

    let mut b = Browser::new(&proxy);
    b.get(&scripted("/", &["Set-Cookie: a=1"])).await;
    let own = b.origin();
    let http_own = own.replace("https://", "http://");
    let cases: &[(Method, Option<&str>, Option<&str>, u16)] = &[
        (Method::POST, Some("https://evil.test"), None, 403),
        (Method::PUT, Some("https://evil.test"), None, 403),
        (Method::PATCH, Some("https://evil.test"), None, 403),
        (Method::DELETE, Some("https://evil.test"), None, 403),
        (Method::POST, Some("null"), None, 403),
        (Method::POST, Some(&http_own), None, 403),
        (Method::POST, Some("https://localhost"), None, 403),
        (Method::POST, None, Some("cross-site"), 403),
        (Method::POST, Some(&own), Some("cross-site"), 200),
        (Method::POST, Some(&own), None, 200),
        (Method::POST, Some("https://partner.test"), None, 200),
        (Method::POST, None, Some("same-origin"), 200),
        (Method::POST, None, Some("same-site"), 200),
        (Method::POST, None, None, 200),
        (
            Method::GET,
            Some("https://evil.test"),
            Some("cross-site"),
            200,
        ),
        (Method::OPTIONS, Some("https://evil.test"), None, 200),
    ];
    for (method, origin, site, want) in cases {
        let hits = app.hits();
        let mut req = b.request_from(method.clone(), "/", *origin);
        if let Some(s) = site {
            req = req.header("sec-fetch-site", *s);
        }
        let r = b.send(req.body(empty()).unwrap()).await;
        assert_eq!(
            r.status, *want,
            "{method} Origin {origin:?} Sec-Fetch-Site {site:?}"
        );
        let reached = app.hits() - hits;
        assert_eq!(reached, usize::from(*want == 200), "{method} {origin:?}");
    }
    let line = proxy
        .wait_log(5, |l| l["event"] == "csrf_rejected")
        .await
        .expect("csrf_rejected audit");
    assert_eq!(line["session"], handle_of(&b.session().unwrap()));
    assert!(b.session().is_some(), "a refusal does not end the session");

    // mode = "off" lets everything through.
    let cfg = config(&app, "", "", "").raw("[csrf]\nmode = \"off\"");
    let proxy = TestProxy::start(&cfg).await;
    let mut b = Browser::new(&proxy);
    b.get(&scripted("/", &["Set-Cookie: a=1"])).await;
    let req = b
        .request_from(Method::POST, "/", Some("null"))
        .header(header::CONTENT_LENGTH, "0")
        .body(empty())
        .unwrap();
    assert_eq!(b.send(req).await.status, 200);
}
