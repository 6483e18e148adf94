//! The proxy core end to end (SPEC §9.1, §9.3, §9.4, §9.5a, §3 server/tls
//! keys): the real binary between a TLS client and an in-process upstream.

mod support;

use http::{Request, StatusCode, Version};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_1_alpn_h1_and_h2_both_proxy() {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &[]).await;

    let r = send1(
        &mut proxy.h1().await,
        get("localhost", "/one?x=1").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let echo = r.echo();
    assert_eq!(
        (echo.method.as_str(), echo.uri.as_str()),
        ("GET", "/one?x=1")
    );

    let mut h2 = proxy.h2().await;
    let req = Request::get(format!("{}/two", proxy.origin()))
        .body(empty())
        .unwrap();
    let resp = within(10, "h2 response", async {
        h2.ready().await.unwrap();
        h2.send_request(req).await.unwrap()
    })
    .await;
    assert_eq!(resp.version(), Version::HTTP_2);
    let r = Resp::read(resp).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let echo = r.echo();
    assert_eq!(echo.uri, "/two");
    // The h2 :authority is the host the upstream is told about.
    assert_eq!(
        echo.one("x-forwarded-host"),
        Some(format!("localhost:{}", proxy.https_addr.port()).as_str())
    );
    assert_eq!(up.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_tls_sni_chooses_the_configured_certificate() {
    let up = Upstream::start("app").await;
    let (app_cert, app_key) = self_signed(&["app.test"]);
    let config = ProxyConfig::new()
        .route(&up.url(), "")
        .raw("[[tls.sni]]\nhosts = [\"app.test\"]\ncert = \"sni/app.pem\"\nkey = \"sni/app.key\"")
        .file("sni/app.pem", app_cert)
        .file("sni/app.key", app_key);
    let proxy = TestProxy::start(&config).await;
    let (default_path, app_path) = (proxy.cert_path(), proxy.path("sni/app.pem"));
    let trust = client_config(
        &[default_path.as_path(), app_path.as_path()],
        &[b"http/1.1"],
    );
    let der = |p: &std::path::Path| {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_file(p)
            .unwrap()
            .as_ref()
            .to_vec()
    };

    let app = within(
        10,
        "TLS app.test",
        tls_connect(proxy.https_addr, "app.test", trust.clone()),
    )
    .await
    .unwrap();
    let local = within(
        10,
        "TLS localhost",
        tls_connect(proxy.https_addr, "localhost", trust),
    )
    .await
    .unwrap();
    assert_eq!(
        peer_cert(&app),
        der(&app_path),
        "SNI app.test must get the [[tls.sni]] certificate"
    );
    assert_eq!(
        peer_cert(&local),
        der(&default_path),
        "other names get the default certificate"
    );
    assert_ne!(peer_cert(&app), peer_cert(&local));

    let r = send1(
        &mut h1_over(app).await,
        get("app.test", "/").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_4_refused_upstream_is_502() {
    let addr = upstream::refusing_addr().await;
    let proxy = TestProxy::start(&ProxyConfig::new().route(&format!("http://{addr}"), "")).await;
    let r = proxy.get("/").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    assert!(
        !r.text().contains(&addr.to_string()),
        "no internals in the body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_4_reset_upstream_is_502() {
    let (addr, _task) = upstream::resetting().await;
    let proxy = TestProxy::start(&ProxyConfig::new().route(&format!("http://{addr}"), "")).await;
    let mut h1 = proxy.h1().await;
    for _ in 0..3 {
        let r = send1(&mut h1, get("localhost", "/").body(empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_4_no_response_headers_in_time_is_504() {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &["upstream_response_timeout = \"1s\""]).await;
    let r = proxy.get("/slow?ms=3000").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    // A fast answer on the same route is unaffected.
    assert_eq!(proxy.get("/slow?ms=10").await.status, StatusCode::OK);
}

const BIG: u64 = 200 * 1024 * 1024;
const RSS_LIMIT_KIB: u64 = 100 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_1_bodies_stream_both_ways_in_bounded_memory() {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &[]).await;

    let mut h1 = proxy.h1().await;
    let req = Request::post("/count")
        .header("host", "localhost")
        .body(Repeat::body(BIG))
        .unwrap();
    let r = within(120, "200 MB upload", send1(&mut h1, req)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), BIG.to_string(), "the upstream got every byte");
    let after_upload = proxy.memory_kib("VmHWM");

    let req = get("localhost", &format!("/download?bytes={BIG}"))
        .body(empty())
        .unwrap();
    let resp = within(30, "download head", async {
        h1.ready().await.unwrap();
        h1.send_request(req).await.unwrap()
    })
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut got = 0u64;
    within(120, "200 MB download", async {
        while let Some(frame) = body.frame().await {
            got += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
        }
    })
    .await;
    assert_eq!(got, BIG);
    let peak = proxy.memory_kib("VmHWM");
    assert!(
        after_upload < RSS_LIMIT_KIB,
        "peak RSS after upload {after_upload} KiB"
    );
    assert!(peak < RSS_LIMIT_KIB, "peak RSS after download {peak} KiB");
}

/// HTTP/2 streams on one connection, each way past the flow-control
/// windows, beside a download the client abandons part-way: every byte
/// arrives, memory stays bounded and the connection goes on serving. Run
/// with one worker (streams on their connection's task, as on one CPU) and
/// with two (a task per stream).
async fn h2_bodies_stream_both_ways(workers: &str) {
    const LEN: u64 = 128 * 1024 * 1024;
    let up = Upstream::start("app").await;
    let config = ProxyConfig::new()
        .route(&up.url(), "")
        .env("TOKIO_WORKER_THREADS", workers);
    let proxy = TestProxy::start(&config).await;
    let h2 = proxy.h2().await;

    // Read to `LEN / 16`, then dropped: the client resets the stream.
    let abandoned = download(h2.clone(), proxy.origin(), LEN, LEN / 16);
    let mut uploading = h2.clone();
    let origin = proxy.origin();
    let upload = async move {
        let req = Request::post(format!("{origin}/count"))
            .body(Repeat::body(LEN))
            .unwrap();
        send2(&mut uploading, req).await
    };
    let full = download(h2.clone(), proxy.origin(), LEN, LEN);
    let (uploaded, downloaded, _) = within(120, "h2 bodies both ways", async {
        tokio::join!(upload, full, abandoned)
    })
    .await;
    assert_eq!(uploaded.status, StatusCode::OK);
    assert_eq!(
        uploaded.text(),
        LEN.to_string(),
        "the upstream got every byte"
    );
    assert_eq!(downloaded, LEN, "the client got every byte");
    let peak = proxy.memory_kib("VmHWM");
    assert!(peak < RSS_LIMIT_KIB, "peak RSS {peak} KiB");
    let mut h2 = h2;
    let r = send2(
        &mut h2,
        Request::get(format!("{}/after", proxy.origin()))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "the connection still serves");
}

/// GETs `len` bytes from the upstream over `h2` and reads them until `stop`
/// bytes have arrived or the body ends; how many arrived.
async fn download(mut h2: H2, origin: String, len: u64, stop: u64) -> u64 {
    let req = Request::get(format!("{origin}/download?bytes={len}"))
        .body(empty())
        .unwrap();
    h2.ready().await.unwrap();
    let mut body = h2.send_request(req).await.unwrap().into_body();
    let mut got = 0u64;
    while got < stop {
        let Some(frame) = body.frame().await else {
            break;
        };
        got += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_1_h2_bodies_stream_both_ways_on_one_worker() {
    h2_bodies_stream_both_ways("1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_1_h2_bodies_stream_both_ways_on_two_workers() {
    h2_bodies_stream_both_ways("2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_3_websocket_is_tunnelled() {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &[]).await;
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let req = get("localhost", "/ws")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", key)
        .header("sec-websocket-version", "13")
        .body(empty())
        .unwrap();
    let mut h1 = proxy.h1().await;
    within(10, "ready", h1.ready()).await.unwrap();
    let resp = within(10, "101", h1.send_request(req)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        resp.headers()["sec-websocket-accept"],
        upstream::ws_accept(key).as_str()
    );
    assert!(resp.headers()["upgrade"]
        .as_bytes()
        .eq_ignore_ascii_case(b"websocket"));
    let upgraded = within(10, "upgrade", hyper::upgrade::on(resp))
        .await
        .unwrap();
    let mut io = hyper_util::rt::TokioIo::new(upgraded);
    // A masked text frame "hello"; the upstream echoes raw bytes.
    let frame = [
        0x81,
        0x85,
        1,
        2,
        3,
        4,
        b'h' ^ 1,
        b'e' ^ 2,
        b'l' ^ 3,
        b'l' ^ 4,
        b'o' ^ 1,
    ];
    for _ in 0..3 {
        io.write_all(&frame).await.unwrap();
        let mut back = [0u8; 11];
        within(10, "echo", io.read_exact(&mut back)).await.unwrap();
        assert_eq!(back, frame);
    }
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_redirect_listener_answers_308_to_https() {
    let up = Upstream::start("app").await;
    let proxy = TestProxy::start(&ProxyConfig::new().redirect().route(&up.url(), "")).await;
    let mut tcp = TcpStream::connect(proxy.redirect_addr.unwrap())
        .await
        .unwrap();
    let req =
        "GET /some/path?x=1&y=%2F HTTP/1.1\r\nHost: example.test:8080\r\nConnection: close\r\n\r\n";
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    within(10, "redirect response", tcp.read_to_end(&mut raw))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert_eq!(statuses(&raw), [308], "{text}");
    let want = format!(
        "location: https://example.test:{}/some/path?x=1&y=%2f\r\n",
        proxy.https_addr.port()
    );
    assert!(text.contains(&want), "{text}");
    assert!(
        !text.contains("strict-transport-security"),
        "no HSTS over plain HTTP"
    );

    let addr = proxy.redirect_addr.unwrap();
    for (head, want) in [
        (
            "Host: example.test",
            format!(
                "location: https://example.test:{}/\r\n",
                proxy.https_addr.port()
            ),
        ),
        ("X-No-Host: 1", "HTTP/1.1 400".to_string()),
    ] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET / HTTP/1.1\r\n{head}\r\nConnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        within(10, "redirect response", tcp.read_to_end(&mut raw))
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        assert!(text.contains(&want.to_ascii_lowercase()), "{head}: {text}");
    }
    assert_eq!(up.hits(), 0, "the redirect listener never proxies");
}
