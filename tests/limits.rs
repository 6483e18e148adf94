//! Client-side limits of `[server]` (SPEC §3): header size, slow headers,
//! idle connections. Each is enforced on the real binary.

mod support;

use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_oversized_headers_get_431() {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &["max_request_header_bytes = 2048"]).await;
    let big = "a".repeat(4000);

    let small = get("localhost", "/")
        .header("x-small", "a".repeat(1000))
        .body(empty())
        .unwrap();
    assert_eq!(
        send1(&mut proxy.h1().await, small).await.status,
        StatusCode::OK
    );

    let (mut tls, req) = (
        proxy.tls(&[b"http/1.1"]).await,
        format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\n\r\n"),
    );
    let (raw, closed) = exchange(&mut tls, req.as_bytes(), 10).await;
    assert_eq!(statuses(&raw), [431], "{}", String::from_utf8_lossy(&raw));
    assert!(closed);

    let req = Request::get(format!("{}/", proxy.origin()))
        .header("x-big", big)
        .body(empty())
        .unwrap();
    let mut h2 = proxy.h2().await;
    let status = within(10, "h2 431", async {
        h2.ready().await.unwrap();
        h2.send_request(req).await.map(|r| r.status())
    })
    .await;
    // h2 may answer 431 or refuse the stream; either way nothing reaches the upstream.
    if let Ok(status) = status {
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    assert_eq!(up.hits(), 1, "only the small request reaches the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_slow_headers_connection_is_closed() {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &["request_header_timeout = \"1s\""]).await;

    // Half a request line, then nothing.
    let mut tls = proxy.tls(&[b"http/1.1"]).await;
    let started = Instant::now();
    let (_, closed) = exchange(&mut tls, b"GET /slow HT", 8).await;
    assert!(closed, "a stalled request head must be cut");
    assert!(started.elapsed() < Duration::from_secs(6));

    // Trickled bytes do not extend the deadline (slowloris).
    let tls = proxy.tls(&[b"http/1.1"]).await;
    let (mut rd, mut wr) = tokio::io::split(tls);
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let head = format!(
            "GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: {}",
            "a".repeat(100)
        );
        for b in head.bytes() {
            if wr.write_all(&[b]).await.is_err() || wr.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let closed = within(8, "slowloris close", async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(
        closed && started.elapsed() < Duration::from_secs(6),
        "trickling must not keep the head open"
    );
    writer.abort();

    // A TCP connection that never starts TLS is closed too.
    let mut tcp = TcpStream::connect(proxy.https_addr).await.unwrap();
    let n = within(8, "TLS handshake timeout", tcp.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_keep_alive_waits_idle_timeout_but_times_each_next_head() {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(
        &up,
        &[
            "request_header_timeout = \"1s\"",
            "client_idle_timeout = \"30s\"",
        ],
    )
    .await;

    // Waiting for the next request is idleness, bounded by the idle
    // timeout, not by the header timeout.
    let mut h1 = proxy.h1().await;
    let req = || get("localhost", "/").body(empty()).unwrap();
    assert_eq!(send1(&mut h1, req()).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        send1(&mut h1, req()).await.status,
        StatusCode::OK,
        "an idle keep-alive connection was cut at the header timeout"
    );

    // Once a next head starts, it has the header timeout to complete.
    let mut tls = proxy.tls(&[b"http/1.1"]).await;
    // `/hop` answers the body "hop".
    tls.write_all(b"GET /hop HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    within(10, "first response", async {
        while !String::from_utf8_lossy(&first).ends_with("\r\n\r\nhop") {
            let n = tls.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the first response ended");
            first.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert_eq!(statuses(&first), [200]);
    let started = Instant::now();
    let (raw, closed) = exchange(&mut tls, b"GET / HT", 8).await;
    assert!(closed, "a stalled second head must be cut");
    assert!(raw.is_empty());
    assert!(started.elapsed() < Duration::from_secs(6));
    assert_eq!(up.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_slow_heads_are_cut_on_the_redirect_listener() {
    let up = Upstream::start("app").await;
    let config = ProxyConfig::new()
        .route(&up.url(), "")
        .server("request_header_timeout = \"1s\"")
        .redirect();
    let proxy = TestProxy::start(&config).await;
    let mut tcp = TcpStream::connect(proxy.redirect_addr.unwrap())
        .await
        .unwrap();
    tcp.write_all(b"GET / HT").await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let n = within(8, "slow head on the redirect listener", tcp.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "answered a head that never ended");
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_idle_client_connections_are_closed_on_h1_and_h2() {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &["client_idle_timeout = \"2s\""]).await;

    let mut tls = proxy.tls(&[b"http/1.1"]).await;
    let (raw, closed) = exchange(&mut tls, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", 8).await;
    assert_eq!(statuses(&raw), [200]);
    assert!(closed, "an idle HTTP/1.1 connection must be closed");

    // The h2 client answers the server's keep-alive pings, as browsers do;
    // those pings must not count as activity.
    let tls = proxy.tls(&[b"h2"]).await;
    let io = hyper_util::rt::TokioIo::new(tls);
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let r = send2(
        &mut h2,
        Request::get(format!("{}/", proxy.origin()))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let ended = tokio::time::timeout(Duration::from_secs(8), conn).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection must be closed");
}

/// A TLS connection (ALPN `http/1.1`) from the loopback address `src`.
async fn tls_from(proxy: &TestProxy, src: [u8; 4]) -> std::io::Result<Tls> {
    let config = proxy.client_config(&[b"http/1.1"]);
    tls_connect_from(src, proxy.https_addr, "localhost", config).await
}

/// Whether a connection from `src` is served: a request on it gets 200.
async fn served_from(proxy: &TestProxy, src: [u8; 4]) -> Option<H1> {
    let tls = within(10, "TLS connect", tls_from(proxy, src)).await.ok()?;
    let mut h1 = h1_over(tls).await;
    let req = get("localhost", "/").body(empty()).unwrap();
    let ok = within(10, "request", h1.send_request(req)).await;
    matches!(ok, Ok(r) if r.status() == StatusCode::OK).then_some(h1)
}

/// The value of one series in the admin listener's `/metrics`.
async fn metric(proxy: &TestProxy, series: &str) -> f64 {
    let (_, text) = support::replicas::admin(proxy, "GET", "/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_at_max_connections_the_longest_idle_connection_makes_room() {
    let up = Upstream::start("app").await;
    // A short head timeout makes the watchdog sample idleness every 250 ms.
    let config = ProxyConfig::new()
        .server("max_connections = 2")
        .server("request_header_timeout = \"1s\"")
        .admin()
        .route(&up.url(), "");
    let proxy = TestProxy::start(&config).await;
    let mut first = served_from(&proxy, [127, 0, 0, 1]).await.expect("first");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut second = served_from(&proxy, [127, 0, 0, 1]).await.expect("second");
    tokio::time::sleep(Duration::from_millis(600)).await;

    // At the cap with both idle: a third is served, and the longest idle
    // (the first) is closed to make room.
    let _third = served_from(&proxy, [127, 0, 0, 1])
        .await
        .expect("a third connection is served at the cap");
    within(10, "the first connection closes", first.ready())
        .await
        .expect_err("the longest-idle connection was closed");
    let r = send1(&mut second, get("localhost", "/").body(empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK, "the more recent one stays");
    assert_eq!(
        metric(&proxy, "cloakroom_connections_reclaimed_total").await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_at_max_connections_with_nothing_idle_a_new_one_is_refused_at_once() {
    let up = Upstream::start("app").await;
    let config = ProxyConfig::new()
        .server("max_connections = 2")
        .admin()
        .route(&up.url(), "");
    let proxy = TestProxy::start(&config).await;
    // Two connections, each with a request in flight for 5 s.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut h1 = proxy.h1().await;
        let req = get("localhost", "/slow?ms=5000").body(empty()).unwrap();
        busy.push(tokio::spawn(async move { h1.send_request(req).await }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Refused at once: accepted and closed, not left in the backlog.
    let third = within(
        3,
        "a refused connection ends",
        tls_from(&proxy, [127, 0, 0, 1]),
    )
    .await;
    assert!(
        third.is_err(),
        "a third connection was served while two were busy"
    );
    let refused = "cloakroom_connections_refused_total{reason=\"max_connections\"}";
    assert_eq!(metric(&proxy, refused).await, 1.0);
    // The busy ones finish; then there is room again.
    for b in busy {
        let r = within(10, "busy request", b).await.unwrap().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert!(served_from(&proxy, [127, 0, 0, 1]).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_one_address_at_its_cap_does_not_keep_another_out() {
    let up = Upstream::start("app").await;
    let config = ProxyConfig::new()
        .server("max_connections_per_client = 3")
        .server("trusted_proxies = [\"127.0.0.4\"]")
        .admin()
        .route(&up.url(), "");
    let proxy = TestProxy::start(&config).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            served_from(&proxy, [127, 0, 0, 2])
                .await
                .expect("under the cap"),
        );
    }
    let fourth = within(
        3,
        "a refused connection ends",
        tls_from(&proxy, [127, 0, 0, 2]),
    )
    .await;
    assert!(fourth.is_err(), "127.0.0.2 opened a fourth connection");
    assert!(
        served_from(&proxy, [127, 0, 0, 3]).await.is_some(),
        "another address is served while 127.0.0.2 holds its cap"
    );
    // A trusted proxy carries many clients: no per-address cap.
    for n in 0..5 {
        let c = served_from(&proxy, [127, 0, 0, 4]).await;
        held.push(c.unwrap_or_else(|| panic!("trusted proxy connection {n}")));
    }
    let refused = "cloakroom_connections_refused_total{reason=\"per_client\"}";
    assert_eq!(metric(&proxy, refused).await, 1.0);
    // Closing one gives the address its place back.
    held.remove(0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(served_from(&proxy, [127, 0, 0, 2]).await.is_some());
}

/// User plus system CPU time of a process, from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    // USER_HZ is 100 on Linux.
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_request_outliving_the_idle_timeout_costs_no_cpu() {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &["client_idle_timeout = \"1s\""]).await;
    let mut h1 = proxy.h1().await;
    let before = cpu_time(proxy.pid);
    // In flight, with no bytes moving, for 2 s past the idle timeout.
    let r = send1(
        &mut h1,
        get("localhost", "/slow?ms=3000").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "a request in flight is not idle");
    let used = cpu_time(proxy.pid) - before;
    assert!(
        used < Duration::from_millis(1000),
        "the proxy burnt {used:?} of CPU waiting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_slow_stream_is_not_an_idle_connection() {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &["client_idle_timeout = \"1s\""]).await;
    let mut h1 = proxy.h1().await;
    // The body pauses 2.5 s mid-stream, longer than the idle timeout.
    let r = send1(
        &mut h1,
        get("localhost", "/drip?ms=2500").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.text(),
        "tick\ntock\n",
        "the stream was cut while in flight"
    );
}
