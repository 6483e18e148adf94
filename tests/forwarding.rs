//! What the upstream receives (SPEC §9.2, §9.3, §3 routing): forwarded
//! headers, hop-by-hop removal, refused upgrades, route choice and the one
//! normalised path.

mod support;

use http::{Request, StatusCode};

use support::*;

async fn echo_via(proxy: &TestProxy, req: Request<Body>) -> Echo {
    let r = send1(&mut proxy.h1().await, req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.echo()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_2_forwarded_headers_from_untrusted_peer_are_replaced() {
    let up = Upstream::start("app").await;
    let proxy = TestProxy::start(&ProxyConfig::new().route(&up.url(), "")).await;
    let req = get("app.test", "/")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-for", "7.7.7.7")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", "evil.test")
        .body(empty())
        .unwrap();
    let echo = echo_via(&proxy, req).await;
    assert_eq!(echo.one("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(echo.one("x-forwarded-proto"), Some("https"));
    assert_eq!(echo.one("x-forwarded-host"), Some("app.test"));

    // Absent: all three are set.
    let echo = echo_via(&proxy, get("app.test", "/").body(empty()).unwrap()).await;
    assert_eq!(echo.one("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(echo.one("x-forwarded-proto"), Some("https"));
    assert_eq!(echo.one("x-forwarded-host"), Some("app.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_2_forwarded_headers_from_trusted_peer_are_appended_and_kept() {
    let up = Upstream::start("app").await;
    let config = ProxyConfig::new()
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .route(&up.url(), "");
    let proxy = TestProxy::start(&config).await;
    let req = get("app.test", "/")
        .header("x-forwarded-for", "1.1.1.1")
        .header("x-forwarded-for", "2.2.2.2")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", "front.test")
        .body(empty())
        .unwrap();
    let echo = echo_via(&proxy, req).await;
    assert_eq!(
        echo.one("x-forwarded-for"),
        Some("1.1.1.1, 2.2.2.2, 127.0.0.1")
    );
    assert_eq!(echo.one("x-forwarded-proto"), Some("http"));
    assert_eq!(echo.one("x-forwarded-host"), Some("front.test"));

    // A trusted peer that sends none still gets them set.
    let echo = echo_via(&proxy, get("app.test", "/").body(empty()).unwrap()).await;
    assert_eq!(echo.one("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(echo.one("x-forwarded-proto"), Some("https"));
    assert_eq!(echo.one("x-forwarded-host"), Some("app.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_2_hop_by_hop_headers_are_removed_from_requests() {
    let up = Upstream::start("app").await;
    let config = ProxyConfig::new()
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .route(&up.url(), "");
    let proxy = TestProxy::start(&config).await;
    let req = get("localhost", "/")
        .header("connection", "keep-alive, X-Client-Secret")
        .header(
            "connection",
            "X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host",
        )
        .header("x-client-secret", "named by Connection")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("x-forwarded-for", "9.9.9.9")
        .header("x-kept", "yes")
        .body(empty())
        .unwrap();
    let echo = echo_via(&proxy, req).await;
    for gone in [
        "connection",
        "x-client-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "proxy-authorization",
    ] {
        assert!(
            echo.all(gone).is_empty(),
            "{gone} reached the upstream: {:?}",
            echo.headers
        );
    }
    assert_eq!(echo.one("x-kept"), Some("yes"));
    // A Connection token removed the client's values, never the proxy's own.
    assert_eq!(echo.one("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(echo.one("x-forwarded-proto"), Some("https"));
    assert_eq!(echo.one("x-forwarded-host"), Some("localhost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_2_hop_by_hop_headers_are_removed_from_responses() {
    let up = Upstream::start("app").await;
    let proxy = TestProxy::start(&ProxyConfig::new().route(&up.url(), "")).await;
    let r = proxy.get("/hop").await;
    assert_eq!(r.status, StatusCode::OK);
    for gone in ["x-up-secret", "keep-alive", "proxy-connection"] {
        assert!(
            r.header(gone).is_none(),
            "{gone} reached the client: {:?}",
            r.headers
        );
    }
    assert!(r.headers.get_all("connection").iter().all(|v| !v
        .to_str()
        .unwrap()
        .to_ascii_lowercase()
        .contains("x-up-secret")));
    assert_eq!(r.header("x-up-kept"), Some("yes"));
    assert_eq!(r.text(), "hop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_3_connect_and_non_websocket_upgrades_are_refused() {
    let up = Upstream::start("app").await;
    let proxy = TestProxy::start(&ProxyConfig::new().route(&up.url(), "")).await;

    let mut tls = proxy.tls(&[b"http/1.1"]).await;
    let connect =
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\nConnection: close\r\n\r\n";
    let (raw, _) = exchange(&mut tls, connect, 10).await;
    assert_eq!(statuses(&raw), [405], "{}", String::from_utf8_lossy(&raw));

    let h2c = get("localhost", "/")
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("upgrade", "h2c")
        .header("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA")
        .body(empty())
        .unwrap();
    assert_eq!(
        send1(&mut proxy.h1().await, h2c).await.status,
        StatusCode::BAD_REQUEST
    );

    let post_ws = Request::post("/")
        .header("host", "localhost")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .body(full("x"))
        .unwrap();
    assert_eq!(
        send1(&mut proxy.h1().await, post_ws).await.status,
        StatusCode::BAD_REQUEST
    );
    let mut h2 = proxy.h2().await;
    let connect = Request::connect("127.0.0.1:22").body(empty()).unwrap();
    assert_eq!(
        send2(&mut h2, connect).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(up.hits(), 0, "refused requests never reach the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_routes_match_host_class_then_longest_segment_prefix() {
    let (exact, admin, wild, any, api) = (
        Upstream::start("exact").await,
        Upstream::start("admin").await,
        Upstream::start("wild").await,
        Upstream::start("any").await,
        Upstream::start("api").await,
    );
    let config = ProxyConfig::new()
        .route(&any.url(), "")
        .route(&api.url(), "path_prefix = \"/api\"")
        .route(&wild.url(), "host = \"*.test\"")
        .route(&exact.url(), "host = \"app.test\"")
        .route(
            &admin.url(),
            "host = \"app.test\"\npath_prefix = \"/admin/\"",
        );
    let proxy = TestProxy::start(&config).await;
    for (host, path, want) in [
        ("app.test", "/", "exact"),
        ("APP.Test:8443", "/admin/x", "admin"),
        ("app.test", "/admin", "admin"),
        ("app.test", "/administrator", "exact"),
        ("app.test", "/api", "exact"),
        ("x.test", "/api/v1", "wild"),
        ("a.b.test", "/", "wild"),
        ("other.example", "/", "any"),
        ("other.example", "/api", "api"),
        ("other.example", "/api/v1?q=1", "api"),
        ("other.example", "/apiary", "any"),
        ("test", "/", "any"),
    ] {
        let echo = echo_via(&proxy, get(host, path).body(empty()).unwrap()).await;
        assert_eq!(echo.upstream, want, "Host {host} {path}");
        assert_eq!(echo.uri, path, "the prefix is not stripped");
    }
}

/// One HTTP/2 connection whose streams name different hosts: each stream
/// is routed and forwarded by its own `:authority`, and one RFC 3986
/// refuses is a 400 however many good ones came before (the proxy keeps a
/// connection's last host to share its bytes; this is what that must not
/// change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_an_h2_connection_routes_each_stream_by_its_own_authority() {
    let (exact, wild, any) = (
        Upstream::start("exact").await,
        Upstream::start("wild").await,
        Upstream::start("any").await,
    );
    let config = ProxyConfig::new()
        .route(&any.url(), "")
        .route(&wild.url(), "host = \"*.test\"")
        .route(&exact.url(), "host = \"app.test\"");
    let proxy = TestProxy::start(&config).await;
    let mut h2 = proxy.h2().await;
    for (authority, want) in [
        ("app.test", Some("exact")),
        ("app.test", Some("exact")),
        ("x.test", Some("wild")),
        ("app.test:8443", Some("exact")),
        ("user@app.test", None),
        ("app.test", Some("exact")),
        ("other.example", Some("any")),
        ("x.test", Some("wild")),
    ] {
        let req = Request::get(format!("https://{authority}/p"))
            .body(empty())
            .unwrap();
        let r = send2(&mut h2, req).await;
        let Some(want) = want else {
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{authority}");
            continue;
        };
        assert_eq!(r.status, StatusCode::OK, "{authority}: {}", r.text());
        let echo = r.echo();
        assert_eq!(echo.upstream, want, "{authority}");
        assert_eq!(echo.one("x-forwarded-host"), Some(authority), "{authority}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_reserved_prefix_and_unrouted_hosts_are_404() {
    let up = Upstream::start("app").await;
    let proxy = TestProxy::start(&ProxyConfig::new().route(&up.url(), "host = \"app.test\"")).await;
    let mut h1 = proxy.h1().await;
    for (host, path) in [
        ("app.test", "/.cloakroom/anything"),
        ("app.test", "/.cloakroom"),
        ("app.test", "/x/../.cloakroom/y"),
        ("app.test", "//.cloakroom/y"),
        ("other.test", "/"),
    ] {
        let r = send1(&mut h1, get(host, path).body(empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{host} {path}");
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=31536000")
        );
    }
    assert_eq!(up.hits(), 0);
    let r = send1(
        &mut h1,
        get("app.test", "/.cloakroomx").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "only the /.cloakroom segment is reserved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_normalised_path_is_routed_and_forwarded() {
    let (public, admin) = (
        Upstream::start("public").await,
        Upstream::start("admin").await,
    );
    let config = ProxyConfig::new()
        .route(&public.url(), "path_prefix = \"/public\"")
        .route(&admin.url(), "path_prefix = \"/admin\"");
    let proxy = TestProxy::start(&config).await;
    for (sent, want_upstream, want_path) in [
        ("/public/../admin", "admin", "/admin"),
        (
            "/public/../admin/x?q=1&r=/../",
            "admin",
            "/admin/x?q=1&r=/../",
        ),
        ("//admin//./x", "admin", "/admin/x"),
        ("/admin/../public/", "public", "/public/"),
        ("/public/%2e%2e/admin", "public", "/public/%2e%2e/admin"),
        ("/public/..%2fadmin", "public", "/public/..%2fadmin"),
    ] {
        let echo = echo_via(&proxy, get("localhost", sent).body(empty()).unwrap()).await;
        assert_eq!(
            (echo.upstream.as_str(), echo.uri.as_str()),
            (want_upstream, want_path),
            "sent {sent}"
        );
    }
    // A fragment is never forwarded.
    let mut tls = proxy.tls(&[b"http/1.1"]).await;
    let req = b"GET /admin/page#frag HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (raw, _) = exchange(&mut tls, req, 10).await;
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(statuses(&raw), [200], "{text}");
    assert!(
        text.contains("\"uri\":\"/admin/page\"") && !text.contains("frag"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_preserve_host_forwards_the_clients_host() {
    let (kept, rewritten) = (
        Upstream::start("kept").await,
        Upstream::start("rewritten").await,
    );
    let config = ProxyConfig::new()
        .route(&kept.url(), "host = \"keep.test\"\npreserve_host = true")
        .route(&rewritten.url(), "host = \"plain.test\"");
    let proxy = TestProxy::start(&config).await;
    let echo = echo_via(&proxy, get("keep.test:8443", "/").body(empty()).unwrap()).await;
    assert_eq!(echo.one("host"), Some("keep.test:8443"));
    let echo = echo_via(&proxy, get("plain.test", "/").body(empty()).unwrap()).await;
    assert_eq!(echo.one("host"), Some(rewritten.addr.to_string().as_str()));
    assert_eq!(echo.one("x-forwarded-host"), Some("plain.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_host_must_be_exactly_one_valid_authority() {
    // RFC 9112 §3.2: 400 for several Host fields or an invalid value; the
    // Host is what routing, X-Forwarded-Host and redirects are built from.
    let up = Upstream::start("app").await;
    let proxy = TestProxy::start(&ProxyConfig::new().redirect().route(&up.url(), "")).await;
    for head in [
        "Host: app.test\r\nHost: evil.test",
        "Host: evil.test/path?",
        "Host: user@app.test",
        "Host: app.test evil.test",
        "Host: app.test:port",
    ] {
        let mut tls = proxy.tls(&[b"http/1.1"]).await;
        let req = format!("GET / HTTP/1.1\r\n{head}\r\nConnection: close\r\n\r\n");
        let (raw, _) = exchange(&mut tls, req.as_bytes(), 10).await;
        assert_eq!(
            statuses(&raw),
            [400],
            "{head:?}: {}",
            String::from_utf8_lossy(&raw)
        );

        let mut tcp = tokio::net::TcpStream::connect(proxy.redirect_addr.unwrap())
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut tcp, req.as_bytes())
            .await
            .unwrap();
        let mut raw = Vec::new();
        within(
            10,
            "redirect",
            tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut raw),
        )
        .await
        .unwrap();
        assert_eq!(
            statuses(&raw),
            [400],
            "redirect listener, {head:?}: {}",
            String::from_utf8_lossy(&raw)
        );
    }
    assert_eq!(up.hits(), 0);
    let echo = echo_via(&proxy, get("App.Test:8443", "/").body(empty()).unwrap()).await;
    assert_eq!(echo.one("x-forwarded-host"), Some("App.Test:8443"));
}
