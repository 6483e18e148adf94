//! A real HTTP/1.1 upstream on `127.0.0.1:0`, served by hyper in-process.
//!
//! Handlers, by path:
//! - `/slow?ms=N` waits N ms before sending headers, then echoes;
//! - `/count` reads the whole body and answers its byte count;
//! - `/download?bytes=N` streams N bytes, generated chunk by chunk;
//! - `/ws` does the RFC 6455 handshake and echoes raw bytes afterwards;
//! - `/hop` answers with hop-by-hop headers the proxy must remove;
//! - anything else echoes the request as JSON (see [`Echo`]).
//!
//! Every request is counted and its path recorded, so tests can prove that a
//! request never reached the upstream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::body::{full, Body, Repeat};

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[derive(Default)]
struct Seen {
    hits: AtomicUsize,
    paths: Mutex<Vec<String>>,
}

/// The in-process upstream; stops accepting when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Upstream {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start(name: &str) -> Upstream {
        let seen = Arc::new(Seen::default());
        let (tag, s) = (name.to_string(), seen.clone());
        let (addr, task) = serve_loopback(move |req| handle(tag.clone(), s.clone(), req)).await;
        Upstream {
            addr,
            name: name.to_string(),
            seen,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`, for a route's `upstream`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests whose head the upstream has parsed.
    pub fn hits(&self) -> usize {
        self.seen.hits.load(Ordering::SeqCst)
    }

    /// The path and query of every request seen, in order.
    pub fn paths(&self) -> Vec<String> {
        self.seen.paths.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the echo handler answers, parsed back by tests.
#[derive(Debug, serde::Deserialize)]
pub struct Echo {
    pub upstream: String,
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
}

impl Echo {
    /// Every value of a header (lower-case name), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The single value of a header; panics when it appears more than once.
    pub fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(
            all.len() <= 1,
            "{name} appears {} times: {all:?}",
            all.len()
        );
        all.first().copied()
    }
}

fn query_num(req: &Request<Incoming>, key: &str) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Serves HTTP/1.1 (upgrades included) on `127.0.0.1:0`, every request
/// answered by `handle`; the task stops accepting when aborted.
pub async fn serve_loopback<F, Fut>(handle: F) -> (SocketAddr, JoinHandle<()>)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let handle = handle.clone();
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service_fn(handle))
                    .with_upgrades();
                let _ = conn.await;
            });
        }
    });
    (addr, task)
}

async fn handle(
    name: String,
    seen: Arc<Seen>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    seen.hits.fetch_add(1, Ordering::SeqCst);
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |pq| pq.to_string());
    seen.paths.lock().unwrap().push(pq.clone());
    let resp = match req.uri().path() {
        "/count" => {
            let mut body = req.into_body();
            let mut n = 0u64;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => break,
                }
            }
            Response::new(full(n.to_string()))
        }
        "/download" => Response::new(Repeat::body(query_num(&req, "bytes"))),
        "/drip" => Response::new(super::body::Drip::body(Duration::from_millis(query_num(
            &req, "ms",
        )))),
        "/ws" => websocket(req),
        "/hop" => Response::builder()
            .header(header::CONNECTION, "X-Up-Secret")
            .header("x-up-secret", "named by Connection")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header("x-up-kept", "yes")
            .body(full("hop"))
            .unwrap(),
        path => {
            if path == "/slow" {
                tokio::time::sleep(Duration::from_millis(query_num(&req, "ms"))).await;
            }
            echo(&name, &pq, req)
        }
    };
    Ok(resp)
}

fn echo(name: &str, pq: &str, req: Request<Incoming>) -> Response<Body> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let json = serde_json::json!({
        "upstream": name,
        "method": req.method().as_str(),
        "uri": pq,
        "headers": headers,
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(json.to_string()))
        .unwrap()
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2).
pub fn ws_accept(key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ctx.finish())
}

fn websocket(mut req: Request<Incoming>) -> Response<Body> {
    let Some(key) = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|k| k.to_str().ok())
    else {
        let mut r = Response::new(full("not a websocket request"));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let accept = ws_accept(key);
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
        let _ = tokio::io::copy(&mut rd, &mut wr).await;
        let _ = wr.shutdown().await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header("sec-websocket-accept", accept)
        .body(full(Bytes::new()))
        .unwrap()
}

/// A port with nothing listening: connecting to it is refused.
pub async fn refusing_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// Accepts connections and drops them at once (the upstream "resets").
pub async fn resetting() -> (SocketAddr, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            drop(tcp);
        }
    });
    (addr, task)
}

/// For raw upstreams: reads one request head (the tests send no bodies)
/// into `buf`, takes it out and returns its path; `None` when the proxy
/// closed the connection or the head passed 64 KiB.
pub async fn read_request_path(
    tcp: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    Some(head.split(' ').nth(1).unwrap_or("/").to_owned())
}
