//! HTTP/2 streams on a one-thread runtime run on their connection's task,
//! not a task each.
//!
//! hyper hands every stream (its request's pipeline, then its response
//! body) to an executor. With tokio's, each stream is a task of its own:
//! an aligned allocation, a registration with the runtime and a wake-up
//! and a task switch to start and to finish it. On the current-thread
//! runtime (one CPU, `src/main.rs`) [`StreamExec`] only queues the stream
//! and [`WithStreams`] polls the queued and running streams each time it
//! polls the connection, so a stream's response and the connection's write
//! of it happen in the same task. On a runtime with several workers each
//! stream stays a task, so one connection's streams (a load balancer
//! multiplexing many users) can run on every worker at once.
//!
//! Contract, as with separate tasks: a panic in one stream ends that
//! stream only (it is reset, as when its task panicked); when the
//! connection ends, streams still running finish on a task of their own,
//! so the connection's resources (its TLS session, its admission ticket)
//! are released when the connection ends, not when its slowest upstream
//! answers.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::future::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::runtime::RuntimeFlavor;

use super::supervise::Graceful;

type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

/// hyper's executor for one connection's streams: on a current-thread
/// runtime it queues them for [`WithStreams`] (hyper calls it while that
/// future polls the connection, for a new stream, or a stream, for its
/// upgrade, so every queued stream is picked up in the same poll);
/// otherwise it spawns each as a task.
#[derive(Clone)]
pub(super) struct StreamExec(Option<Arc<Mutex<Vec<Stream>>>>);

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        let Some(queue) = &self.0 else {
            tokio::spawn(fut);
            return;
        };
        // A panic is the stream's own end; dropping the stream resets it.
        let fut = AssertUnwindSafe(fut).catch_unwind().map(drop);
        queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::pin(fut));
    }
}

impl StreamExec {
    /// Queues on the current-thread runtime, spawns on any other.
    pub(super) fn new() -> Self {
        let one_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread);
        StreamExec(one_thread.then(Default::default))
    }

    fn take_queued(&self, into: &mut FuturesUnordered<Stream>) -> bool {
        let Some(queue) = &self.0 else {
            return false;
        };
        let mut queued = queue.lock().unwrap_or_else(|p| p.into_inner());
        let any = !queued.is_empty();
        into.extend(queued.drain(..));
        any
    }
}

pin_project_lite::pin_project! {
    /// An HTTP/2 connection and the streams it started.
    pub(super) struct WithStreams<C> {
        #[pin]
        conn: C,
        exec: StreamExec,
        running: FuturesUnordered<Stream>,
    }

    // However the connection ends (hyper's connection finished, or the
    // watchdog dropped it), streams still running go on by themselves, as
    // tasks of their own did.
    impl<C> PinnedDrop for WithStreams<C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.exec.take_queued(this.running);
            if this.running.is_empty() {
                return;
            }
            let mut rest = std::mem::take(this.running);
            // No runtime only when it is being torn down: the streams go too.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { while rest.next().await.is_some() {} });
            }
        }
    }
}

impl<C> WithStreams<C> {
    pub(super) fn new(conn: C, exec: StreamExec) -> Self {
        WithStreams {
            conn,
            exec,
            running: FuturesUnordered::new(),
        }
    }
}

impl<C: Future> Future for WithStreams<C> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let done = this.conn.as_mut().poll(cx).is_ready();
        // Streams the connection queued, and any the streams queued.
        this.exec.take_queued(this.running);
        loop {
            while let Poll::Ready(Some(())) = this.running.poll_next_unpin(cx) {}
            if !this.exec.take_queued(this.running) {
                break;
            }
        }
        match done {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }
}

impl<C: Graceful> Graceful for WithStreams<C> {
    fn graceful(self: Pin<&mut Self>) {
        self.project().conn.graceful();
    }
}

#[cfg(test)]
mod tests {
    use hyper::rt::Executor;
    use tokio::sync::oneshot;

    use super::*;

    #[tokio::test]
    async fn a_panicking_stream_ends_alone() {
        let exec = StreamExec::new();
        let (go, wait) = oneshot::channel::<()>();
        let (done, finished) = oneshot::channel::<()>();
        exec.execute(async { panic!("one stream's bug") });
        exec.execute(async move {
            wait.await.ok();
            done.send(()).ok();
        });
        let (end, ended) = oneshot::channel::<()>();
        let conn = async move {
            ended.await.ok();
        };
        let driven = tokio::spawn(WithStreams::new(conn, exec));
        go.send(()).unwrap();
        finished.await.expect("the other stream ran to its end");
        end.send(()).unwrap();
        driven.await.expect("the connection itself did not panic");
    }

    #[tokio::test]
    async fn streams_outlive_their_connection() {
        let exec = StreamExec::new();
        let (go, wait) = oneshot::channel::<()>();
        let (done, finished) = oneshot::channel::<()>();
        exec.execute(async move {
            wait.await.ok();
            done.send(()).ok();
        });
        // The connection ends at once; its stream is still waiting.
        WithStreams::new(async {}, exec).await;
        go.send(()).unwrap();
        finished
            .await
            .expect("the stream went on after its connection ended");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_several_workers_each_stream_is_a_task() {
        let exec = StreamExec::new();
        let (done, finished) = oneshot::channel::<()>();
        exec.execute(async move {
            done.send(()).ok();
        });
        // Nothing polls a `WithStreams`: the stream runs by itself.
        finished.await.expect("the stream ran as a task of its own");
        assert!(!exec.take_queued(&mut FuturesUnordered::new()));
    }
}
