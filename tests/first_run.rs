//! First run tells the newcomer what to do (SPEC §2, §9.4, §9.5a): an
//! upstream that does not accept connections is one warning at start (and
//! after a reload) naming the route and address, and a browser navigation
//! that meets an upstream failure gets a small HTML page that names no
//! address; other requests keep the plain-text 502/504.

mod support;

use std::net::SocketAddr;

use http::{header, Method, Request, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;

use support::*;

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

fn is_probe_warning(v: &Value) -> bool {
    v["level"] == "WARN"
        && v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("upstream is not accepting connections"))
}

async fn proxy_to_addr(addr: SocketAddr, server: &[&str]) -> TestProxy {
    let mut config = ProxyConfig::new().route(&format!("http://{addr}"), "");
    for line in server {
        config = config.server(line);
    }
    TestProxy::start(&config).await
}

async fn send(proxy: &TestProxy, method: Method, accept: &str) -> Resp {
    let req = Request::builder()
        .method(method)
        .uri("/")
        .header(header::HOST, "localhost")
        .header(header::ACCEPT, accept)
        .body(empty())
        .unwrap();
    send1(&mut proxy.h1().await, req).await
}

/// The headers SPEC §9.5a asks of the proxy's own HTML pages.
fn assert_own_html_page(r: &Resp, addr: SocketAddr) {
    let want = [
        ("content-type", "text/html; charset=utf-8"),
        ("content-security-policy", "frame-ancestors 'none'"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ];
    for (name, value) in want {
        assert_eq!(r.header(name), Some(value), "{name}: {:?}", r.headers);
    }
    let body = r.text();
    assert!(body.contains("<h1>"), "an HTML page: {body}");
    assert!(
        body.contains("application behind it"),
        "says what is wrong: {body}"
    );
    for secret in [
        addr.to_string(),
        addr.port().to_string(),
        "127.0.0.1".to_string(),
    ] {
        assert!(!body.contains(&secret), "{secret} in the page: {body}");
    }
    let lower = body.to_ascii_lowercase();
    for error_text in ["refused", "os error", "reset", "timed out after"] {
        assert!(
            !lower.contains(error_text),
            "error text in the page: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_refused_upstream_is_one_warning_at_start_and_one_per_reload() {
    let addr = upstream::refusing_addr().await;
    let mut proxy = proxy_to_addr(addr, &[]).await;
    let warning = proxy
        .wait_log(10, is_probe_warning)
        .await
        .unwrap_or_else(|| panic!("no warning for the refusing upstream: {:?}", proxy.logs()));
    assert_eq!(warning["upstream"], format!("http://{addr}"));
    assert!(
        warning["hint"].is_null(),
        "only the default route to 127.0.0.1:5000 gets the legacy-app hint: {warning}"
    );

    // Requests meet the failure; the start-up warning is not repeated.
    for _ in 0..3 {
        let r = send(&proxy, Method::GET, "application/json").await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    }
    let access = proxy
        .wait_log(10, |v| v["target"] == "access")
        .await
        .expect("an access line");
    assert_eq!(
        warning["route"], access["route"],
        "the warning names the route"
    );
    let probes = |p: &TestProxy| p.logs().into_iter().filter(is_probe_warning).count();
    assert_eq!(probes(&proxy), 1, "{:?}", proxy.logs());

    let seen = proxy.logs().len();
    proxy.signal("HUP");
    proxy
        .wait_log_after(seen, 10, is_probe_warning)
        .await
        .expect("the reload probes the upstream again");
    assert_eq!(probes(&proxy), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_4_s9_5a_navigation_to_a_refused_upstream_gets_the_html_502() {
    let addr = upstream::refusing_addr().await;
    let proxy = proxy_to_addr(addr, &[]).await;

    let page = send(&proxy, Method::GET, BROWSER_ACCEPT).await;
    assert_eq!(page.status, StatusCode::BAD_GATEWAY);
    assert_own_html_page(&page, addr);
    assert!(!page.text().contains("in time"), "{}", page.text());
    assert_eq!(
        page.header("strict-transport-security"),
        Some("max-age=31536000")
    );

    let head = send(&proxy, Method::HEAD, BROWSER_ACCEPT).await;
    assert_eq!(head.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        head.header("content-type"),
        Some("text/html; charset=utf-8")
    );

    // Not navigations: the plain 502 as before.
    for (method, accept) in [
        (Method::GET, "application/json"),
        (Method::POST, BROWSER_ACCEPT),
    ] {
        let r = send(&proxy, method.clone(), accept).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{method} {accept}");
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{method} {accept}"
        );
        assert_eq!(r.text(), "Bad Gateway\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_4_s9_5a_navigation_to_a_silent_upstream_gets_the_html_504() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let proxy = proxy_to_addr(addr, &["upstream_response_timeout = \"1s\""]).await;

    let page = send(&proxy, Method::GET, BROWSER_ACCEPT).await;
    assert_eq!(page.status, StatusCode::GATEWAY_TIMEOUT);
    assert_own_html_page(&page, addr);
    assert!(page.text().contains("in time"), "{}", page.text());

    let plain = send(&proxy, Method::GET, "application/json").await;
    assert_eq!(plain.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(plain.text(), "Gateway Timeout\n");
}
