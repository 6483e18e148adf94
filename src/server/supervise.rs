//! Connection supervision: the idle timeout, the HTTP/1 request-head timeout
//! (slowloris) and graceful stop, enforced by one watchdog task per
//! connection instead of timers on the request path.
//!
//! The connection's task only raises flags ([`Activity`]): bytes moved, a
//! request head is being read, a request began or ended. The watchdog
//! samples them every quarter of the shorter timeout, so a timeout fires
//! between 1× and 1¼× its setting, and it orders the connection to stop
//! through an atomic word and a waker. Serving a request therefore reads no
//! clock and arms no timer here.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use crate::reply::ProxyBody;

/// A served connection (hyper's HTTP/1.1 ones, [`super::http2::Http2`]), which
/// can be told to finish gracefully.
pub(super) trait Graceful: Future {
    fn graceful(self: Pin<&mut Self>);
}

/// The timeouts the watchdog enforces.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// No request in flight and no bytes moving for this long: close.
    pub idle: Duration,
    /// HTTP/1 only: a request head (from the end of the TLS handshake for
    /// the first request, from its first byte for later ones) not complete
    /// within this: close.
    pub head: Option<Duration>,
    /// HTTP/1.1 whose requests the service counts ([`Activity::begin`]):
    /// when the process stops, an idle connection lingers ([`DRAIN`]).
    /// Others are told to finish at once.
    pub linger: bool,
}

/// What the watchdog tells the connection's task.
const RUN: u8 = 0;
/// The process is stopping and the connection may linger
/// ([`Limits::linger`], HTTPS HTTP/1.1): a request in flight finishes with
/// `Connection: close`, and an idle connection stays open for a next
/// request (answered with `Connection: close`) until it has been quiet for
/// [`DRAIN_LINGER`]. Other connections are told [`GRACEFUL`] instead:
/// HTTP/2 sends GOAWAY at once.
const DRAIN: u8 = 1;
const GRACEFUL: u8 = 2;
const CLOSE: u8 = 3;

/// How long an idle HTTP/1.1 connection stays open once the process is
/// stopping. Closing it at once loses a request the client sends as the
/// close crosses it; a request that arrives in the linger is answered (with
/// `Connection: close`), so only a client idle for this long and then
/// sending in the very instant of the close can still lose one, which
/// HTTP/1.1 cannot rule out (RFC 9112 §9.5).
const DRAIN_LINGER: Duration = Duration::from_secs(1);

/// Flags shared by a connection's task, its IO wrapper, its requests and
/// its watchdog. All relaxed: they are samples, not synchronisation.
#[derive(Debug)]
pub(super) struct Activity {
    moved: AtomicBool,
    in_flight: AtomicUsize,
    /// HTTP/1: bytes of a next request head have arrived (or the connection
    /// is new) and that request has not begun.
    head_pending: AtomicBool,
    /// Requests begun, so the watchdog can tell one pending head from the next.
    begun: AtomicUsize,
    track_heads: bool,
    /// When the watchdog last saw the connection busy ([`clock_ms`]), for
    /// admission's longest-idle-first choice.
    quiet_since: AtomicU64,
    order: AtomicU8,
    waker: AtomicWaker,
    /// HTTP/1: the request-framing guard refused the body of the request
    /// being read ([`super::h1guard`]).
    body_refused: AtomicBool,
}

/// Milliseconds on a process-wide monotonic clock.
fn clock_ms(at: Instant) -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    at.saturating_duration_since(*START).as_millis() as u64
}

impl Activity {
    /// Heads are tracked when `limits` times them (HTTP/1), the first from
    /// now.
    pub(super) fn new(limits: &Limits) -> Arc<Self> {
        let track_heads = limits.head.is_some();
        Arc::new(Activity {
            moved: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            head_pending: AtomicBool::new(track_heads),
            begun: AtomicUsize::new(0),
            track_heads,
            quiet_since: AtomicU64::new(clock_ms(Instant::now())),
            order: AtomicU8::new(RUN),
            waker: AtomicWaker::new(),
            body_refused: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        // Read first: the common case (already set) writes nothing.
        if !self.moved.load(Ordering::Relaxed) {
            self.moved.store(true, Ordering::Relaxed);
        }
    }

    /// Bytes were read: with nothing in flight they start a request head.
    fn read(&self) {
        self.touch();
        if self.track_heads
            && self.in_flight.load(Ordering::Relaxed) == 0
            && !self.head_pending.load(Ordering::Relaxed)
        {
            self.head_pending.store(true, Ordering::Relaxed);
        }
    }

    /// A request began: its head is complete.
    pub(super) fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.begun.fetch_add(1, Ordering::Relaxed);
        self.head_pending.store(false, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Whether exactly `requests` requests have begun and every response
    /// body has ended (hyper dropped it): hyper then owes the client
    /// nothing beyond what its write buffer holds.
    pub(super) fn answered(&self, requests: usize) -> bool {
        self.begun.load(Ordering::Relaxed) == requests
            && self.in_flight.load(Ordering::Relaxed) == 0
    }

    pub(super) fn refuse_body(&self) {
        self.body_refused.store(true, Ordering::Relaxed);
    }

    /// Whether the guard refused a request body on this connection.
    pub(super) fn body_refused(&self) -> bool {
        self.body_refused.load(Ordering::Relaxed)
    }

    /// When the connection went quiet, if it is idle now: nothing in
    /// flight, no request head arriving, not already told to stop.
    pub(super) fn idle_since(&self) -> Option<u64> {
        let idle = self.in_flight.load(Ordering::Relaxed) == 0
            && !(self.track_heads && self.head_pending.load(Ordering::Relaxed))
            && self.order.load(Ordering::Relaxed) == RUN;
        idle.then(|| self.quiet_since.load(Ordering::Relaxed))
    }

    /// Asks the connection to finish: an idle HTTP/1.1 connection closes,
    /// a busy one closes after its response (`Connection: close`), HTTP/2
    /// sends GOAWAY and closes when its streams end.
    pub(super) fn shut_down_gracefully(&self) {
        if self.order.load(Ordering::Relaxed) == RUN {
            self.tell(GRACEFUL);
        }
    }

    /// True once the connection has been asked to finish: an HTTP/1.1
    /// response begun now carries `Connection: close`.
    pub(super) fn finishing(&self) -> bool {
        self.order.load(Ordering::Relaxed) != RUN
    }

    fn tell(&self, order: u8) {
        self.order.store(order, Ordering::Release);
        self.waker.wake();
    }
}

/// A request in flight; dropped when its response body has ended.
pub(super) struct Busy(Arc<Activity>);

impl Busy {
    /// The connection this request is on.
    pub(super) fn activity(&self) -> &Activity {
        &self.0
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A response body that keeps its request counted as in flight: a slow
/// stream (server-sent events) with long gaps is not an idle connection.
pub(super) struct InFlight {
    pub(super) body: ProxyBody,
    pub(super) _busy: Busy,
}

impl http_body::Body for InFlight {
    type Data = bytes::Bytes;
    type Error = crate::upstream::BodyError;

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

/// An IO wrapper that raises [`Activity`]'s flags when bytes move.
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
            self.activity.read();
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

/// Runs a connection until it ends, or until its watchdog closes it (idle,
/// slow head); shuts it down gracefully when `stop` turns true.
pub(super) async fn drive<C: Graceful>(
    conn: C,
    activity: Arc<Activity>,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    let watchdog = tokio::spawn(watchdog(activity.clone(), limits, stop));
    Supervised {
        conn,
        activity,
        graceful: false,
    }
    .await;
    watchdog.abort();
}

pin_project_lite::pin_project! {
    /// The connection, polled with one atomic load for the watchdog's order.
    struct Supervised<C> {
        #[pin]
        conn: C,
        activity: Arc<Activity>,
        graceful: bool,
    }
}

impl<C: Graceful> Future for Supervised<C> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        // Registered before the order is read, so an order given in between
        // still wakes this task.
        this.activity.waker.register(cx.waker());
        match this.activity.order.load(Ordering::Acquire) {
            RUN => {}
            CLOSE => return Poll::Ready(()),
            // Draining, an idle HTTP/1.1 connection lingers: hyper would
            // close it at once.
            DRAIN if this.activity.in_flight.load(Ordering::Relaxed) == 0 => {}
            _ if !*this.graceful => {
                *this.graceful = true;
                this.conn.as_mut().graceful();
            }
            _ => {}
        }
        this.conn.poll(cx).map(drop)
    }
}

/// Samples `activity` every quarter of the shorter timeout and tells the
/// connection to close or to shut down gracefully.
async fn watchdog(activity: Arc<Activity>, limits: Limits, mut stop: watch::Receiver<bool>) {
    let shortest = limits.head.map_or(limits.idle, |h| h.min(limits.idle));
    let mut tick = sampler(shortest / 4);
    let mut quiet_since = Instant::now();
    // Stopping, HTTP/1.1: since when the connection has been quiet.
    let mut lingering: Option<Instant> = None;
    // Already stopping when the connection came in: `changed` would not say.
    let mut stopping = *stop.borrow_and_update();
    if stopping {
        drain(&activity, &limits, &mut tick, &mut lingering);
    }
    // The pending head being timed: requests begun when it was first seen,
    // and when that was.
    let mut head_seen: Option<(usize, Instant)> = None;
    loop {
        tokio::select! {
            // A closed sender counts as a stop, as `wait_for` reports it.
            changed = stop.changed(), if !stopping => {
                if changed.is_err() || *stop.borrow() {
                    stopping = true;
                    drain(&activity, &limits, &mut tick, &mut lingering);
                }
            }
            now = tick.tick() => {
                let now = now.into_std();
                // A request in flight is not idle, however quiet it is.
                if activity.moved.swap(false, Ordering::Relaxed)
                    || activity.in_flight.load(Ordering::Relaxed) > 0
                {
                    quiet_since = now;
                    activity.quiet_since.store(clock_ms(now), Ordering::Relaxed);
                    lingering = lingering.map(|_| now);
                } else if now.duration_since(quiet_since) >= limits.idle {
                    tracing::debug!("closing idle client connection");
                    return activity.tell(CLOSE);
                } else if lingering.is_some_and(|since| now.duration_since(since) >= DRAIN_LINGER) {
                    lingering = None;
                    activity.tell(GRACEFUL);
                }
                let Some(head_limit) = limits.head else { continue };
                if !activity.head_pending.load(Ordering::Relaxed) {
                    head_seen = None;
                    continue;
                }
                let begun = activity.begun.load(Ordering::Relaxed);
                match head_seen {
                    Some((b, since)) if b == begun => {
                        if now.duration_since(since) >= head_limit {
                            tracing::debug!("closing client connection: request head too slow");
                            return activity.tell(CLOSE);
                        }
                    }
                    _ => head_seen = Some((begun, now)),
                }
            }
        }
    }
}

fn sampler(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// The process is stopping: a connection that may linger is told
/// [`DRAIN`] and sampled often enough to end the linger on time; any other
/// (HTTP/2, the plain listeners) finishes at once.
fn drain(
    activity: &Activity,
    limits: &Limits,
    tick: &mut tokio::time::Interval,
    lingering: &mut Option<Instant>,
) {
    if !limits.linger {
        return activity.tell(GRACEFUL);
    }
    activity.tell(DRAIN);
    *lingering = Some(Instant::now());
    *tick = sampler(DRAIN_LINGER / 4);
}
