//! One client connection: TLS handshake (bounded by `request_header_timeout`),
//! then HTTP/2 when ALPN chose `h2` (behind [`super::h2guard`], served by
//! [`super::http2`], its writes held by [`super::cork`]), else HTTP/1.1
//! with upgrades (behind [`super::h1guard`]), run under
//! [`super::supervise`] (idle and request-head timeouts, graceful stop).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::{HeaderValue, CONNECTION};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{service_fn, Service};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::admission::Ticket;
use super::cork::{self, Corked, Held};
use super::h1guard::{self, H1Guard};
use super::h2guard::H2Guard;
use super::http2::{Http2, Settings};
use super::supervise::{drive, Activity, Busy, Graceful, InFlight, Limits, Tracked};
use super::Drain;
use crate::config::Server;
use crate::net::SendLone;
use crate::proxy::{self, ConnInfo};
use crate::reply::ProxyBody;
use crate::state::Shared;
use crate::wire::body::ClientBody;

pub(super) async fn serve_tls(
    tcp: TcpStream,
    peer: SocketAddr,
    ticket: Ticket,
    shared: Arc<Shared>,
    drain: Drain,
) {
    let _guard = drain.track();
    let state = shared.state();
    let server = state.config.server.clone();
    let acceptor = TlsAcceptor::from(state.tls.clone());
    drop(state);
    let tls = match tokio::time::timeout(
        server.request_header_timeout,
        acceptor.accept(SendLone(tcp)),
    )
    .await
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
    let limits = match h2 {
        true => Limits {
            idle: server.client_idle_timeout,
            head: None,
            linger: false,
        },
        // The service below counts this connection's requests.
        false => Limits {
            linger: true,
            ..http1_limits(&server)
        },
    };
    let activity = Activity::new(&limits);
    ticket.attach(&activity);
    let info = Arc::new(ConnInfo::new(peer));
    let stop = drain.subscribe();
    if h2 {
        let io = Tracked {
            inner: H2Guard::new(tls),
            activity: activity.clone(),
        };
        // Writes wait for the end of the round (HTTP/2 only: an HTTP/1.1
        // connection has one response at a time, and its IO may leave
        // for an upgrade's tunnel, where no poll would open the gate).
        let gate = cork::gate();
        let io = Held::new(io, gate.clone());
        let svc = move |req| proxy::handle(shared.clone(), info.clone(), req);
        let conn = Http2::new(io, Settings::from_config(&server), activity.clone(), svc);
        drive(Corked::new(conn, gate), activity, limits, stop).await;
    } else {
        let act = activity.clone();
        let svc = service_fn(move |req: Request<Incoming>| Served {
            busy: Some(act.begin()),
            answer: proxy::handle(shared.clone(), info.clone(), req.map(ClientBody::H1)),
        });
        let guard = H1Guard::new(tls, server.max_request_header_bytes, activity.clone());
        let io = TokioIo::new(Tracked {
            inner: guard,
            activity: activity.clone(),
        });
        let conn = http1_builder(&server)
            .serve_connection(io, svc)
            .with_upgrades();
        drive(conn, activity, limits, stop).await;
    }
}

pin_project_lite::pin_project! {
    /// One HTTP/1.1 request: the pipeline's answer, then what the
    /// connection adds to it. A struct rather than an `async` block around
    /// the pipeline's future, which would hold the request twice.
    struct Served<F> {
        #[pin]
        answer: F,
        busy: Option<Busy>,
    }
}

impl<F: Future<Output = Response<ProxyBody>>> Future for Served<F> {
    type Output = Result<Response<InFlight>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = ready!(this.answer.poll(cx));
        let busy = this.busy.take().expect("a request is answered once");
        let act = busy.activity();
        // The body ended in the guard's refusal: no response has started.
        if act.body_refused() {
            resp = h1guard::refused_response();
        }
        // Told to finish (stopping, or room made at the connection cap): the
        // client learns it from this response, and hyper closes after it.
        if act.finishing() && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(resp.map(|body| InFlight { body, _busy: busy })))
    }
}

fn handshake(result: &str) {
    crate::metrics::get()
        .tls_handshakes
        .with_label_values(&[result])
        .inc();
}

/// HTTP/1.1 settings of every listener. The request-head timeout is the
/// watchdog's ([`http1_limits`]), not hyper's, which arms a timer for every
/// request and would also cut idle keep-alive connections at it. Writes are
/// flattened into one buffer: rustls makes one record of it either way, and
/// its vectored path allocates a slice list per write.
fn http1_builder(server: &Server) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.header_read_timeout(None)
        .writev(false)
        .max_header_size(server.max_request_header_bytes)
        .keep_alive(true);
    b
}

fn http1_limits(server: &Server) -> Limits {
    Limits {
        idle: server.client_idle_timeout,
        head: Some(server.request_header_timeout),
        linger: false,
    }
}

/// A plain-TCP HTTP/1.1 connection (the redirect and admin listeners),
/// under the same timeouts as the HTTPS listener's.
pub async fn serve_plain<S>(tcp: TcpStream, server: &Server, svc: S, stop: watch::Receiver<bool>)
where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>,
{
    let limits = http1_limits(server);
    let activity = Activity::new(&limits);
    // Requests are counted as on the HTTPS listener, so the watchdog tells
    // a keep-alive connection waiting for its next request (the idle
    // timeout) from one sending a slow head (the head timeout).
    let act = activity.clone();
    let svc = service_fn(move |req| {
        let busy = act.begin();
        let answer = svc.call(req);
        async move {
            let resp = answer.await?;
            Ok::<_, Infallible>(resp.map(|body| InFlight { body, _busy: busy }))
        }
    });
    let io = TokioIo::new(Tracked {
        inner: tcp,
        activity: activity.clone(),
    });
    let conn = http1_builder(server).serve_connection(io, svc);
    drive(conn, activity, limits, stop).await;
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
