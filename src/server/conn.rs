//! One client connection: TLS handshake (bounded by `request_header_timeout`),
//! then HTTP/2 when ALPN chose `h2`, else HTTP/1.1 with upgrades. Slow
//! headers are cut by hyper's header timeout; a connection with no request
//! in flight and no bytes moving for `client_idle_timeout` is closed.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::Drain;
use crate::app::Shared;
use crate::config::Server;
use crate::proxy::{self, ConnInfo, ProxyBody};

pub(super) async fn serve_tls(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>, drain: Drain) {
    let _guard = drain.track();
    let state = shared.state();
    let server = state.config.server.clone();
    let acceptor = TlsAcceptor::from(state.tls.clone());
    drop(state);
    let tls = match tokio::time::timeout(server.request_header_timeout, acceptor.accept(tcp)).await
    {
        Ok(Ok(tls)) => {
            handshake("ok");
            tls
        }
        Ok(Err(e)) => {
            handshake("error");
            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            handshake("error");
            tracing::debug!(peer = %peer, "TLS handshake timed out");
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let activity = Arc::new(Activity::default());
    let io = TokioIo::new(Tracked {
        inner: tls,
        activity: activity.clone(),
    });
    let info = Arc::new(ConnInfo::new(peer));
    let act = activity.clone();
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        let act = act.clone();
        let info = info.clone();
        async move {
            let busy = act.begin();
            let resp = proxy::handle(&shared, &info, req).await;
            // In flight until the body ends: a slow stream (server-sent
            // events) with long gaps is not an idle connection.
            Ok::<_, Infallible>(resp.map(|body| InFlight { body, _busy: busy }))
        }
    });
    let stop = drain.subscribe();
    if h2 {
        let conn = http2_builder(&server).serve_connection(io, svc);
        drive(conn, &activity, server.client_idle_timeout, stop).await;
    } else {
        let conn = http1_builder(&server)
            .serve_connection(io, svc)
            .with_upgrades();
        drive(conn, &activity, server.client_idle_timeout, stop).await;
    }
}

fn handshake(result: &str) {
    crate::metrics::get()
        .tls_handshakes
        .with_label_values(&[result])
        .inc();
}

pub fn http1_builder(server: &Server) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(server.request_header_timeout)
        .max_header_size(server.max_request_header_bytes)
        .keep_alive(true);
    b
}

fn http2_builder(server: &Server) -> http2::Builder<TokioExecutor> {
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_header_list_size(server.max_request_header_bytes as u32)
        .max_concurrent_streams(256)
        // Pings (and the client's pongs) move bytes, which `drive` counts as
        // activity: pinging more often than the idle timeout would keep an
        // idle connection open forever, so ping only after it has passed.
        .keep_alive_interval(server.client_idle_timeout * 2)
        .keep_alive_timeout(server.request_header_timeout);
    b
}

/// hyper's connection types, which all shut down the same way.
pub(super) trait Graceful: Future {
    fn graceful(self: Pin<&mut Self>);
}

impl<I, S, B> Graceful for http1::UpgradeableConnection<I, S>
where
    Self: Future,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown()
    }
}

impl<I, S, B> Graceful for http1::Connection<I, S>
where
    Self: Future,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown()
    }
}

impl<I, S, B, E> Graceful for http2::Connection<I, S, E>
where
    Self: Future,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown()
    }
}

/// Runs a connection until it ends, shuts it down gracefully when `stop`
/// turns true, and drops it once it has been idle for `idle`.
///
/// Idleness is sampled, not timed per byte: the IO wrapper only raises a
/// flag when bytes move (no clock read on the hot path), and a watchdog
/// looks every quarter of `idle`. A connection is closed between `idle` and
/// `idle` plus one quarter after its last activity.
pub(super) async fn drive<C: Graceful>(
    conn: C,
    activity: &Activity,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
) {
    tokio::pin!(conn);
    let period = (idle / 4).max(Duration::from_millis(50));
    // Already stopping when the connection came in: `changed` would not say.
    let mut stopping = *stop.borrow_and_update();
    if stopping {
        conn.as_mut().graceful();
    }
    let mut quiet_since = Instant::now();
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                let _ = r;
                return;
            }
            // A closed sender counts as a stop, as `wait_for` reports it.
            changed = stop.changed(), if !stopping => {
                if changed.is_err() || *stop.borrow() {
                    stopping = true;
                    conn.as_mut().graceful();
                }
            }
            _ = tokio::time::sleep(period) => {
                let now = Instant::now();
                // A request in flight is not idle, however quiet it is.
                if activity.take_moved() || activity.in_flight() > 0 {
                    quiet_since = now;
                } else if now.duration_since(quiet_since) >= idle {
                    tracing::debug!("closing idle client connection");
                    return;
                }
            }
        }
    }
}

/// Whether bytes moved since the watchdog last looked, and how many
/// requests are being served.
#[derive(Debug, Default)]
pub(super) struct Activity {
    moved: AtomicBool,
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        // Read first: the common case (already set) writes nothing.
        if !self.moved.load(Ordering::Relaxed) {
            self.moved.store(true, Ordering::Relaxed);
        }
    }

    fn take_moved(&self) -> bool {
        self.moved.swap(false, Ordering::Relaxed)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }
}

pub(super) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A response body that keeps its request counted as in flight.
pub(super) struct InFlight {
    body: ProxyBody,
    _busy: Busy,
}

impl http_body::Body for InFlight {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// An IO wrapper that records when bytes last moved.
pub(super) struct Tracked<T> {
    pub(super) inner: T,
    pub(super) activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
