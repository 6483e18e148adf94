//! HTTP/2 client writes held to the end of the scheduler's round.
//!
//! On one CPU (the current-thread runtime) every connection with work is
//! polled in turn, and each used to write to its client as soon as its
//! responses were ready. On loopback, and wherever the client keeps up with
//! the proxy, the client had read the last write and gone back to sleep by
//! the time the next came: each write then paid for waking it (in the
//! kernel, on the proxy's CPU; in a virtual machine an inter-processor
//! interrupt is a trip to the hypervisor). Traced on the shared rig's
//! HTTP/2 scenario (`sched:sched_waking`, see `docs/performance.md`), half
//! of cloakroom's client writes woke the load generator; HAProxy, which
//! reads everything and then writes everything in each turn of its loop,
//! woke it on one write in six.
//!
//! [`Held`] turns the first write of a poll into `Pending` and wakes the
//! task, which goes to the back of the run queue: the connection writes
//! after the other connections ready in this round have read, so writes
//! leave close together. [`Corked`] opens the [`Gate`] for the next poll,
//! and everything waiting goes out, in one write as before. Nothing is
//! buffered here: the HTTP/2 codec keeps its frames until a write succeeds.
//! A flush is never held: the codec flushes at the end of every poll, and
//! holding that would wake an idle connection for ever.
//!
//! At most [`MAX_HELD`] connections of a thread wait at once; past that a
//! write goes at once. Holding every connection's writes to one round made
//! the client read every response at once and then send every next
//! request at once, while the proxy, with nothing left to do, slept; its
//! core was idle 5 % of the time on the rig, and waking a sleeping virtual
//! CPU takes 50–250 µs. A batch of six connections (sixty responses in the
//! rig's sixteen connections of ten streams, about what HAProxy writes in
//! one turn of its loop) kept the core busy and saved the wake-ups: in six
//! interleaved rig-like pairs, a median 7 % less CPU per request and 8 %
//! more requests per second than writing at once (`docs/performance.md`).
//!
//! The IO must be polled only inside its [`Corked`] connection's poll
//! (HTTP/2's is: the codec owns it), or a held write would find the gate
//! shut at every wake. HTTP/1.1 is not corked: a connection has one
//! response at a time (the rig saw no fewer wake-ups), and an upgrade
//! moves its IO into a tunnel that no [`Corked`] polls.
//!
//! With several workers there is no round to wait for: no gate.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::supervise::Graceful;

/// A new connection's gate: `None` (writes never held) on a runtime with
/// several workers.
pub(super) fn gate() -> Option<Arc<Gate>> {
    super::on_one_thread().then(|| Arc::new(Gate::default()))
}

/// How many connections of one thread may wait for the end of the round.
pub(super) const MAX_HELD: usize = 6;

thread_local! {
    /// Connections of this thread whose write waits.
    static HOLDING: Cell<usize> = const { Cell::new(0) };
}

/// Whether writes may go out in this poll of the connection's task.
#[derive(Debug, Default)]
pub(super) struct Gate {
    /// A write was held since the last poll.
    held: AtomicBool,
    /// This poll may write.
    open: AtomicBool,
}

impl Gate {
    /// Called as the connection's poll begins: open when a write waits.
    fn enter(&self) {
        let held = self.held.swap(false, Relaxed);
        if held {
            release();
        }
        self.open.store(held, Relaxed);
    }

    /// Called as the connection's poll ends.
    fn leave(&self) {
        self.open.store(false, Relaxed);
    }

    /// Ready when the write may go; else holds it until the next poll.
    fn poll_pass(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.open.load(Relaxed) {
            return Poll::Ready(());
        }
        // Waiting already (a second attempt in the same poll), or enough
        // connections wait: counted once, and never more than the bound.
        if !self.held.load(Relaxed) {
            let room = HOLDING.with(|n| {
                let room = n.get() < MAX_HELD;
                n.set(n.get() + usize::from(room));
                room
            });
            if !room {
                return Poll::Ready(());
            }
            self.held.store(true, Relaxed);
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A connection dropped while its write waits gives its place back.
impl Drop for Gate {
    fn drop(&mut self) {
        if *self.held.get_mut() {
            release();
        }
    }
}

fn release() {
    HOLDING.with(|n| n.set(n.get().saturating_sub(1)));
}

/// An IO whose writes wait for [`Gate`]; `None` never waits.
pub(super) struct Held<T> {
    inner: T,
    gate: Option<Arc<Gate>>,
}

impl<T> Held<T> {
    pub(super) fn new(inner: T, gate: Option<Arc<Gate>>) -> Self {
        Held { inner, gate }
    }

    fn poll_pass(&self, cx: &mut Context<'_>) -> Poll<()> {
        match &self.gate {
            Some(gate) => gate.poll_pass(cx),
            None => Poll::Ready(()),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Held<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Held<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_pass(cx));
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_pass(cx));
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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

pin_project_lite::pin_project! {
    /// A connection whose IO is [`Held`] by `gate`: each poll tells the
    /// gate where it begins and ends.
    pub(super) struct Corked<C> {
        #[pin]
        conn: C,
        gate: Option<Arc<Gate>>,
    }
}

impl<C> Corked<C> {
    pub(super) fn new(conn: C, gate: Option<Arc<Gate>>) -> Self {
        Corked { conn, gate }
    }
}

impl<C: Future> Future for Corked<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.project();
        let Some(gate) = this.gate else {
            return this.conn.poll(cx);
        };
        gate.enter();
        let r = this.conn.poll(cx);
        gate.leave();
        r
    }
}

impl<C: Graceful> Graceful for Corked<C> {
    fn graceful(self: Pin<&mut Self>) {
        self.project().conn.graceful()
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::sync::atomic::AtomicUsize;

    use futures_util::task::{waker, ArcWake};
    use tokio::io::AsyncReadExt;

    use super::*;

    struct Count(AtomicUsize);

    impl ArcWake for Count {
        fn wake_by_ref(this: &Arc<Self>) {
            this.0.fetch_add(1, Relaxed);
        }
    }

    fn poll_counting<F: Future + Unpin>(f: &mut F) -> (Poll<F::Output>, usize) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = waker(count.clone());
        let r = Pin::new(f).poll(&mut Context::from_waker(&waker));
        (r, count.0.load(Relaxed))
    }

    #[tokio::test]
    async fn a_write_waits_one_poll_and_wakes_its_task() {
        let gate = Some(Arc::new(Gate::default()));
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = Held::new(near, gate.clone());
        let mut write = Corked::new(
            poll_fn(move |cx| Pin::new(&mut io).poll_write(cx, b"hi")),
            gate,
        );
        let (r, wakes) = poll_counting(&mut write);
        assert!(r.is_pending());
        assert_eq!(wakes, 1, "the held write must wake its task");
        let (r, wakes) = poll_counting(&mut write);
        assert!(matches!(r, Poll::Ready(Ok(2))), "{r:?}");
        assert_eq!(wakes, 0);
        let mut got = [0; 2];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hi");
    }

    #[tokio::test]
    async fn an_open_poll_writes_everything() {
        let gate = Some(Arc::new(Gate::default()));
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = Held::new(near, gate.clone());
        let mut step = 0;
        // Writes twice in the poll the gate opens: both go.
        let mut writes = Corked::new(
            poll_fn(move |cx| {
                std::task::ready!(Pin::new(&mut io).poll_write(cx, b"a"))?;
                step += 1;
                std::task::ready!(Pin::new(&mut io).poll_write(cx, b"b"))?;
                Poll::Ready(io::Result::Ok(step))
            }),
            gate,
        );
        assert!(poll_counting(&mut writes).0.is_pending());
        let (r, wakes) = poll_counting(&mut writes);
        assert!(matches!(r, Poll::Ready(Ok(1))), "{r:?}");
        assert_eq!(wakes, 0);
        let mut got = [0; 2];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ab");
    }

    #[tokio::test]
    async fn a_flush_is_never_held() {
        let gate = Some(Arc::new(Gate::default()));
        let (near, _far) = tokio::io::duplex(64);
        let mut io = Held::new(near, gate.clone());
        let mut flush = Corked::new(poll_fn(move |cx| Pin::new(&mut io).poll_flush(cx)), gate);
        let (r, wakes) = poll_counting(&mut flush);
        assert!(matches!(r, Poll::Ready(Ok(()))), "{r:?}");
        assert_eq!(wakes, 0, "an idle connection must not wake itself");
    }

    #[tokio::test]
    async fn without_a_gate_writes_go_at_once() {
        let (near, _far) = tokio::io::duplex(64);
        let mut io = Held::new(near, None);
        let mut write = Corked::new(
            poll_fn(move |cx| Pin::new(&mut io).poll_write(cx, b"x")),
            None,
        );
        let (r, wakes) = poll_counting(&mut write);
        assert!(matches!(r, Poll::Ready(Ok(1))), "{r:?}");
        assert_eq!(wakes, 0);
    }

    /// A write through a new gate, polled once: pending when held.
    fn try_write(gate: &Arc<Gate>) -> (bool, Held<tokio::io::DuplexStream>) {
        let (near, _far) = tokio::io::duplex(64);
        let mut io = Held::new(near, Some(gate.clone()));
        let mut write = Corked::new(
            poll_fn(|cx| Pin::new(&mut io).poll_write(cx, b"x")),
            Some(gate.clone()),
        );
        let held = poll_counting(&mut write).0.is_pending();
        drop(write);
        (held, io)
    }

    #[test]
    fn at_most_max_held_connections_wait_and_a_dropped_one_frees_its_place() {
        // Its own thread: the count is per thread.
        std::thread::spawn(|| {
            let gates: Vec<_> = (0..=MAX_HELD).map(|_| Arc::new(Gate::default())).collect();
            let mut ios = Vec::new();
            for (i, gate) in gates.iter().enumerate() {
                let (held, io) = try_write(gate);
                assert_eq!(held, i < MAX_HELD, "connection {i}");
                ios.push(io);
            }
            // The first waiting connection writes (its next poll), and
            // another may wait in its place.
            gates[0].enter();
            gates[0].leave();
            let late = Arc::new(Gate::default());
            assert!(try_write(&late).0);
            assert!(!try_write(&Arc::new(Gate::default())).0);
            // A waiting connection that is dropped frees its place too.
            drop(ios.remove(1));
            let mut gates = gates;
            drop(gates.remove(1));
            let (again, _io) = try_write(&Arc::new(Gate::default()));
            assert!(again);
            assert!(!try_write(&Arc::new(Gate::default())).0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn one_worker_gets_a_gate_several_do_not() {
        let one = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(one.block_on(async { gate() }).is_some());
        let several = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        assert!(several.block_on(async { gate() }).is_none());
    }
}
