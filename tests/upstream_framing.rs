//! Upstream response framing on the lean HTTP/1.1 path (src/upstream/h1.rs,
//! taken by body-less idempotent requests), against a raw TCP upstream that
//! answers each path with scripted bytes: chunked, close-delimited and
//! informational responses arrive whole; bad framing is a 502 and its
//! connection is never reused; bytes beyond a response keep the connection
//! out of the pool.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{Method, Request, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use support::*;

/// The scripted answer to a path, and whether the upstream closes after it.
fn script(path: &str) -> (&'static [u8], bool) {
    match path {
        "/chunked" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n",
            false,
        ),
        "/close" => (b"HTTP/1.1 200 OK\r\n\r\nread until the close", true),
        "/early" => (
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n\
              HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nafter",
            false,
        ),
        "/head" => (b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", false),
        "/extra" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokSMUGGLED",
            false,
        ),
        "/conflict" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
            false,
        ),
        "/te-and-cl" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
            false,
        ),
        "/gzip" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            false,
        ),
        "/switch" => (
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
            false,
        ),
        "/folded" => (
            b"HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\ncontent-length: 0\r\n\r\n",
            false,
        ),
        "/bad-chunk" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            false,
        ),
        _ => (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nplain", false),
    }
}

struct Scripted {
    addr: std::net::SocketAddr,
    /// Connections that carried a request: the proxy's start-up probe
    /// (src/upstream/probe.rs) connects and sends nothing.
    accepted: Arc<AtomicUsize>,
    _task: JoinHandle<()>,
}

impl Scripted {
    async fn start() -> Scripted {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                tokio::spawn(serve(tcp, count.clone()));
            }
        });
        Scripted {
            addr,
            accepted,
            _task: task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    async fn proxy(&self) -> TestProxy {
        TestProxy::start(&ProxyConfig::new().route(&format!("http://{}", self.addr), "")).await
    }
}

async fn serve(mut tcp: TcpStream, carried: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut first = true;
    while let Some(path) = read_request_path(&mut tcp, &mut buf).await {
        if std::mem::take(&mut first) {
            carried.fetch_add(1, Ordering::SeqCst);
        }
        let (bytes, close) = script(&path);
        if tcp.write_all(bytes).await.is_err() || close {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_close_delimited_and_informational_responses_arrive_whole() {
    let up = Scripted::start().await;
    let proxy = up.proxy().await;
    let mut h1 = proxy.h1().await;
    for _ in 0..3 {
        let r = send1(&mut h1, get("localhost", "/chunked").body(empty()).unwrap()).await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (StatusCode::OK, "hello world")
        );
    }
    let r = send1(&mut h1, get("localhost", "/early").body(empty()).unwrap()).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "after"));
    // Chunked and informational answers leave the connection reusable.
    assert_eq!(up.accepted(), 1);

    let r = send1(&mut h1, get("localhost", "/close").body(empty()).unwrap()).await;
    assert_eq!(r.text(), "read until the close");
    let head = Request::builder()
        .method(Method::HEAD)
        .uri("/head")
        .header("host", "localhost")
        .body(empty())
        .unwrap();
    let r = send1(&mut h1, head).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), Some("9"));
    assert!(r.text().is_empty());
    // The close-delimited answer took its connection with it.
    assert_eq!(up.accepted(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_framing_is_a_502_and_its_connection_is_dropped() {
    let up = Scripted::start().await;
    let proxy = up.proxy().await;
    let mut h1 = proxy.h1().await;
    let bad = ["/conflict", "/te-and-cl", "/gzip", "/switch", "/folded"];
    for (i, path) in bad.iter().enumerate() {
        let r = send1(&mut h1, get("localhost", path).body(empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{path}: {}", r.text());
        // Each answer spoilt its connection: the next request opens another.
        let r = send1(&mut h1, get("localhost", "/plain").body(empty()).unwrap()).await;
        assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "plain"));
        assert_eq!(up.accepted(), i + 2, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_breaks_its_framing_is_cut_and_not_reused() {
    let up = Scripted::start().await;
    let proxy = up.proxy().await;
    let mut h1 = proxy.h1().await;
    // The head was fine, so the status went out; the body cannot finish.
    let sent = h1
        .send_request(get("localhost", "/bad-chunk").body(empty()).unwrap())
        .await;
    if let Ok(resp) = sent {
        assert_eq!(resp.status(), StatusCode::OK);
        let body = http_body_util::BodyExt::collect(resp.into_body()).await;
        assert!(body.is_err(), "a broken chunked body must not end cleanly");
    }
    let mut h1 = proxy.h1().await;
    let r = send1(&mut h1, get("localhost", "/plain").body(empty()).unwrap()).await;
    assert_eq!(r.text(), "plain");
    assert_eq!(up.accepted(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_beyond_a_response_keep_its_connection_out_of_the_pool() {
    let up = Scripted::start().await;
    let proxy = up.proxy().await;
    let mut h1 = proxy.h1().await;
    let r = send1(&mut h1, get("localhost", "/extra").body(empty()).unwrap()).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "ok"));
    for _ in 0..3 {
        let r = send1(&mut h1, get("localhost", "/plain").body(empty()).unwrap()).await;
        assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "plain"));
        assert!(!r.text().contains("SMUGGLED"));
    }
    // The extra bytes were never read as a response: a second connection
    // served the rest, and kept serving.
    assert_eq!(up.accepted(), 2);
}
