//! Signals (SPEC §2): SIGHUP reloads routes and certificates and keeps the
//! running config when the new one is invalid; SIGTERM/SIGINT drain
//! in-flight requests for up to `server.shutdown_grace`, then exit 0.

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use support::*;

fn routed_to(up: &Upstream) -> ProxyConfig {
    ProxyConfig::new().route(&up.url(), "")
}

/// Sends SIGHUP and waits for the outcome: `Ok(line)` when the proxy logged
/// a reload, `Err(line)` when it logged the rejection.
async fn reload(proxy: &mut TestProxy) -> Result<serde_json::Value, serde_json::Value> {
    let skip = proxy.logs().len();
    proxy.signal("HUP");
    let line = proxy
        .wait_log_after(skip, 10, |v| {
            let msg = v["message"].as_str().unwrap_or("");
            msg.starts_with("configuration reloaded") || msg.starts_with("reload rejected")
        })
        .await
        .expect("no reload outcome logged within 10 s of SIGHUP");
    if line["message"]
        .as_str()
        .unwrap()
        .starts_with("configuration reloaded")
    {
        Ok(line)
    } else {
        Err(line)
    }
}

/// Waits (up to 10 s) until the upstream has seen `n` requests.
async fn wait_hits(up: &Upstream, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.hits() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} requests reached the upstream",
            up.hits()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn upstream_name(proxy: &TestProxy) -> String {
    let r = proxy.get("/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.echo().upstream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_sighup_reloads_routes() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let mut proxy = TestProxy::start(&routed_to(&a)).await;
    assert_eq!(upstream_name(&proxy).await, "a");
    let mut kept = proxy.h1().await;
    assert_eq!(
        send1(&mut kept, get("localhost", "/").body(empty()).unwrap())
            .await
            .echo()
            .upstream,
        "a"
    );

    proxy.write_config(&routed_to(&b).route(&a.url(), "path_prefix = \"/a\""));
    let line = reload(&mut proxy)
        .await
        .expect("a valid config must be accepted");
    assert_eq!(line["routes"], 2, "the log counts the new routes: {line}");
    assert_eq!(upstream_name(&proxy).await, "b");
    // A connection opened before the reload keeps working, on the new routes.
    let r = send1(&mut kept, get("localhost", "/").body(empty()).unwrap()).await;
    assert_eq!(r.echo().upstream, "b");
}

/// A key read only at start is kept at its running value on SIGHUP, and the
/// reload says so, naming each such key that changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_sighup_warns_about_keys_it_cannot_apply() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let mut proxy = TestProxy::start(&routed_to(&a)).await;
    let skip = proxy.logs().len();
    proxy.write_config(
        &routed_to(&b)
            .server("max_connections = 77")
            .raw("[session]\nmax_sessions = 10"),
    );
    reload(&mut proxy)
        .await
        .expect("a valid config must be accepted");
    let warned: Vec<String> = proxy.logs()[skip..]
        .iter()
        .filter(|v| v["level"] == "WARN")
        .filter_map(|v| v["key"].as_str().map(str::to_string))
        .collect();
    // `max_sessions` is applied at run time (tests/admin.rs checks it).
    assert_eq!(
        warned,
        ["server.max_connections"],
        "{:?}",
        &proxy.logs()[skip..]
    );
    // What a reload can apply, it applied.
    assert_eq!(upstream_name(&proxy).await, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_sighup_reloads_certificates() {
    let up = Upstream::start("app").await;
    let mut proxy = TestProxy::start(&routed_to(&up)).await;
    let old_tls = proxy.tls(&[b"http/1.1"]).await;
    let old = peer_cert(&old_tls);

    let (cert, key) = self_signed(&["localhost"]);
    let fresh = proxy.path("fresh.pem");
    std::fs::write(&fresh, &cert).unwrap();
    std::fs::write(proxy.path("certs/key.pem"), key).unwrap();
    std::fs::write(proxy.path("certs/cert.pem"), &cert).unwrap();
    reload(&mut proxy)
        .await
        .expect("new certificates must be accepted");

    let new_trust = client_config(&[fresh.as_path()], &[b"http/1.1"]);
    let tls = within(
        10,
        "TLS after reload",
        tls_connect(proxy.https_addr, "localhost", new_trust),
    )
    .await
    .unwrap();
    let want = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    assert_eq!(peer_cert(&tls), want.as_ref());
    assert_ne!(peer_cert(&tls), old);
    let r = send1(
        &mut h1_over(tls).await,
        get("localhost", "/").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // The connection made before the reload is untouched.
    let r = send1(
        &mut h1_over(old_tls).await,
        get("localhost", "/").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_invalid_config_on_reload_is_rejected_and_the_old_one_kept() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let mut proxy = TestProxy::start(&routed_to(&a)).await;
    let cert_before = peer_cert(&proxy.tls(&[b"http/1.1"]).await);

    // A bad duration, next to a route change that must not apply.
    proxy.write_config(&routed_to(&b).server("request_header_timeout = \"soon\""));
    let err = reload(&mut proxy)
        .await
        .expect_err("an invalid config must be rejected");
    assert_eq!(err["level"], "ERROR");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("request_header_timeout"),
        "{err}"
    );
    assert_eq!(upstream_name(&proxy).await, "a");

    // A valid file naming a certificate that does not load.
    std::fs::write(proxy.path("broken.pem"), "not a certificate").unwrap();
    let broken = routed_to(&b).raw("[tls]\ncert = \"broken.pem\"\nkey = \"certs/key.pem\"");
    proxy.write_config(&broken);
    reload(&mut proxy)
        .await
        .expect_err("an unloadable certificate must be rejected");
    assert_eq!(upstream_name(&proxy).await, "a");
    assert_eq!(peer_cert(&proxy.tls(&[b"http/1.1"]).await), cert_before);

    // The proxy still reloads once the file is fixed.
    proxy.write_config(&routed_to(&b));
    reload(&mut proxy)
        .await
        .expect("a fixed config must be accepted");
    assert_eq!(upstream_name(&proxy).await, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_sigterm_drains_in_flight_requests_then_exits_0() {
    let up = Upstream::start("app").await;
    let mut proxy = TestProxy::start(&routed_to(&up).server("shutdown_grace = \"20s\"")).await;
    let mut idle = proxy.tls(&[b"http/1.1"]).await;
    let mut h1 = proxy.h1().await;
    let slow = tokio::spawn(async move {
        send1(
            &mut h1,
            get("localhost", "/slow?ms=1500").body(empty()).unwrap(),
        )
        .await
    });
    let mut h2 = proxy.h2().await;
    let uri = format!("{}/slow?ms=1500", proxy.origin());
    let slow2 = tokio::spawn(async move {
        send2(&mut h2, http::Request::get(uri).body(empty()).unwrap()).await
    });
    wait_hits(&up, 2).await;

    proxy.signal("TERM");
    proxy
        .wait_log(10, |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("shutting down"))
        })
        .await
        .expect("no shutdown logged");
    // New connections are refused while the old request drains.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(5),
            tls_connect(
                proxy.https_addr,
                "localhost",
                proxy.client_config(&[b"http/1.1"]),
            ),
        )
        .await;
        if !matches!(attempt, Ok(Ok(_))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new connections still accepted after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An idle keep-alive connection is closed rather than waited for.
    let (_, closed) = read_to_close(&mut idle, 5).await;
    assert!(closed, "an idle connection must not hold up shutdown");

    let r = within(10, "the in-flight request", slow).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    // Told the connection is going away, a keep-alive client does not
    // send its next request on it.
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    let r2 = within(10, "the in-flight h2 request", slow2).await.unwrap();
    assert_eq!(r2.status, StatusCode::OK);
    assert_eq!(r.echo().uri, "/slow?ms=1500");
    let status = proxy
        .wait_exit(10)
        .await
        .expect("cloakroom did not exit after draining");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_sigint_drain_is_bounded_by_shutdown_grace() {
    let up = Upstream::start("app").await;
    let mut proxy = TestProxy::start(&routed_to(&up).server("shutdown_grace = \"1s\"")).await;
    let mut h1 = proxy.h1().await;
    let slow = tokio::spawn(async move {
        within(
            30,
            "request",
            h1.send_request(get("localhost", "/slow?ms=20000").body(empty()).unwrap()),
        )
        .await
    });
    wait_hits(&up, 1).await;
    let started = Instant::now();
    proxy.signal("INT");
    let status = proxy
        .wait_exit(10)
        .await
        .expect("cloakroom did not exit when the grace ended");
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "exit took {:?}",
        started.elapsed()
    );
    assert!(
        slow.await.unwrap().is_err(),
        "the request outliving the grace is cut"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_open_websockets_do_not_hold_up_shutdown() {
    let up = Upstream::start("app").await;
    let mut proxy = TestProxy::start(&routed_to(&up).server("shutdown_grace = \"20s\"")).await;
    let mut h1 = proxy.h1().await;
    let req = get("localhost", "/ws")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .body(empty())
        .unwrap();
    within(10, "ready", h1.ready()).await.unwrap();
    let resp = within(10, "101", h1.send_request(req)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let upgraded = within(10, "upgrade", hyper::upgrade::on(resp))
        .await
        .unwrap();
    let mut io = hyper_util::rt::TokioIo::new(upgraded);

    let started = Instant::now();
    proxy.signal("TERM");
    let status = proxy
        .wait_exit(15)
        .await
        .expect("an open tunnel kept the proxy running");
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "exit took {:?}",
        started.elapsed()
    );
    let mut buf = [0u8; 16];
    let n = within(
        5,
        "tunnel closed",
        tokio::io::AsyncReadExt::read(&mut io, &mut buf),
    )
    .await;
    assert!(matches!(n, Ok(0) | Err(_)), "the tunnel is closed at exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_a_hundred_reloads_under_keep_alive_load_fail_no_request() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let up = Upstream::start("app").await;
    let config = routed_to(&up)
        .admin()
        .env("CLOAKROOM_ADMIN_TOKEN", support::replicas::TOKEN);
    let proxy = TestProxy::start(&config).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    // Two HTTP/1.1 and two HTTP/2 clients, each on one keep-alive connection.
    for n in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let h1 = (n < 2).then(|| proxy.h1());
        let mut h1 = match h1 {
            Some(f) => Some(f.await),
            None => None,
        };
        let mut h2 = match h1 {
            None => Some(proxy.h2().await),
            Some(_) => None,
        };
        let origin = proxy.origin();
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get(format!("{origin}/"))
                    .header(http::header::HOST, "localhost")
                    .body(empty())
                    .unwrap();
                let status = match (&mut h1, &mut h2) {
                    (Some(c), _) => c.send_request(req).await.map(|r| r.status()),
                    (_, Some(c)) => c.send_request(req).await.map(|r| r.status()),
                    _ => unreachable!(),
                };
                match status {
                    Ok(StatusCode::OK) => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // `POST /reload` answers when the reload is done (SIGHUPs sent this
    // fast would merge).
    for n in 0..100 {
        let (status, body) = support::replicas::admin(&proxy, "POST", "/reload").await;
        assert_eq!(status, 200, "reload {n}: {body}");
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        within(10, "a client", c).await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed across 100 reloads",
        ok + failed
    );
    assert!(ok > 100, "only {ok} requests were sent");
    eprintln!("100 reloads: {ok} requests, 0 failed");
}

/// A stream the proxy's GOAWAY (graceful, `NO_ERROR`) left unopened or
/// unprocessed.
fn refused_by_goaway(e: &hyper::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<h2::Error>())
        .is_some_and(|h2| {
            h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR)
        })
}

/// One keep-alive client's count across a SIGTERM.
#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    ok_after_term: usize,
    /// Requests hyper's client never sent because the connection had
    /// closed: nothing was lost, a client sends them elsewhere.
    unsent: usize,
    /// HTTP/2 requests whose stream `h2` would not open, or the proxy did
    /// not process, once the proxy's graceful GOAWAY had arrived (RFC 9113
    /// §6.8: safe to send elsewhere). hyper does not hand these requests
    /// back, so they are told by the error; the count of upstream hits
    /// checks that none was forwarded.
    refused: usize,
    failed: Vec<String>,
}

impl Tally {
    fn count<B>(
        &mut self,
        result: Result<http::Response<B>, hyper::client::conn::TrySendError<http::Request<Body>>>,
        after_term: bool,
    ) -> Option<http::Response<B>> {
        match result {
            Ok(r) if r.status() == StatusCode::OK => {
                self.ok += 1;
                self.ok_after_term += usize::from(after_term);
                return Some(r);
            }
            Ok(r) => self.failed.push(format!("status {}", r.status())),
            Err(e) if e.message().is_some() => self.unsent += 1,
            Err(e) if refused_by_goaway(e.error()) => self.refused += 1,
            Err(e) => self.failed.push(format!("{:?}", e.error())),
        }
        None
    }

    fn add(&mut self, t: Tally) {
        self.ok += t.ok;
        self.ok_after_term += t.ok_after_term;
        self.unsent += t.unsent;
        self.refused += t.refused;
        self.failed.extend(t.failed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_sigterm_under_keep_alive_load_fails_no_request() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let up = Upstream::start("app").await;
    let mut proxy = TestProxy::start(&routed_to(&up).server("shutdown_grace = \"20s\"")).await;
    let termed = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    // Eight HTTP/1.1 clients, each on one keep-alive connection: four send
    // back to back, the others pause between requests (up to 600 ms), so
    // the SIGTERM finds connections idle, between requests and mid-request.
    for n in 0..8u64 {
        let mut h1 = proxy.h1().await;
        let (origin, termed) = (proxy.origin(), termed.clone());
        clients.push(tokio::spawn(async move {
            let mut t = Tally::default();
            for i in 0..100_000u64 {
                // The proxy closed the connection between requests.
                if h1.ready().await.is_err() {
                    break;
                }
                let after_term = termed.load(Ordering::Relaxed);
                let path = match n < 4 {
                    true => "/".to_owned(),
                    false => format!("/slow?ms={}", i % 7),
                };
                let req = http::Request::get(format!("{origin}{path}"))
                    .header(http::header::HOST, "localhost")
                    .body(empty())
                    .unwrap();
                let sent = within(30, "h1 request", h1.try_send_request(req)).await;
                if let Some(r) = t.count(sent, after_term) {
                    let close = r.headers().get("connection").is_some_and(|v| v == "close");
                    let _ = http_body_util::BodyExt::collect(r.into_body()).await;
                    if close {
                        break;
                    }
                }
                if n >= 4 {
                    tokio::time::sleep(Duration::from_millis((n * 97 + i * 131) % 600)).await;
                }
            }
            t
        }));
    }
    // Two HTTP/2 connections with four streams each in flight.
    for _ in 0..2 {
        let h2 = proxy.h2().await;
        for _ in 0..4 {
            let (mut h2, origin, termed) = (h2.clone(), proxy.origin(), termed.clone());
            clients.push(tokio::spawn(async move {
                let mut t = Tally::default();
                for i in 0..100_000u64 {
                    // GOAWAY received: the client opens no new stream.
                    if h2.ready().await.is_err() {
                        break;
                    }
                    let after_term = termed.load(Ordering::Relaxed);
                    let req = http::Request::get(format!("{origin}/slow?ms={}", i % 5))
                        .body(empty())
                        .unwrap();
                    let sent = within(30, "h2 request", h2.try_send_request(req)).await;
                    if let Some(r) = t.count(sent, after_term) {
                        let _ = http_body_util::BodyExt::collect(r.into_body()).await;
                    }
                }
                t
            }));
        }
    }
    wait_hits(&up, 2000).await;
    termed.store(true, Ordering::Relaxed);
    proxy.signal("TERM");
    let mut total = Tally::default();
    for c in clients {
        total.add(within(30, "a client to finish", c).await.unwrap());
    }
    let status = proxy
        .wait_exit(30)
        .await
        .expect("cloakroom did not exit after draining");
    assert_eq!(status.code(), Some(0));
    assert!(
        total.failed.is_empty(),
        "{} of {} requests failed across SIGTERM: {:?}",
        total.failed.len(),
        total.ok + total.failed.len(),
        total.failed
    );
    // Every request the app saw was answered to its client: none that a
    // client counted as not sent had been forwarded.
    assert_eq!(
        up.hits(),
        total.ok,
        "the upstream saw {} requests, clients got {} answers",
        up.hits(),
        total.ok
    );
    assert!(
        total.ok_after_term > 0,
        "no request was in flight at SIGTERM"
    );
    eprintln!(
        "SIGTERM under load: {} requests answered ({} sent as it came), {} not sent after the close, \
         {} refused by GOAWAY, 0 failed",
        total.ok, total.ok_after_term, total.unsent, total.refused
    );
}
