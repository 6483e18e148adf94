//! Request smuggling over TLS (SPEC §9.2, §9.5a): hand-written HTTP/1.1
//! whose framing is ambiguous, or whose body the proxy answers without
//! forwarding. Each payload hides `GET /smuggled` where only a parser that
//! got the framing wrong would see a request, and ends with a `/sentinel`
//! request carrying `Connection: close`, so every case ends with the
//! connection closing. The upstream must never see `/smuggled`, nor more
//! requests than the client really sent.

mod support;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use support::*;

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";
const SENTINEL: &str = "GET /sentinel HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// Sends `payload` + the sentinel on a fresh TLS connection; returns the
/// status codes read before the proxy closed the connection.
async fn attempt(
    proxy: &TestProxy,
    up: &Upstream,
    name: &str,
    payload: &str,
    sent: usize,
) -> Vec<u16> {
    let before = up.hits();
    let mut tls = proxy.tls(&[b"http/1.1"]).await;
    let (raw, closed) = exchange(&mut tls, format!("{payload}{SENTINEL}").as_bytes(), 10).await;
    assert!(closed, "{name}: the connection stayed open");
    let paths = up.paths();
    assert!(
        !paths.iter().any(|p| p.contains("smuggled")),
        "{name}: upstream saw {paths:?}"
    );
    let seen = up.hits() - before;
    // +1: the sentinel.
    assert!(
        seen <= sent + 1,
        "{name}: client sent {} requests, upstream saw {seen}",
        sent + 1
    );
    statuses(&raw)
}

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n0\r\n\r\n", data.len())
}

async fn setup(extra_routes: &str) -> (Upstream, TestProxy) {
    let up = Upstream::start("app").await;
    let config = ProxyConfig::new()
        .server("max_request_header_bytes = 1024")
        .server("upstream_response_timeout = \"1s\"")
        .raw(extra_routes)
        .route(&up.url(), "");
    let proxy = TestProxy::start(&config).await;
    (up, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_2_pipelined_requests_are_each_forwarded_once() {
    // The control: without ambiguity both requests pass, so the cases below
    // would notice a smuggled one.
    let (up, proxy) = setup("").await;
    let payload = "POST /one HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello";
    let got = attempt(&proxy, &up, "pipelined", payload, 1).await;
    assert_eq!(got, [200, 200]);
    assert_eq!(up.paths(), ["/one", "/sentinel"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_2_ambiguous_framing_is_never_split_into_two_requests() {
    let (up, proxy) = setup("").await;
    let te_body = chunk(SMUGGLED);
    let size_line = format!("{:x}\r\n", SMUGGLED.len());
    let cl_te_body = format!("0\r\n\r\n{SMUGGLED}");
    let cases: Vec<(&str, String)> = vec![
        (
            "CL.TE",
            format!(
                "POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{cl_te_body}",
                cl_te_body.len()
            ),
        ),
        (
            "TE.CL",
            format!(
                "POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n{te_body}",
                size_line.len()
            ),
        ),
        (
            "duplicate differing Content-Length",
            format!("POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{SMUGGLED}", SMUGGLED.len()),
        ),
        (
            "Content-Length list",
            format!("POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0, {}\r\n\r\n{SMUGGLED}", SMUGGLED.len()),
        ),
        (
            "obs-fold hiding Transfer-Encoding",
            format!("POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nX-Fold: a\r\n Transfer-Encoding: chunked\r\n\r\n{te_body}"),
        ),
        (
            "obs-fold of the Transfer-Encoding value",
            format!("POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: {}\r\n\r\n{te_body}", size_line.len()),
        ),
        (
            "space before colon",
            format!("POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\nContent-Length: {}\r\n\r\n{te_body}", size_line.len()),
        ),
        (
            "Transfer-Encoding not ending in chunked",
            format!("POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, identity\r\n\r\n{te_body}"),
        ),
        ("HTTP/1.0 with Transfer-Encoding", format!("POST /a HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{te_body}")),
        (
            "bare CR in a header",
            format!("POST /a HTTP/1.1\r\nHost: localhost\r\nX-A: 1\rTransfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n{te_body}", size_line.len()),
        ),
        ("bare LF line endings", format!("POST /a HTTP/1.1\nHost: localhost\nContent-Length: {}\n\n{SMUGGLED}", SMUGGLED.len())),
        ("bare LF in chunk framing", format!("POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\n\n{SMUGGLED}")),
    ];
    for (name, payload) in &cases {
        let got = attempt(&proxy, &up, name, payload, 1).await;
        assert!(!got.is_empty(), "{name}: no response at all");
        // 400 for a bad head; a body found malformed after forwarding began
        // (bare LF in chunk framing) ends the upstream request: 502.
        assert!(
            got.iter().all(|s| [200, 400, 502].contains(s)),
            "{name}: {got:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_5a_bodies_of_requests_the_proxy_answers_are_never_parsed_as_requests() {
    let dead = upstream::refusing_addr().await;
    let (up, proxy) = setup(&format!(
        "[[route]]\npath_prefix = \"/dead\"\nupstream = \"http://{dead}\""
    ))
    .await;
    let cl = |head: &str| {
        format!(
            "{head}\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
            SMUGGLED.len()
        )
    };
    let te = |head: &str| {
        format!(
            "{head}\r\nTransfer-Encoding: chunked\r\n\r\n{}",
            chunk(SMUGGLED)
        )
    };
    let big = "a".repeat(1100);
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "reserved prefix, Content-Length",
            cl("POST /.cloakroom/x HTTP/1.1\r\nHost: localhost"),
            404,
        ),
        (
            "reserved prefix, chunked",
            te("POST /.cloakroom/x HTTP/1.1\r\nHost: localhost"),
            404,
        ),
        (
            "reserved prefix, Expect: 100-continue",
            cl("POST /.cloakroom/x HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue"),
            404,
        ),
        (
            "h2c upgrade",
            cl("POST / HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: h2c"),
            400,
        ),
        (
            "CONNECT",
            cl("CONNECT localhost:1 HTTP/1.1\r\nHost: localhost:1"),
            405,
        ),
        (
            "refused upstream",
            cl("POST /dead HTTP/1.1\r\nHost: localhost"),
            502,
        ),
        (
            "refused upstream, chunked",
            te("POST /dead HTTP/1.1\r\nHost: localhost"),
            502,
        ),
        (
            "oversized headers",
            cl(&format!(
                "POST / HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}"
            )),
            431,
        ),
        (
            "bad target",
            cl("POST /a%00\x01 HTTP/1.1\r\nHost: localhost"),
            400,
        ),
    ];
    for (name, payload, want) in &cases {
        let got = attempt(&proxy, &up, name, payload, 0).await;
        assert_eq!(got.first(), Some(want), "{name}: {got:?}");
        assert!(
            !got.contains(&100),
            "{name}: 100 Continue for a body nobody reads"
        );
    }
    // 504: the upstream got the request (and its body, as a body) but sent
    // no headers in time.
    let before = up.hits();
    let payload = cl("POST /slow?ms=3000 HTTP/1.1\r\nHost: localhost");
    let got = attempt(&proxy, &up, "504", &payload, 1).await;
    assert_eq!(got.first(), Some(&504));
    assert!(up.hits() - before <= 2);
}

/// An upstream that answers its first request on each connection with a
/// second, unrequested response glued to the first.
async fn poisoning_upstream() -> (String, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut first = true;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = tcp.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let resp: &[u8] = if first {
                            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned"
                        } else {
                            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean"
                        };
                        first = false;
                        if tcp.write_all(resp).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_1_an_extra_upstream_response_never_answers_another_request() {
    let (url, _task) = poisoning_upstream().await;
    let proxy = TestProxy::start(&ProxyConfig::new().route(&url, "")).await;
    assert_eq!(proxy.get("/").await.text(), "first");
    for _ in 0..3 {
        // Fresh client connections; the proxy may reuse its pooled upstream one.
        let r = proxy.get("/").await;
        assert_ne!(
            r.text(),
            "poisoned",
            "a stray upstream response was served to another request"
        );
    }
}
