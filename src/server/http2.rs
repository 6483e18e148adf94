//! HTTP/2 connections, served with the `h2` crate itself.
//!
//! hyper's HTTP/2 server puts glue around every stream: the request's body
//! in hyper's own body type (with a ping recorder), the service's future in
//! a box, the stream in a second box and a pipe, connection headers
//! stripped and `Date` added by hash-map lookups. Counted with callgrind
//! (`bench/instructions.sh h2`, see `docs/performance.md`), that glue was
//! the largest part of an HTTP/2 request not spent in `h2` or in the
//! pipeline. Here each stream is one [`Respond`] future: the pipeline's
//! answer, then its body piped into the stream.
//!
//! What hyper did, this does too:
//! - the same `h2` settings (windows, frame size, send buffer, reset-stream
//!   limits), with `max_concurrent_streams` 256 and the request-header
//!   limit from `max_request_header_bytes`;
//! - a response without `Date` gets one; a body of known size is sent with
//!   `Content-Length`; the pipeline never sets connection-specific headers
//!   on a response that can reach HTTP/2 (`h2` refuses them: such a stream
//!   is reset, never sent malformed);
//! - the client's RST_STREAM cancels its request's pipeline, or the rest of
//!   its response body;
//! - a body is sent at most one chunk past the client's flow-control window
//!   (the first chunk is sent at once: a small body goes out in one step);
//! - keep-alive pings ([`KeepAlive`]): a peer that stops answering while a
//!   stream is open (a long response) is cut after `request_header_timeout`;
//! - graceful shutdown sends GOAWAY and lets open streams finish.
//!
//! On the current-thread runtime (one CPU, `src/main.rs`) streams run on
//! their connection's task: no task per stream (an aligned allocation, a
//! registration, a wake-up and a switch to start and to finish it), and a
//! stream's response is written in the same poll that produced it. A panic
//! in one stream ends that stream only (it is reset). A connection that
//! ends (closed by the client, or by the watchdog) takes its streams with
//! it: their responses have nowhere to go, so their pipelines are dropped,
//! as a reset stream's is. With several workers each stream is a task, so
//! one connection's streams (a load balancer multiplexing many users) can
//! run on every worker at once; such a task ends at its next poll once its
//! connection is gone.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::server::{Connection, Handshake, SendResponse};
use h2::{Ping, PingPong, Reason, RecvStream, SendStream};
use http::header::{HeaderValue, CONTENT_LENGTH, DATE};
use http::{Request, Response};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use super::supervise::{Activity, Busy, Graceful};
use crate::config::Server;
use crate::reply::ProxyBody;
use crate::wire::body::ClientBody;

/// hyper's HTTP/2 server defaults, kept.
const WINDOW: u32 = 1024 * 1024;
const MAX_FRAME: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 400 * 1024;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;
const MAX_CONCURRENT_STREAMS: u32 = 256;

/// What a connection is told by the listener's configuration.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    /// `max_request_header_bytes`.
    pub max_header_list: u32,
    /// How often to ping, and how long a pong may take.
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
}

impl Settings {
    pub(super) fn from_config(server: &Server) -> Self {
        Settings {
            max_header_list: u32::try_from(server.max_request_header_bytes).unwrap_or(u32::MAX),
            // Pings (and the client's pongs) move bytes, which the watchdog
            // counts as activity: pinging more often than the idle timeout
            // would keep an idle connection open forever.
            ping_interval: server.client_idle_timeout * 2,
            ping_timeout: server.request_header_timeout,
        }
    }
}

/// One HTTP/2 connection: the handshake, then its streams, each answered by
/// `service`.
pub(super) struct Http2<T, S, F> {
    state: State<T>,
    service: S,
    activity: Arc<Activity>,
    /// Streams run here, each in one allocation (the set's own); `None` on
    /// a runtime with several workers, where each stream is a task.
    running: Option<FuturesUnordered<Isolated<F>>>,
    keep_alive: KeepAlive,
    /// Told to finish before the handshake was done.
    graceful: bool,
}

enum State<T> {
    Handshaking(Handshake<T, Bytes>),
    Serving(Connection<T, Bytes>),
    Closed,
}

impl<T, S, F> Http2<T, S, F>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: FnMut(Request<ClientBody>) -> F,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    pub(super) fn new(io: T, settings: Settings, activity: Arc<Activity>, service: S) -> Self {
        let handshake = h2::server::Builder::new()
            .initial_window_size(WINDOW)
            .initial_connection_window_size(WINDOW)
            .max_frame_size(MAX_FRAME)
            .max_header_list_size(settings.max_header_list)
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .handshake(io);
        let one_thread = super::on_one_thread();
        Http2 {
            state: State::Handshaking(handshake),
            service,
            activity,
            running: one_thread.then(FuturesUnordered::new),
            keep_alive: KeepAlive::new(settings.ping_interval, settings.ping_timeout),
            graceful: false,
        }
    }

    /// Drives the connection: completes the handshake, accepts streams and
    /// writes what streams have sent. True once the connection has ended.
    fn poll_conn(&mut self, cx: &mut Context<'_>) -> bool {
        let Http2 {
            state,
            service,
            activity,
            running,
            keep_alive,
            graceful,
        } = self;
        if let State::Handshaking(hs) = state {
            match Pin::new(hs).poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(Ok(mut conn)) => {
                    keep_alive.start(conn.ping_pong());
                    if *graceful {
                        conn.graceful_shutdown();
                    }
                    *state = State::Serving(conn);
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %e, "HTTP/2 handshake failed");
                    *state = State::Closed;
                }
            }
        }
        let State::Serving(conn) = state else {
            return true;
        };
        if keep_alive.poll_timed_out(cx) {
            tracing::debug!("HTTP/2 keep-alive ping unanswered, closing the connection");
            conn.abrupt_shutdown(Reason::NO_ERROR);
        }
        loop {
            match conn.poll_accept(cx) {
                Poll::Pending => return false,
                Poll::Ready(Some(Ok((req, reply)))) => {
                    start(service, activity, running, req, reply)
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(error = %e, "HTTP/2 connection error");
                    *state = State::Closed;
                    return true;
                }
                Poll::Ready(None) => {
                    *state = State::Closed;
                    return true;
                }
            }
        }
    }

    /// Polls the streams on this task until none is ready; how many ended.
    fn poll_streams(&mut self, cx: &mut Context<'_>) -> usize {
        let Some(running) = &mut self.running else {
            return 0;
        };
        let mut ended = 0;
        while let Poll::Ready(Some(())) = running.poll_next_unpin(cx) {
            ended += 1;
        }
        ended
    }
}

impl<T, S, F> Future for Http2<T, S, F>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: FnMut(Request<ClientBody>) -> F + Unpin,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut done = this.poll_conn(cx);
        // Streams that ended have sent their last frames: the connection
        // writes them in this poll, not the next.
        while this.poll_streams(cx) > 0 && !done {
            done = this.poll_conn(cx);
        }
        match done {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }
}

impl<T, S, F> Graceful for Http2<T, S, F>
where
    Self: Future + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    fn graceful(self: Pin<&mut Self>) {
        let this = self.get_mut();
        match &mut this.state {
            State::Handshaking(_) => this.graceful = true,
            State::Serving(conn) => conn.graceful_shutdown(),
            State::Closed => {}
        }
    }
}

/// Starts one stream: its request goes into the pipeline (`service`), and
/// the stream runs on `running` or as a task.
fn start<S, F>(
    service: &mut S,
    activity: &Arc<Activity>,
    running: &mut Option<FuturesUnordered<Isolated<F>>>,
    req: Request<RecvStream>,
    reply: SendResponse<Bytes>,
) where
    S: FnMut(Request<ClientBody>) -> F,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let busy = activity.begin();
    let (parts, recv) = req.into_parts();
    let body = ClientBody::h2(recv, &parts.headers);
    let answer = service(Request::from_parts(parts, body));
    let stream = Respond {
        answer,
        reply,
        step: Step::Answer,
        _busy: busy,
    };
    match running {
        Some(running) => running.push(Isolated { stream }),
        None => {
            tokio::spawn(stream);
        }
    }
}

/// Keep-alive pings: every `interval` the server pings; no pong within
/// `timeout` and the connection is cut. One timer per connection, nothing
/// per request.
struct KeepAlive {
    pings: Option<PingPong>,
    interval: Duration,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
    awaiting: bool,
}

impl KeepAlive {
    fn new(interval: Duration, timeout: Duration) -> Self {
        KeepAlive {
            pings: None,
            interval,
            timeout,
            timer: Box::pin(tokio::time::sleep(interval)),
            awaiting: false,
        }
    }

    fn start(&mut self, pings: Option<PingPong>) {
        self.pings = pings;
        self.timer.as_mut().reset(Instant::now() + self.interval);
    }

    /// True when a ping went unanswered for `timeout`.
    fn poll_timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(pings) = &mut self.pings else {
            return false;
        };
        if self.awaiting {
            match pings.poll_pong(cx) {
                Poll::Ready(Ok(_)) => {
                    self.awaiting = false;
                    self.timer.as_mut().reset(Instant::now() + self.interval);
                }
                // The connection is gone; `h2` reports it to the acceptor.
                Poll::Ready(Err(_)) => {
                    self.pings = None;
                    return false;
                }
                Poll::Pending => {}
            }
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        if self.awaiting {
            // Said once: the connection is being cut.
            self.pings = None;
            return true;
        }
        let next = match pings.send_ping(Ping::opaque()) {
            Ok(()) => {
                self.awaiting = true;
                // Polled at once, so the pong wakes this task.
                let _ = pings.poll_pong(cx);
                self.timeout
            }
            Err(_) => self.interval,
        };
        self.timer.as_mut().reset(Instant::now() + next);
        let _ = self.timer.as_mut().poll(cx);
        false
    }
}

pin_project_lite::pin_project! {
    /// A stream on its connection's task: a panic is the stream's own end
    /// (dropping it resets the stream), not the connection's.
    struct Isolated<F> {
        #[pin]
        stream: Respond<F>,
    }
}

impl<F: Future<Output = Response<ProxyBody>>> Future for Isolated<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let stream = self.project().stream;
        // Ready after a panic: the set drops the stream, never polls it again.
        std::panic::catch_unwind(AssertUnwindSafe(|| stream.poll(cx))).unwrap_or(Poll::Ready(()))
    }
}

pin_project_lite::pin_project! {
    /// One stream: the pipeline's answer, then its body.
    struct Respond<F> {
        #[pin]
        answer: F,
        reply: SendResponse<Bytes>,
        step: Step,
        // The request is in flight until its response has been sent.
        _busy: Busy,
    }
}

enum Step {
    Answer,
    /// The head is sent; `first` until a body frame has been sent.
    Body {
        tx: SendStream<Bytes>,
        body: ProxyBody,
        first: bool,
    },
    Done,
}

impl<F: Future<Output = Response<ProxyBody>>> Future for Respond<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if let Step::Answer = this.step {
            let resp = match this.answer.poll(cx) {
                Poll::Ready(resp) => resp,
                Poll::Pending => {
                    // The client may cancel while the pipeline works.
                    return match this.reply.poll_reset(cx) {
                        Poll::Ready(_) => Poll::Ready(()),
                        Poll::Pending => Poll::Pending,
                    };
                }
            };
            let (mut head, body) = resp.into_parts();
            // One walk over the few names there, not two hashed lookups.
            let (mut has_date, mut has_length) = (false, false);
            for name in head.headers.keys() {
                has_date |= name == DATE;
                has_length |= name == CONTENT_LENGTH;
            }
            if !has_date {
                head.headers.insert(DATE, date_now());
            }
            let end = body.is_end_stream();
            if !end && !has_length {
                if let Some(n) = body.size_hint().exact() {
                    head.headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
                }
            }
            match this
                .reply
                .send_response(Response::from_parts(head, ()), end)
            {
                Ok(tx) if !end => {
                    *this.step = Step::Body {
                        tx,
                        body,
                        first: true,
                    }
                }
                Ok(_) => return Poll::Ready(()),
                Err(e) => {
                    tracing::debug!(error = %e, "HTTP/2 response refused");
                    this.reply.send_reset(Reason::INTERNAL_ERROR);
                    return Poll::Ready(());
                }
            }
        }
        let Step::Body { tx, body, first } = this.step else {
            return Poll::Ready(());
        };
        let r = pipe(tx, body, first, cx);
        if r.is_ready() {
            // The body's connection upstream goes back now, not when the
            // stream's future is dropped.
            *this.step = Step::Done;
        }
        r
    }
}

/// Sends `body` on `tx` until it ends, the client resets the stream, or the
/// body fails (the stream is then reset).
fn pipe(
    tx: &mut SendStream<Bytes>,
    body: &mut ProxyBody,
    first: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<()> {
    loop {
        if !*first {
            // Past the first chunk, one more is sent only into an open
            // window: what `h2` buffers stays one chunk.
            tx.reserve_capacity(1);
            if tx.capacity() == 0 {
                loop {
                    match ready!(tx.poll_capacity(cx)) {
                        Some(Ok(0)) => {}
                        Some(Ok(_)) => break,
                        Some(Err(_)) | None => return Poll::Ready(()),
                    }
                }
            }
        }
        let frame = match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                // A long body (server-sent events): the client may leave.
                return match tx.poll_reset(cx) {
                    Poll::Ready(_) => Poll::Ready(()),
                    Poll::Pending => Poll::Pending,
                };
            }
        };
        match frame {
            None => {
                let _ = tx.send_data(Bytes::new(), true);
                return Poll::Ready(());
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed; resetting the HTTP/2 stream");
                tx.send_reset(Reason::INTERNAL_ERROR);
                return Poll::Ready(());
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let end = body.is_end_stream();
                    *first = false;
                    if tx.send_data(data, end).is_err() || end {
                        return Poll::Ready(());
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        tx.reserve_capacity(0);
                        let _ = tx.send_trailers(trailers);
                        return Poll::Ready(());
                    }
                }
            },
        }
    }
}

/// Now, as an HTTP date; made once a second per thread.
fn date_now() -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, HeaderValue)> =
            const { std::cell::RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            let text = httpdate::fmt_http_date(now);
            *last = (
                secs,
                HeaderValue::from_str(&text).expect("an HTTP date is a valid header value"),
            );
        }
        last.1.clone()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures_util::future::poll_fn;
    use http::{Method, StatusCode};
    use http_body_util::BodyExt;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    use super::super::supervise::Limits;
    use super::*;

    const SETTINGS: Settings = Settings {
        max_header_list: 16 * 1024,
        ping_interval: Duration::from_secs(60),
        ping_timeout: Duration::from_secs(10),
    };

    type Client = h2::client::SendRequest<Bytes>;

    fn activity() -> Arc<Activity> {
        Activity::new(&Limits {
            idle: Duration::from_secs(60),
            head: None,
            linger: false,
        })
    }

    /// Serves one connection over an in-memory pipe; the client's end.
    async fn serve<S, F>(service: S, window: u32) -> (Client, JoinHandle<()>)
    where
        S: FnMut(Request<ClientBody>) -> F + Send + Unpin + 'static,
        F: Future<Output = Response<ProxyBody>> + Send + 'static,
    {
        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(Http2::new(server_io, SETTINGS, activity(), service));
        let (client, conn) = h2::client::Builder::new()
            .initial_window_size(window)
            .handshake(client_io)
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        (client, server)
    }

    fn request(method: Method, path: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"))
            .body(())
            .unwrap()
    }

    type Sent = (h2::client::ResponseFuture, h2::SendStream<Bytes>);

    /// Sends `req`'s head; `end` when it has no body.
    async fn send(client: &Client, req: Request<()>, end: bool) -> Result<Sent, h2::Error> {
        client.clone().ready().await?.send_request(req, end)
    }

    /// GETs `path` and reads the whole response.
    async fn get(client: &Client, path: &str) -> Result<(http::response::Parts, Bytes), h2::Error> {
        let (resp, _) = send(client, request(Method::GET, path), true).await?;
        read(resp.await?).await
    }

    async fn read(
        resp: Response<h2::RecvStream>,
    ) -> Result<(http::response::Parts, Bytes), h2::Error> {
        let (head, mut body) = resp.into_parts();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        Ok((head, Bytes::from(data)))
    }

    async fn within<F: Future>(what: &str, f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .unwrap_or_else(|_| panic!("timed out: {what}"))
    }

    #[tokio::test]
    async fn a_response_keeps_its_own_date_and_content_length() {
        let (client, _server) = serve(
            |_: Request<ClientBody>| async {
                let mut resp = Response::new(ProxyBody::text("ok"));
                let h = resp.headers_mut();
                h.insert(
                    DATE,
                    HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
                );
                h.insert(CONTENT_LENGTH, HeaderValue::from_static("2"));
                resp
            },
            65_535,
        )
        .await;
        let (head, body) = within("a response", get(&client, "/")).await.unwrap();
        assert_eq!(body, "ok");
        assert_eq!(head.headers[DATE], "Sun, 06 Nov 1994 08:49:37 GMT");
        let lengths: Vec<_> = head.headers.get_all(CONTENT_LENGTH).iter().collect();
        assert_eq!(lengths, ["2"]);
    }

    #[tokio::test]
    async fn streams_are_answered_and_a_panicking_one_ends_alone() {
        let (client, _server) = serve(
            |req: Request<ClientBody>| async move {
                if req.uri().path() == "/panic" {
                    panic!("one stream's bug");
                }
                Response::new(ProxyBody::text("ok"))
            },
            65_535,
        )
        .await;
        let (ok, panicked) = within("two streams", async {
            tokio::join!(get(&client, "/ok"), get(&client, "/panic"))
        })
        .await;
        let (head, body) = ok.expect("the other stream is answered");
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(body, "ok");
        assert_eq!(head.headers[CONTENT_LENGTH], "2");
        assert!(head.headers.contains_key(DATE), "a response gets a Date");
        assert!(panicked.is_err(), "the panicking stream is reset");
        let (_, body) = within("after the panic", get(&client, "/again"))
            .await
            .unwrap();
        assert_eq!(body, "ok", "the connection still serves");
    }

    #[tokio::test]
    async fn a_body_larger_than_the_window_is_sent_as_it_opens() {
        let big = Bytes::from(vec![b'x'; 3 * 1024 * 1024]);
        let body = big.clone();
        let (client, _server) = serve(
            move |_| {
                let body = body.clone();
                async move { Response::new(ProxyBody::text(body)) }
            },
            16 * 1024,
        )
        .await;
        let (head, got) = within("a large body", get(&client, "/big")).await.unwrap();
        assert_eq!(head.headers[CONTENT_LENGTH], big.len().to_string().as_str());
        assert_eq!(got, big);
    }

    #[tokio::test]
    async fn a_request_body_is_read_under_flow_control_with_its_length() {
        const LEN: usize = 3 * 1024 * 1024;
        let (client, _server) = serve(
            |req: Request<ClientBody>| async move {
                let hint = req.body().size_hint().exact();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let ok = hint == Some(LEN as u64) && body.iter().all(|&b| b == b'y');
                Response::new(ProxyBody::text(format!("{} {ok}", body.len())))
            },
            65_535,
        )
        .await;
        let mut req = request(Method::POST, "/upload");
        req.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(LEN));
        let (resp, mut tx) = send(&client, req, false).await.unwrap();
        let send = async move {
            let mut left = LEN;
            while left > 0 {
                tx.reserve_capacity(left.min(64 * 1024));
                let n = poll_fn(|cx| tx.poll_capacity(cx)).await.unwrap().unwrap();
                let n = n.min(left);
                left -= n;
                tx.send_data(Bytes::from(vec![b'y'; n]), left == 0).unwrap();
            }
        };
        let (_, resp) = within("a large upload", async { tokio::join!(send, resp) }).await;
        let (_, body) = read(resp.unwrap()).await.unwrap();
        assert_eq!(body, format!("{LEN} true"));
    }

    /// Dropped with the pipeline's future: says so.
    struct Dropped(Option<oneshot::Sender<()>>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }

    /// A connection whose one pipeline never answers; says when it starts
    /// and when it is dropped.
    async fn serve_stuck() -> (
        Client,
        JoinHandle<()>,
        oneshot::Receiver<()>,
        oneshot::Receiver<()>,
    ) {
        let (dropped_tx, dropped) = oneshot::channel();
        let (started_tx, started) = oneshot::channel();
        let slot = Mutex::new(Some((dropped_tx, started_tx)));
        let (client, server) = serve(
            move |_| {
                let (dropped_tx, started_tx) = slot.lock().unwrap().take().unwrap();
                let guard = Dropped(Some(dropped_tx));
                async move {
                    let _guard = guard;
                    let _ = started_tx.send(());
                    std::future::pending::<Response<ProxyBody>>().await
                }
            },
            65_535,
        )
        .await;
        (client, server, started, dropped)
    }

    #[tokio::test]
    async fn a_client_reset_cancels_the_pipeline() {
        let (client, _server, started, dropped) = serve_stuck().await;
        let (_resp, mut tx) = send(&client, request(Method::POST, "/slow"), false)
            .await
            .unwrap();
        within("the pipeline starts", started).await.unwrap();
        tx.send_reset(Reason::CANCEL);
        within("the pipeline is dropped", dropped).await.unwrap();
    }

    #[tokio::test]
    async fn streams_end_with_their_connection() {
        let (client, server, started, dropped) = serve_stuck().await;
        let _sent = send(&client, request(Method::GET, "/"), true)
            .await
            .unwrap();
        within("the pipeline starts", started).await.unwrap();
        // The connection is dropped, as the watchdog drops it.
        server.abort();
        let _ = server.await;
        within("the pipeline is dropped", dropped).await.unwrap();
    }

    #[tokio::test]
    async fn on_one_thread_streams_run_on_the_connection() {
        let (io, _peer) = tokio::io::duplex(1024);
        let conn = Http2::new(io, SETTINGS, activity(), |_: Request<ClientBody>| async {
            Response::new(ProxyBody::empty())
        });
        assert!(conn.running.is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_several_workers_each_stream_is_a_task() {
        let (io, _peer) = tokio::io::duplex(1024);
        let conn = Http2::new(io, SETTINGS, activity(), |_: Request<ClientBody>| async {
            Response::new(ProxyBody::empty())
        });
        assert!(conn.running.is_none());
        let (client, _server) = serve(
            |_: Request<ClientBody>| async { Response::new(ProxyBody::text("ok")) },
            65_535,
        )
        .await;
        let (_, body) = within("a stream as a task", get(&client, "/"))
            .await
            .unwrap();
        assert_eq!(body, "ok");
    }

    /// A client that answers pings is kept while its slow answer comes.
    #[tokio::test]
    async fn a_peer_that_answers_pings_is_kept() {
        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        let quick = Settings {
            ping_interval: Duration::from_millis(50),
            ping_timeout: Duration::from_millis(100),
            ..SETTINGS
        };
        let service = |_: Request<ClientBody>| async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            Response::new(ProxyBody::text("late"))
        };
        tokio::spawn(Http2::new(server_io, quick, activity(), service));
        let (client, conn) = h2::client::handshake(client_io).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let (_, body) = within("a slow answer", get(&client, "/")).await.unwrap();
        assert_eq!(body, "late");
    }

    /// A peer that stops answering (pings included) while a stream is open
    /// is cut once a ping goes unanswered for the timeout.
    #[tokio::test]
    async fn a_peer_that_stops_answering_pings_is_cut() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (server_io, mut client) = tokio::io::duplex(64 * 1024);
        let quick = Settings {
            ping_interval: Duration::from_millis(50),
            ping_timeout: Duration::from_millis(100),
            ..SETTINGS
        };
        let service = |_: Request<ClientBody>| std::future::pending::<Response<ProxyBody>>();
        let server = tokio::spawn(Http2::new(server_io, quick, activity(), service));
        // By hand: the preface, empty SETTINGS, then one GET on stream 1
        // (HPACK: :method GET, :scheme https, :path /, :authority "a").
        let mut frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        frames.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
        let block = [0x82, 0x87, 0x84, 0x41, 0x01, b'a'];
        frames.extend_from_slice(&[0, 0, block.len() as u8, 0x1, 0x5, 0, 0, 0, 1]);
        frames.extend_from_slice(&block);
        client.write_all(&frames).await.unwrap();
        // Nothing more is read or written: no SETTINGS ACK, no PING ACK.
        within("the silent peer is cut", server).await.unwrap();
        // What the server wrote ends with its GOAWAY.
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(1), client.read_to_end(&mut out)).await;
        assert!(
            out.windows(4).any(|w| w[3] == 0x7 && w[..3] == [0, 0, 8]),
            "no GOAWAY"
        );
    }

    #[test]
    fn the_date_is_an_http_date() {
        let date = date_now();
        let parsed = httpdate::parse_http_date(date.to_str().unwrap()).unwrap();
        let age = SystemTime::now().duration_since(parsed).unwrap_or_default();
        assert!(age < Duration::from_secs(5), "{date:?}");
    }
}
