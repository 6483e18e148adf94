//! `session.max_new_sessions_per_client` (SPEC §3): one client address may
//! create so many sessions per minute; beyond it the response is a 429 with
//! `Retry-After` and no session is made. Behind `trusted_proxies` the client
//! is the address the proxy forwarded for; from anyone else a forwarded
//! address is not believed.

mod support;

use http::{header, Request, StatusCode};

use support::session::{App, COOKIE};
use support::*;

/// A request that makes a session: the app sets a cookie for the jar.
const MAKES_SESSION: &str = "/?h=Set-Cookie:cart%3D1";

/// `GET MAKES_SESSION` with no cookie from the loopback address `src`,
/// with `X-Forwarded-For: xff` when given.
async fn fresh_client(proxy: &TestProxy, src: [u8; 4], xff: Option<&str>) -> Resp {
    let config = proxy.client_config(&[b"http/1.1"]);
    let connect = tls_connect_from(src, proxy.https_addr, "localhost", config);
    let tls = within(10, "TLS connect", connect).await.unwrap();
    let mut req = Request::get(MAKES_SESSION).header(header::HOST, "localhost");
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    send1(&mut h1_over(tls).await, req.body(empty()).unwrap()).await
}

fn made_session(r: &Resp) -> bool {
    r.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.to_str().unwrap().starts_with(&format!("{COOKIE}=")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_client_creating_sessions_too_fast_gets_429_and_no_session() {
    let app = App::start("app").await;
    let config = ProxyConfig::new()
        .raw("[session]\nmax_new_sessions_per_client = 3")
        .route(&app.url(), "");
    let proxy = TestProxy::start(&config).await;
    for i in 0..3 {
        let r = fresh_client(&proxy, [127, 0, 0, 2], None).await;
        assert_eq!(r.status, StatusCode::OK, "session {i}");
        assert!(made_session(&r), "session {i}: {:?}", r.headers);
    }
    let r = fresh_client(&proxy, [127, 0, 0, 2], None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert!(!made_session(&r), "a session was made beyond the limit");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=20).contains(&retry),
        "Retry-After {retry}: one interval is 20 s"
    );
    // Another address is not held back.
    let r = fresh_client(&proxy, [127, 0, 0, 3], None).await;
    assert!(made_session(&r));
    // A request that makes no session is not limited.
    let plain = Request::get("/").header(header::HOST, "localhost");
    let r = send1(&mut proxy.h1().await, plain.body(empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_behind_a_trusted_proxy_the_forwarded_client_is_counted() {
    let app = App::start("app").await;
    let config = ProxyConfig::new()
        .server("trusted_proxies = [\"127.0.0.4\"]")
        .raw("[session]\nmax_new_sessions_per_client = 2")
        .route(&app.url(), "");
    let proxy = TestProxy::start(&config).await;
    // Through the trusted proxy: each forwarded client has its own budget.
    for _ in 0..2 {
        let r = fresh_client(&proxy, [127, 0, 0, 4], Some("203.0.113.1")).await;
        assert!(made_session(&r));
    }
    let r = fresh_client(&proxy, [127, 0, 0, 4], Some("203.0.113.1")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let r = fresh_client(&proxy, [127, 0, 0, 4], Some("198.51.100.7, 203.0.113.2")).await;
    assert!(made_session(&r), "another forwarded client: {}", r.status);
    // From an untrusted peer, a forwarded address changes nothing.
    for n in 0..2 {
        let r = fresh_client(&proxy, [127, 0, 0, 5], Some(&format!("192.0.2.{n}"))).await;
        assert!(made_session(&r));
    }
    let r = fresh_client(&proxy, [127, 0, 0, 5], Some("192.0.2.99")).await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "a spoofed X-Forwarded-For reset the budget"
    );
}
