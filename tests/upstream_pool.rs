//! The upstream connection pool (src/upstream/) against a raw TCP
//! upstream whose connection behaviour each test chooses: connections are
//! reused, one that the upstream closed is never used again, and one whose
//! response body was not read to the end is never handed a second request.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use support::*;

/// What the raw upstream does after each response on a connection.
#[derive(Clone, Copy)]
enum After {
    /// Keep the connection open for the next request.
    KeepOpen,
    /// Close the socket at once, without saying so in the response.
    Close,
    /// Keep it open for a moment, then close it while it sits idle.
    CloseSoon,
}

/// A size the `/big` answer has: far more than socket buffers hold.
const BIG: usize = 8 << 20;

struct RawUpstream {
    addr: std::net::SocketAddr,
    /// Connections that carried a request: the proxy's start-up probe
    /// (src/upstream/probe.rs) connects and sends nothing.
    accepted: Arc<AtomicUsize>,
    _task: JoinHandle<()>,
}

impl RawUpstream {
    /// Answers `GET /big` with `BIG` bytes and anything else with its own
    /// path as the body, always `HTTP/1.1` keep-alive framing.
    async fn start(after: After) -> RawUpstream {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                tokio::spawn(serve(tcp, after, count.clone()));
            }
        });
        RawUpstream {
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

async fn serve(mut tcp: TcpStream, after: After, carried: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut first = true;
    while let Some(path) = read_request_path(&mut tcp, &mut buf).await {
        if std::mem::take(&mut first) {
            carried.fetch_add(1, Ordering::SeqCst);
        }
        let body = match path.as_str() {
            "/big" => vec![b'x'; BIG],
            p => p.as_bytes().to_vec(),
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        if tcp.write_all(response.as_bytes()).await.is_err() || tcp.write_all(&body).await.is_err()
        {
            return;
        }
        match after {
            After::KeepOpen => {}
            After::Close => return,
            After::CloseSoon => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
        }
    }
}

/// Sends `n` requests one after another on one client connection, `gap`
/// apart, each of which must come back with its own path as the body.
/// Returns how many upstream connections the proxy opened meanwhile.
async fn sequential(after: After, n: usize, gap: Duration) -> usize {
    let up = RawUpstream::start(after).await;
    let proxy = up.proxy().await;
    let mut h1 = proxy.h1().await;
    for i in 0..n {
        let path = format!("/r{i}");
        let r = send1(&mut h1, get("localhost", &path).body(empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.text());
        assert_eq!(r.text(), path);
        tokio::time::sleep(gap).await;
    }
    up.accepted()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_are_reused() {
    assert_eq!(
        sequential(After::KeepOpen, 20, Duration::ZERO).await,
        1,
        "20 sequential requests should share one upstream connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_closed_right_after_a_response_is_not_reused() {
    // The upstream closes without `Connection: close`: the proxy may still
    // hold the connection as idle when the next request comes, which must
    // then go out on a new one (at worst after one unsent attempt).
    assert_eq!(sequential(After::Close, 20, Duration::ZERO).await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_closed_while_idle_is_not_reused() {
    assert_eq!(
        sequential(After::CloseSoon, 5, Duration::from_millis(150)).await,
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_with_an_unread_body_is_not_reused() {
    let up = RawUpstream::start(After::KeepOpen).await;
    let proxy = up.proxy().await;
    {
        // Read the head of the big answer only, then hang up.
        let mut h1 = proxy.h1().await;
        h1.ready().await.unwrap();
        let resp = within(
            10,
            "big response head",
            h1.send_request(get("localhost", "/big").body(empty()).unwrap()),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let first = within(10, "first chunk", body.frame()).await;
        assert!(first.is_some());
    }
    // The next requests must get their own answers, never the rest of /big.
    for i in 0..5 {
        let path = format!("/after{i}");
        let r = send1(
            &mut proxy.h1().await,
            get("localhost", &path).body(empty()).unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.text(), path);
    }
    assert!(
        up.accepted() >= 2,
        "the half-read connection must not carry the next request"
    );
}
