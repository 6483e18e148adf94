//! The HTTP/1.1 request-framing guard (`src/server/h1guard.rs`, SPEC §3
//! `max_request_header_bytes`): a request line longer than the header limit
//! is 414, a chunk size no body can have is 400, and everything valid
//! (pipelining, chunk extensions, trailers, upgrades) passes as before.
//! Raw bytes over TLS against the real binary.

mod support;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::*;

/// The value of one series in the admin listener's `/metrics`.
async fn metric(proxy: &TestProxy, series: &str) -> f64 {
    let (_, text) = support::replicas::admin(proxy, "GET", "/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn setup() -> (Upstream, TestProxy) {
    let up = Upstream::start("app").await;
    let config = ProxyConfig::new().admin().route(&up.url(), "");
    (up, TestProxy::start(&config).await)
}

fn text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_request_target_longer_than_the_header_limit_is_414() {
    let (up, proxy) = setup().await;
    let target = format!("/{}", "a".repeat(100_000));
    let req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut tls = proxy.tls(&[b"http/1.1"]).await;
    let (raw, closed) = exchange(&mut tls, req.as_bytes(), 10).await;
    assert_eq!(statuses(&raw), [414], "{}", text(&raw));
    let t = text(&raw);
    assert!(t.contains("connection: close") && t.contains("content-length: 0"));
    assert!(closed);
    assert_eq!(up.hits(), 0, "nothing reaches the upstream");

    // After an answered request on the same connection, too: the 414
    // follows its response, never cuts into it.
    let mut tls = proxy.tls(&[b"http/1.1"]).await;
    let req = format!("GET /hop HTTP/1.1\r\nHost: localhost\r\n\r\nGET {target} HTTP/1.1\r\n");
    let (raw, closed) = exchange(&mut tls, req.as_bytes(), 10).await;
    assert_eq!(statuses(&raw), [200, 414], "{}", text(&raw));
    assert!(closed);
    assert_eq!(up.paths(), ["/hop"]);
    let refused = "cloakroom_connections_refused_total{reason=\"h1_target_too_long\"}";
    assert_eq!(metric(&proxy, refused).await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_target_within_the_header_limit_is_served_as_before() {
    let (up, proxy) = setup().await;
    // The default limit is 16384 bytes for the whole head.
    let target = format!("/{}", "b".repeat(16_000));
    let mut h1 = proxy.h1().await;
    let r = send1(&mut h1, get("localhost", &target).body(empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(up.paths(), [target]);

    // A line that ends within the limit in a head that does not: still
    // hyper's 431 about the header fields.
    let target = format!("/{}", "c".repeat(16_300));
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n",
        "d".repeat(200)
    );
    let mut tls = proxy.tls(&[b"http/1.1"]).await;
    let (raw, closed) = exchange(&mut tls, req.as_bytes(), 10).await;
    assert_eq!(statuses(&raw), [431], "{}", text(&raw));
    assert!(closed);
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_chunk_size_no_body_can_have_is_400() {
    let (up, proxy) = setup().await;
    for size in ["ffffffffffffffff", "10000000000000"] {
        let before = up.hits();
        let mut tls = proxy.tls(&[b"http/1.1"]).await;
        let req = format!(
            "POST /count HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n{size}\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
        );
        let (raw, closed) = exchange(&mut tls, req.as_bytes(), 10).await;
        assert_eq!(statuses(&raw), [400], "{size}: {}", text(&raw));
        assert!(text(&raw).contains("connection: close"));
        assert!(closed, "{size}: the connection stayed open");
        // The request and its first chunk may have been forwarded; nothing
        // after the refused size.
        assert!(up.hits() - before <= 1);
        assert!(!up.paths().iter().any(|p| p.contains("smuggled")));
    }
    let refused = "cloakroom_connections_refused_total{reason=\"h1_chunk_size\"}";
    assert_eq!(metric(&proxy, refused).await, 2.0);
    // The access log says what the client got, and nothing blames the
    // upstream.
    let mut proxy = proxy;
    proxy
        .wait_log(10, |v| v["target"] == "access" && v["path"] == "/count")
        .await
        .expect("no access line for the refused body");
    let logged: Vec<_> = proxy
        .access_logs()
        .iter()
        .filter(|l| l["path"] == "/count")
        .map(|l| l["status"].clone())
        .collect();
    assert_eq!(logged, [400, 400], "{logged:?}");
    assert!(
        !proxy
            .logs()
            .iter()
            .any(|l| l["message"] == "upstream request failed"),
        "a client's malformed body was logged as an upstream failure"
    );

    // The largest size the guard accepts is hyper's to read as usual: the
    // request waits for its data (and is cut by the client here).
    let mut tls = proxy.tls(&[b"http/1.1"]).await;
    let req = "POST /count HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffff\r\nabc";
    tls.write_all(req.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = [0u8; 256];
    let read =
        tokio::time::timeout(std::time::Duration::from_millis(1500), tls.read(&mut buf)).await;
    assert!(read.is_err(), "answered a chunk it must wait for: {read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_pipelined_requests_with_chunk_extensions_and_trailers_pass_intact() {
    let (up, proxy) = setup().await;
    let payload = concat!(
        "\r\n",
        "POST /count HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
        "5;name=value\r\nhello\r\n006 ; a=\"b;c\"\r\n world\r\n0;last\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n",
        "POST /count HTTP/1.1\r\nHost: localhost\r\nContent-Length: 7\r\n\r\nabc\r\nde",
        "GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "POST /count HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
        "GET /last HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    // Whole, then in small pieces, so that the framing is split everywhere.
    for piece in [payload.len(), 7, 1] {
        let before = up.paths().len();
        let mut tls = proxy.tls(&[b"http/1.1"]).await;
        for part in payload.as_bytes().chunks(piece) {
            tls.write_all(part).await.unwrap();
            tls.flush().await.unwrap();
        }
        let (raw, closed) = read_to_close(&mut tls, 10).await;
        assert!(closed);
        assert_eq!(statuses(&raw), [200; 5], "{}", text(&raw));
        let t = text(&raw);
        let counts: Vec<&str> = t
            .split("\r\n\r\n")
            .skip(1)
            .filter_map(|b| b.split("http/1.1").next())
            .map(|b| b.trim())
            .collect();
        assert_eq!(counts[..2], ["11", "7"], "{t}");
        assert_eq!(counts[3], "1", "{t}");
        assert_eq!(
            up.paths()[before..],
            ["/count", "/count", "/one", "/count", "/last"]
        );
    }
}
