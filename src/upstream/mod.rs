//! Keep-alive HTTP/1.1 connections to upstreams: one pool per upstream
//! address, with the connect and response-header timeouts of `[server]`.
//!
//! A pooled connection is a hyper `SendRequest` whose connection runs as its
//! own task. It goes back to the pool when the response body it carried has
//! ended ([`UpstreamBody`]), so a connection is never handed two exchanges
//! at once. A request that a reused connection could not even send (the
//! upstream closed it while idle) is retried once on the next connection.
//!
//! Requests without a body that are not upgrades take a leaner path
//! ([`h1`]): no connection task and no channels, which is a fifth of the
//! proxy's user-space work per request (`docs/performance.md`).
//!
//! [`probe`] tries each upstream once at start and after a reload, and
//! warns about one that does not accept connections.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::Either;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::config::Config;
use crate::net::SendLone;
use crate::wire::body::ClientBodyError;

mod body;
mod h1;
#[doc(hidden)]
pub use h1::decode_buffered;
pub mod probe;

pub use body::RequestBody;

/// A body error from either client path.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Idle connections kept per upstream; the oldest go first beyond that.
const MAX_IDLE: usize = 1024;
/// An idle connection older than this is closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// TCP keep-alive probes on upstream connections, to find dead peers.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream connection failed")]
    Connect(#[source] std::io::Error),
    #[error("upstream connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("upstream HTTP handshake failed")]
    Handshake(#[source] hyper::Error),
    #[error("no response headers from upstream within {0:?}")]
    ResponseTimeout(Duration),
    #[error("upstream closed or reset the connection")]
    Failed(#[source] hyper::Error),
    #[error("upstream exchange failed")]
    Exchange(#[source] h1::H1Error),
    /// The client's request body failed while it was being forwarded (the
    /// client sent a malformed body or went away): the client's fault.
    #[error("the client's request body failed")]
    ClientBody(#[source] hyper::Error),
}

impl UpstreamError {
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectTimeout(_) | UpstreamError::ResponseTimeout(_)
        )
    }

    /// The exchange failed on the client's side, not the upstream's.
    pub fn is_client_body(&self) -> bool {
        matches!(self, UpstreamError::ClientBody(_))
    }

    /// A failed send: the client's body when hyper says its request body
    /// stream failed with the client connection's own error.
    fn failed(e: hyper::Error) -> UpstreamError {
        let from_client =
            e.is_user() && std::error::Error::source(&e).is_some_and(|s| s.is::<ClientBodyError>());
        match from_client {
            true => UpstreamError::ClientBody(e),
            false => UpstreamError::Failed(e),
        }
    }
}

/// The pools of every route's upstream, by route index.
#[derive(Debug)]
pub struct Upstream {
    pools: Vec<Arc<Pool>>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl Upstream {
    pub fn new(config: &Config) -> Self {
        let mut pools: Vec<Arc<Pool>> = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let addr = format!(
                "{}:{}",
                route.upstream.host(),
                route.upstream.port_u16().unwrap_or(80)
            );
            // Routes to the same upstream share its connections.
            let pool = match pools.iter().find(|p| p.addr == addr) {
                Some(p) => p.clone(),
                None => Arc::new(Pool {
                    addr,
                    idle: Mutex::new(VecDeque::new()),
                    lean: Mutex::new(VecDeque::new()),
                }),
            };
            pools.push(pool);
        }
        Upstream {
            pools,
            connect_timeout: config.server.upstream_connect_timeout,
            response_timeout: config.server.upstream_response_timeout,
        }
    }

    /// Sends a request to route `route`'s upstream; the response timeout
    /// covers connecting and the response head, on a timer from `timers`,
    /// and the time to the head (or the failure) goes to `latency`.
    ///
    /// A plain `fn` returning an `async move` block, not an `async fn`: an
    /// `async fn` keeps its arguments twice in its state (as it received
    /// them and as locals), and this state is part of every request's
    /// future. The request lives here once; the lean exchange borrows it.
    #[allow(clippy::manual_async_fn)]
    pub fn send<'a>(
        &'a self,
        route: usize,
        req: Request<RequestBody>,
        timers: &'a TimerSlot,
        latency: &'a prometheus::Histogram,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Send + 'a {
        async move {
            let sent = Instant::now();
            let pool = &self.pools[route];
            let mut timer =
                timers.take(tokio::time::Instant::from_std(sent) + self.response_timeout);
            let timeout = UpstreamError::ResponseTimeout(self.response_timeout);
            // Upgrades carry `Upgrade` after forwarding; bodies need hyper's
            // concurrent write and read; a non-idempotent request must not
            // be sent twice, and only hyper knows whether an idle connection
            // had closed before it sent.
            let lean = req.method().is_idempotent()
                && req.body().is_end_stream()
                && !req.headers().contains_key(http::header::UPGRADE);
            let exchange = match lean {
                true => Either::Left(self.lean_exchange(pool, &req)),
                // Boxed: hyper's exchange is the rarer path (bodies,
                // upgrades), and its state would grow every request's.
                false => Either::Right(Box::pin(self.exchange(pool, req))),
            };
            let result = tokio::select! {
                biased;
                r = exchange => r,
                () = timer.as_mut() => Err(timeout),
            };
            timers.put(timer);
            latency.observe(sent.elapsed().as_secs_f64());
            result
        }
    }

    async fn lean_exchange(
        &self,
        pool: &Arc<Pool>,
        req: &Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let mut retried = false;
        loop {
            let pooled = if retried { None } else { pool.checkout_lean() };
            let (conn, reused) = match pooled {
                Some(c) => (c, true),
                None => (
                    h1::Conn::new(Box::pin(self.connect_tcp(pool)).await?),
                    false,
                ),
            };
            match h1::exchange(conn, req).await {
                Ok(x) => {
                    let mut resp = Response::new(UpstreamBody {
                        inner: Inner::Lean(x.body),
                        pool: Some(pool.clone()),
                    });
                    *resp.status_mut() = x.status;
                    *resp.version_mut() = x.version;
                    *resp.headers_mut() = x.headers;
                    return Ok(resp);
                }
                // A reused connection that gave nothing back was most likely
                // closed while idle: an idempotent request goes once more,
                // on a new connection.
                Err(f) if reused && !f.answered => {
                    retried = true;
                }
                Err(f) => return Err(UpstreamError::Exchange(f.error)),
            }
        }
    }

    async fn exchange(
        &self,
        pool: &Arc<Pool>,
        mut req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let mut retried = false;
        loop {
            // A retry goes to a new connection: the pool just failed us.
            let pooled = if retried { None } else { pool.checkout() };
            let (mut sender, reused) = match pooled {
                Some(s) => (s, true),
                // Boxed: connecting is rare on a warm pool, and its future
                // would otherwise grow every request's state.
                None => (Box::pin(self.connect(pool)).await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    // An upgraded connection belongs to the tunnel now.
                    let reusable = resp.status() != StatusCode::SWITCHING_PROTOCOLS;
                    return Ok(resp.map(|body| UpstreamBody {
                        inner: Inner::Hyper(body, reusable.then_some(sender)),
                        pool: reusable.then(|| pool.clone()),
                    }));
                }
                Err(mut e) => match e.take_message() {
                    // Not sent at all: the idle connection had been closed.
                    Some(unsent) if reused => {
                        req = unsent;
                        retried = true;
                    }
                    _ => return Err(UpstreamError::failed(e.into_error())),
                },
            }
        }
    }

    async fn connect(&self, pool: &Pool) -> Result<SendRequest<RequestBody>, UpstreamError> {
        let tcp = self.connect_tcp(pool).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(SendLone(tcp)))
            .await
            .map_err(UpstreamError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    async fn connect_tcp(&self, pool: &Pool) -> Result<TcpStream, UpstreamError> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&*pool.addr))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(self.connect_timeout))?
            .map_err(UpstreamError::Connect)?;
        tcp.set_nodelay(true).map_err(UpstreamError::Connect)?;
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        socket2::SockRef::from(&tcp)
            .set_tcp_keepalive(&keepalive)
            .map_err(UpstreamError::Connect)?;
        Ok(tcp)
    }
}

/// Response-timeout timers kept between the requests of one client
/// connection. Moving a registered timer to a later deadline is one atomic
/// update in tokio; a new timer per request cost an allocation, a
/// registration and a removal in the runtime's timer wheel. An HTTP/2
/// connection has as many requests upstream at once as it has streams in
/// flight, so the slot keeps up to [`TIMERS_KEPT`] timers, one per request
/// that was in flight at the same time; beyond that a request uses a timer
/// of its own.
#[derive(Debug, Default)]
pub struct TimerSlot(Mutex<Vec<Pin<Box<Sleep>>>>);

/// Timers a client connection keeps: HTTP/1.1 needs one; the usual
/// concurrency of an HTTP/2 client (h2load's 10 streams, a page's burst of
/// assets) mostly fits, and an idle connection holds no more than this.
const TIMERS_KEPT: usize = 16;

impl TimerSlot {
    fn take(&self, deadline: tokio::time::Instant) -> Pin<Box<Sleep>> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match kept {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    fn put(&self, timer: Pin<Box<Sleep>>) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.len() < TIMERS_KEPT {
            slot.push(timer);
        }
    }
}

/// Idle keep-alive connections to one upstream address.
#[derive(Debug)]
struct Pool {
    /// `host:port`, resolved at connect time.
    addr: String,
    /// Oldest first; taken from the back (the most recently used is the
    /// likeliest to still be open).
    idle: Mutex<VecDeque<Idle<SendRequest<RequestBody>>>>,
    /// The same, for the lean path's connections.
    lean: Mutex<VecDeque<Idle<h1::Conn>>>,
}

/// A pooled connection (a hyper handle or a lean one) and when it went idle.
#[derive(Debug)]
struct Idle<C> {
    conn: C,
    since: Instant,
}

/// Adds a connection at the back (most recent), first dropping from the
/// front those idle too long and any beyond `MAX_IDLE`.
fn push_idle<C>(list: &Mutex<VecDeque<Idle<C>>>, conn: C) {
    let now = Instant::now();
    let mut idle = list.lock().unwrap_or_else(|p| p.into_inner());
    while idle
        .front()
        .is_some_and(|e| now.duration_since(e.since) > IDLE_TIMEOUT || idle.len() >= MAX_IDLE)
    {
        idle.pop_front();
    }
    idle.push_back(Idle { conn, since: now });
}

impl Pool {
    /// A connection ready for a request, if one is idle. Closed ones are
    /// dropped; one still finishing its last exchange is left for later.
    fn checkout(&self) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Rare: allocates only when a connection is not ready yet.
        let mut busy = Vec::new();
        let mut found = None;
        while let Some(entry) = idle.pop_back() {
            if entry.conn.is_ready() {
                found = Some(entry.conn);
                break;
            }
            if !entry.conn.is_closed() {
                busy.push(entry);
            }
        }
        idle.extend(busy.into_iter().rev());
        found
    }

    /// The most recently used lean connection not idle for too long.
    fn checkout_lean(&self) -> Option<h1::Conn> {
        let mut idle = self.lean.lock().unwrap_or_else(|p| p.into_inner());
        let entry = idle.pop_back()?;
        (entry.since.elapsed() <= IDLE_TIMEOUT).then_some(entry.conn)
    }

    fn checkin_lean(&self, conn: h1::Conn) {
        push_idle(&self.lean, conn);
    }

    fn checkin(&self, sender: SendRequest<RequestBody>) {
        if !sender.is_closed() {
            push_idle(&self.idle, sender);
        }
    }
}

/// An upstream response body that returns its connection to the pool once
/// it has been read to the end. Dropped early, the connection is closed
/// instead: its unread rest could not be told apart from the next response.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Inner,
    /// Where the connection goes back to; `None` once it must not (an
    /// upgrade, a body error, or already returned).
    pool: Option<Arc<Pool>>,
}

/// The body, and the connection that carries it.
#[derive(Debug)]
enum Inner {
    /// The connection's handle is `None` after an upgrade.
    Hyper(Incoming, Option<SendRequest<RequestBody>>),
    Lean(h1::LeanBody),
}

impl UpstreamBody {
    fn release(&mut self) {
        let Some(pool) = self.pool.take() else { return };
        match &mut self.inner {
            Inner::Hyper(_, sender) => {
                if let Some(sender) = sender.take() {
                    pool.checkin(sender);
                }
            }
            Inner::Lean(body) => {
                if let Some(conn) = body.take_conn() {
                    pool.checkin_lean(conn);
                }
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let frame = match &mut self.inner {
            Inner::Hyper(body, _) => {
                ready!(Pin::new(body).poll_frame(cx)).map(|f| f.map_err(BodyError::from))
            }
            Inner::Lean(body) => {
                ready!(body.poll_data(cx)).map(|d| d.map(Frame::data).map_err(BodyError::from))
            }
        };
        match &frame {
            None => self.release(),
            Some(Ok(_)) if self.is_end_stream() => self.release(),
            Some(Ok(_)) => {}
            Some(Err(_)) => self.pool = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Hyper(body, _) => body.is_end_stream(),
            Inner::Lean(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Hyper(body, _) => body.size_hint(),
            Inner::Lean(body) => body.size_hint(),
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body with nothing to read (HEAD, 204, 304, `Content-Length: 0`)
        // may never be polled: its connection is still reusable.
        if self.is_end_stream() {
            self.release();
        }
    }
}
