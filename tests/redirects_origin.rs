//! SPEC §9.7 (`rewrite_location`) and §9.6a (`translate_origin`), through
//! the real binary: an unchanged app that builds absolute URLs from its own
//! address, and checks `Origin` against the address it sees, works behind
//! the proxy.

mod support;

use http::{header, Method, Request};
use support::session::*;
use support::{empty, full, get, send1, send2, Resp, TestProxy};

/// The client's host as a browser sends it: `localhost:PORT`.
fn host(proxy: &TestProxy) -> String {
    format!("localhost:{}", proxy.https_addr.port())
}

/// One request on a fresh HTTP/1.1 connection, without cookies.
async fn send(proxy: &TestProxy, req: Request<support::Body>) -> Resp {
    send1(&mut proxy.h1().await, req).await
}

/// The `Location` and `Content-Location` the client gets when the app
/// answers with these two values.
async fn locations(proxy: &TestProxy, location: &str) -> (String, String) {
    let path = scripted(
        "/",
        &[
            &format!("Location: {location}"),
            &format!("Content-Location: {location}"),
        ],
    );
    let r = send(proxy, get(&host(proxy), &path).body(empty()).unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    (
        r.header("location").unwrap().to_string(),
        r.header("content-location").unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_7_absolute_urls_naming_the_upstream_point_back_at_the_clients_origin() {
    let app = App::start("app").await;
    let proxy = TestProxy::start(&config(&app, "", "", "")).await;
    let own = format!("https://{}", host(&proxy));
    let up = app.addr;
    for (sent, want) in [
        // Trac's redirect after a login: the upstream's own address.
        (
            format!("http://{up}/login?next=%2Fwiki#top"),
            format!("{own}/login?next=%2Fwiki#top"),
        ),
        (format!("HTTP://{up}"), own.clone()),
        // Trac told X-Forwarded-Proto: https builds https + the Host it
        // was sent: still the upstream's address.
        (format!("https://{up}/login"), format!("{own}/login")),
        (format!("http://{up}?q=1"), format!("{own}?q=1")),
        // Scheme-relative, naming the upstream: resolved by the browser
        // against https://, it would still go to the upstream's address.
        (format!("//{up}/x"), format!("{own}/x")),
        // The client's own host over plain http (an app that reads
        // X-Forwarded-Host but not -Proto).
        (
            format!("http://{}/next", host(&proxy)),
            format!("{own}/next"),
        ),
        (
            format!("http://{}/next", host(&proxy).to_uppercase()),
            format!("{own}/next"),
        ),
    ] {
        let (location, content_location) = locations(&proxy, &sent).await;
        assert_eq!(location, want, "Location: {sent}");
        assert_eq!(content_location, want, "Content-Location: {sent}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_7_with_preserve_host_http_urls_of_the_clients_host_are_rewritten() {
    let app = App::start("app").await;
    let proxy = TestProxy::start(&config(&app, "", "", "preserve_host = true")).await;
    // Django with preserve_host: request.build_absolute_uri() is
    // http:// + the Host it received.
    let sent = format!("http://{}/accounts/profile/?a=1", host(&proxy));
    let (location, content_location) = locations(&proxy, &sent).await;
    let want = format!("https://{}/accounts/profile/?a=1", host(&proxy));
    assert_eq!(location, want);
    assert_eq!(content_location, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_7_relative_and_foreign_locations_pass_unchanged() {
    let app = App::start("app").await;
    let proxy = TestProxy::start(&config(&app, "", "", "")).await;
    let up = app.addr;
    for sent in [
        "/login?next=/x".to_string(),
        "next#frag".to_string(),
        "?page=2".to_string(),
        "//elsewhere.test/x".to_string(),
        format!("//{}/x", host(&proxy)),
        "http://elsewhere.test/x".to_string(),
        "https://elsewhere.test/x".to_string(),
        format!("https://{}:1/x", up.ip()),
        format!("http://user@{up}/x"),
        format!("http://{}:1/x", up.ip()),
        format!("ftp://{up}/x"),
        "http://".to_string(),
        "not a url".to_string(),
    ] {
        let (location, content_location) = locations(&proxy, &sent).await;
        assert_eq!(location, sent);
        assert_eq!(content_location, sent);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_7_rewrite_location_false_leaves_locations_alone() {
    let app = App::start("app").await;
    let proxy = TestProxy::start(&config(&app, "", "", "rewrite_location = false")).await;
    for sent in [
        format!("http://{}/login", app.addr),
        format!("http://{}/login", host(&proxy)),
    ] {
        assert_eq!(locations(&proxy, &sent).await, (sent.clone(), sent));
    }
}

/// What the upstream received as `Origin` and `Referer` for a request with
/// these values (a GET without a session: no CSRF check applies).
async fn seen_upstream(
    proxy: &TestProxy,
    origin: Option<&str>,
    referer: Option<&str>,
) -> (Option<String>, Option<String>) {
    let mut req = get(&host(proxy), "/page");
    if let Some(o) = origin {
        req = req.header(header::ORIGIN, o);
    }
    if let Some(r) = referer {
        req = req.header(header::REFERER, r);
    }
    let echo = send(proxy, req.body(empty()).unwrap()).await.echo();
    let one = |name| echo.one(name).map(str::to_string);
    (one("origin"), one("referer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_6a_same_origin_origin_and_referer_are_sent_as_the_upstreams_own() {
    let app = App::start("app").await;
    let proxy = TestProxy::start(&config(&app, "", "", "")).await;
    let own = format!("https://{}", host(&proxy));
    let up = format!("http://{}", app.addr);
    let seen = seen_upstream(&proxy, Some(&own), Some(&format!("{own}/a/b?c=d"))).await;
    assert_eq!(seen, (Some(up.clone()), Some(format!("{up}/a/b?c=d"))));
    // Compared as the CSRF check compares: case-insensitively.
    let shouted = own.to_uppercase();
    let seen = seen_upstream(&proxy, Some(&shouted), Some(&shouted)).await;
    assert_eq!(seen, (Some(up.clone()), Some(up.clone())));

    // A browser's POST with a session: CSRF checks the client's own Origin
    // (and passes), then the upstream gets its own origin (Django's check).
    let mut b = Browser::new(&proxy);
    b.get(&scripted("/", &["Set-Cookie: csrftoken=t; Path=/"]))
        .await;
    assert!(b.session().is_some());
    let r = b.post("/login", "user=a").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echo().one("origin"), Some(up.as_str()));
    // CSRF saw the client's value: the upstream's own origin, sent by the
    // client, is foreign to the proxy.
    let hits = app.hits();
    let req = b
        .request_from(Method::POST, "/login", Some(&up))
        .body(full("user=a"))
        .unwrap();
    assert_eq!(b.send(req).await.status, 403);
    assert_eq!(app.hits(), hits);

    // HTTP/2: the host is the :authority.
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("{own}/form"))
        .header(header::ORIGIN, &own)
        .header(header::REFERER, format!("{own}/form?x=1"))
        .body(full("a=1"))
        .unwrap();
    let echo = send2(&mut proxy.h2().await, req).await.echo();
    assert_eq!(echo.one("origin"), Some(up.as_str()));
    assert_eq!(echo.one("referer"), Some(format!("{up}/form?x=1").as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_6a_with_preserve_host_the_upstreams_origin_is_the_clients_host_over_http() {
    let app = App::start("app").await;
    let proxy = TestProxy::start(&config(&app, "", "", "preserve_host = true")).await;
    let own = format!("https://{}", host(&proxy));
    let seen = seen_upstream(&proxy, Some(&own), Some(&format!("{own}/x?y=1"))).await;
    let up = format!("http://{}", host(&proxy));
    assert_eq!(seen, (Some(up.clone()), Some(format!("{up}/x?y=1"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_6a_foreign_origin_and_referer_are_sent_unchanged() {
    let app = App::start("app").await;
    let proxy = TestProxy::start(&config(&app, "", "", "")).await;
    let h = host(&proxy);
    for (origin, referer) in [
        (
            "https://evil.test".to_string(),
            "https://evil.test/x".to_string(),
        ),
        ("null".to_string(), "about:blank".to_string()),
        (format!("http://{h}"), format!("http://{h}/x")),
        (format!("https://{h}/"), format!("https://user@{h}/x")),
        (
            format!("https://{h}.evil.test"),
            format!("https://{h}.evil.test/x"),
        ),
        (
            "https://localhost".to_string(),
            "https://localhost/x".to_string(),
        ),
    ] {
        let seen = seen_upstream(&proxy, Some(&origin), Some(&referer)).await;
        assert_eq!(seen, (Some(origin), Some(referer)));
    }
    assert_eq!(seen_upstream(&proxy, None, None).await, (None, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_6a_translate_origin_false_sends_them_unchanged() {
    let app = App::start("app").await;
    let proxy = TestProxy::start(&config(&app, "", "", "translate_origin = false")).await;
    let own = format!("https://{}", host(&proxy));
    let referer = format!("{own}/a?b=c");
    let seen = seen_upstream(&proxy, Some(&own), Some(&referer)).await;
    assert_eq!(seen, (Some(own), Some(referer)));
}
