//! Session fixtures: a scriptable upstream ([`App`]) and a cookie-keeping
//! client ([`Browser`]) for the session tests.
//!
//! [`App`] answers every request with the JSON echo of what it received
//! (the same shape as [`super::Echo`]), plus one response header per
//! `h=Name:Value` query parameter (percent-encoded), so a test scripts the
//! upstream's `Set-Cookie`, login and logout headers in the URL it asks
//! for; `s=NNN` sets the status (200 otherwise). `/ws` is a websocket that
//! echoes raw bytes.
//!
//! [`Browser`] keeps the cookies the proxy sets (honouring `Max-Age=0`),
//! sends `Host: localhost:PORT` and, on unsafe methods, a same-origin
//! `Origin`, like a browser would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::body::{empty, full, Body};
use super::client::{h1_over, send1, tls_connect, within, Resp};
use super::upstream::{serve_loopback, ws_accept};
use super::TestProxy;

/// The session cookie's default name.
pub const COOKIE: &str = "__Host-cloakroom";

/// The scriptable upstream on `127.0.0.1:0`; stops accepting when dropped.
pub struct App {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl App {
    pub async fn start(name: &str) -> App {
        let hits = Arc::new(AtomicUsize::new(0));
        let (name, counter) = (name.to_string(), hits.clone());
        let (addr, task) = serve_loopback(move |req| {
            counter.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<_, Infallible>(answer(&name, req)))
        })
        .await;
        App { addr, hits, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests that reached this upstream.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(name: &str, mut req: Request<Incoming>) -> Response<Body> {
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |pq| pq.to_string());
    let mut builder = Response::builder();
    let query = req.uri().query().unwrap_or("").to_string();
    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        let v = pct_decode(v);
        if let (Some((hn, hv)), "h") = (v.split_once(':'), k) {
            builder = builder.header(hn.trim(), hv.trim_start());
        }
        if let ("s", Ok(status)) = (k, v.parse::<u16>()) {
            builder = builder.status(status);
        }
    }
    if req.uri().path() == "/ws" {
        if let Some(key) = req.headers().get("sec-websocket-key") {
            let accept = ws_accept(key.to_str().unwrap());
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(up) = on_upgrade.await else { return };
                let (mut rd, mut wr) = tokio::io::split(TokioIo::new(up));
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
                let _ = wr.shutdown().await;
            });
            return builder
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::CONNECTION, "Upgrade")
                .header(header::UPGRADE, "websocket")
                .header("sec-websocket-accept", accept)
                .body(empty())
                .unwrap();
        }
    }
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (n.as_str().to_string(), v)
        })
        .collect();
    let json = serde_json::json!({
        "upstream": name,
        "method": req.method().as_str(),
        "uri": pq,
        "headers": headers,
    });
    builder
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(json.to_string()))
        .unwrap()
}

/// `path?h=…&h=…`: the upstream answers with these response headers.
pub fn scripted(path: &str, headers: &[&str]) -> String {
    let mut out = path.to_string();
    for (i, h) in headers.iter().enumerate() {
        out.push(if i == 0 && !path.contains('?') {
            '?'
        } else {
            '&'
        });
        out.push_str("h=");
        out.push_str(&pct_encode(h));
    }
    out
}

/// Percent-encodes everything but unreserved characters.
pub fn pct_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex(b.get(i + 1)), hex(b.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A client that keeps the cookies the proxy gives it.
pub struct Browser {
    pub addr: SocketAddr,
    pub config: Arc<rustls::ClientConfig>,
    /// `localhost:PORT`, sent as `Host`.
    pub host: String,
    /// Cookies held, in the order first set.
    pub cookies: Vec<(String, String)>,
}

impl Browser {
    pub fn new(proxy: &TestProxy) -> Browser {
        Browser {
            addr: proxy.https_addr,
            config: proxy.client_config(&[b"http/1.1"]),
            host: format!("localhost:{}", proxy.https_addr.port()),
            cookies: Vec::new(),
        }
    }

    /// Keeps the cookies and talks to `proxy` from now on (a restarted
    /// proxy listens on a new port).
    pub fn follow(&mut self, proxy: &TestProxy) {
        let cookies = std::mem::take(&mut self.cookies);
        *self = Browser {
            cookies,
            ..Browser::new(proxy)
        };
    }

    pub fn origin(&self) -> String {
        format!("https://{}", self.host)
    }

    /// The session cookie's value, when held.
    pub fn session(&self) -> Option<String> {
        self.cookie(COOKIE)
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// Holds this session cookie value instead of whatever it had.
    pub fn set_session(&mut self, value: &str) {
        self.cookies.retain(|(n, _)| n != COOKIE);
        self.cookies.push((COOKIE.to_string(), value.to_string()));
    }

    /// The `Cookie` header this browser sends, if any.
    pub fn cookie_header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// A request builder with `Host` and `Cookie` (and a same-origin
    /// `Origin` for unsafe methods) already set.
    pub fn request(&self, method: Method, path: &str) -> http::request::Builder {
        let origin = (!matches!(method, Method::GET | Method::HEAD)).then(|| self.origin());
        self.request_from(method, path, origin.as_deref())
    }

    /// Like [`request`](Self::request), with this `Origin` (or none).
    pub fn request_from(
        &self,
        method: Method,
        path: &str,
        origin: Option<&str>,
    ) -> http::request::Builder {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host);
        if let Some(c) = self.cookie_header() {
            b = b.header(header::COOKIE, c);
        }
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        b
    }

    /// Sends on a fresh HTTP/1.1 connection and keeps the cookies set.
    pub async fn send(&mut self, req: Request<Body>) -> Resp {
        let tls = within(
            10,
            "TLS connect",
            tls_connect(self.addr, "localhost", self.config.clone()),
        )
        .await
        .unwrap();
        let resp = send1(&mut h1_over(tls).await, req).await;
        self.keep(&resp);
        resp
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        let req = self.request(Method::GET, path).body(empty()).unwrap();
        self.send(req).await
    }

    /// A form POST.
    pub async fn post(&mut self, path: &str, form: &str) -> Resp {
        let req = self
            .request(Method::POST, path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(full(form.to_string()))
            .unwrap();
        self.send(req).await
    }

    fn keep(&mut self, resp: &Resp) {
        for sc in set_cookies(resp) {
            let c = parse_set_cookie(&sc);
            self.cookies.retain(|(n, _)| *n != c.name);
            if !c.clears() {
                self.cookies.push((c.name, c.value));
            }
        }
    }

    /// Opens a websocket at `path` with this browser's cookies. `Err` holds
    /// the refusal when the answer is not `101`.
    pub async fn websocket(&self, path: &str) -> Result<TokioIo<Upgraded>, Resp> {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let req = self
            .request(Method::GET, path)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "websocket")
            .header("sec-websocket-key", key)
            .header("sec-websocket-version", "13")
            .body(empty())
            .unwrap();
        let tls = tls_connect(self.addr, "localhost", self.config.clone())
            .await
            .unwrap();
        let mut h1 = h1_over(tls).await;
        within(10, "ready", h1.ready()).await.unwrap();
        let resp = within(10, "upgrade response", h1.send_request(req))
            .await
            .unwrap();
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(Resp::read(resp).await);
        }
        let up = within(10, "upgrade", hyper::upgrade::on(resp))
            .await
            .unwrap();
        Ok(TokioIo::new(up))
    }
}

/// A masked client text frame (RFC 6455 §5.2) with a short payload.
pub fn ws_frame(text: &str) -> Vec<u8> {
    assert!(text.len() < 126);
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81, 0x80 | text.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Sends a frame and reads back `expect` bytes (the upstream echoes raw).
pub async fn ws_roundtrip<S: AsyncReadExt + AsyncWriteExt + Unpin>(io: &mut S, frame: &[u8]) {
    io.write_all(frame).await.unwrap();
    let mut back = vec![0u8; frame.len()];
    within(10, "websocket echo", io.read_exact(&mut back))
        .await
        .unwrap();
    assert_eq!(back, frame);
}

/// Waits up to `limit` for the peer to close `io` (EOF or error) and
/// returns how long it took from `since`; `None` when still open.
pub async fn closed_within<S: AsyncReadExt + Unpin>(
    io: &mut S,
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::from_std(since + limit);
    loop {
        match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Every `Set-Cookie` of a response.
pub fn set_cookies(resp: &Resp) -> Vec<String> {
    resp.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// A `Set-Cookie` taken apart: attribute names lower-cased.
#[derive(Debug, Clone)]
pub struct ParsedCookie {
    pub name: String,
    pub value: String,
    pub attrs: Vec<(String, Option<String>)>,
}

impl ParsedCookie {
    pub fn attr(&self, name: &str) -> Option<Option<&str>> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_deref())
    }

    pub fn has(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }

    /// `Max-Age=0` (or negative): the browser deletes it.
    pub fn clears(&self) -> bool {
        self.attr("max-age")
            .flatten()
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|n| n <= 0)
    }
}

pub fn parse_set_cookie(raw: &str) -> ParsedCookie {
    let mut parts = raw.split(';');
    let (name, value) = parts.next().unwrap().split_once('=').unwrap();
    let attrs = parts
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
            None => (a.to_ascii_lowercase(), None),
        })
        .collect();
    ParsedCookie {
        name: name.trim().to_string(),
        value: value.trim().to_string(),
        attrs,
    }
}

/// The session cookie a response sets (or clears), if any.
pub fn session_set_cookie(resp: &Resp) -> Option<ParsedCookie> {
    let all: Vec<ParsedCookie> = set_cookies(resp)
        .iter()
        .map(|s| parse_set_cookie(s))
        .filter(|c| c.name == COOKIE)
        .collect();
    assert!(all.len() <= 1, "several session Set-Cookies: {all:?}");
    all.into_iter().next()
}

/// True when the response clears the session cookie.
pub fn clears_session(resp: &Resp) -> bool {
    session_set_cookie(resp).is_some_and(|c| c.clears() && c.value.is_empty())
}

/// The pairs of the single `Cookie` header the upstream got (none: empty).
pub fn upstream_cookies(resp: &Resp) -> Vec<String> {
    let echo = resp.echo();
    echo.one("cookie")
        .map(|c| c.split("; ").map(str::to_string).collect())
        .unwrap_or_default()
}

/// The audit lines with this `event` so far.
pub fn audits(proxy: &TestProxy, event: &str) -> Vec<Value> {
    proxy
        .logs()
        .into_iter()
        .filter(|v| v["target"] == "audit" && v["event"] == event)
        .collect()
}

/// Decodes the id part of a session cookie value.
pub fn cookie_id(value: &str) -> Vec<u8> {
    B64.decode(value.split_once('.').unwrap().0).unwrap()
}

/// The loggable handle of a session cookie value: the first 16 hex digits
/// of SHA-256(id) (SPEC §4.1).
pub fn handle_of(value: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, &cookie_id(value));
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// `base64url(id).base64url(HMAC-SHA256(key, id))`: a cookie value signed
/// with `key`, made outside the proxy.
pub fn sign(key: &[u8], id: &[u8]) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&k, id);
    format!("{}.{}", B64.encode(id), B64.encode(tag.as_ref()))
}

/// A header name in a spelling `http` accepts (any case, `_`, `.`).
pub fn raw_name(name: &str) -> HeaderName {
    HeaderName::from_bytes(name.as_bytes()).unwrap()
}

pub fn value(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap()
}

/// Sleeps until `start + at`.
pub async fn at(start: Instant, offset: Duration) {
    if let Some(left) = offset.checked_sub(start.elapsed()) {
        tokio::time::sleep(left).await;
    }
}

/// Bytes of a response body as a JSON value.
pub fn json(resp: &Resp) -> Value {
    serde_json::from_slice(&resp.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", resp.text()))
}

/// A session-enabled proxy config with the usual base: `[session]` keys
/// from `session`, `[auth]` keys from `auth`, one route to `app`.
pub fn config(app: &App, session: &str, auth: &str, route: &str) -> super::ProxyConfig {
    super::ProxyConfig::new()
        .raw(&format!("[session]\n{session}"))
        .raw(&format!("[auth]\n{auth}"))
        .route(&app.url(), route)
}
