//! Graceful shutdown: a flag every accept loop and connection watches, and a
//! count of live connections that shutdown waits on (up to the grace).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

#[derive(Clone, Debug)]
pub struct Drain {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    flag: watch::Sender<bool>,
    live: AtomicUsize,
    /// The most connections live at once since [`Drain::take_peak`].
    peak: AtomicUsize,
    idle: Notify,
}

/// Held by each live connection.
pub struct ConnGuard {
    inner: Arc<Inner>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.inner.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                flag: watch::channel(false).0,
                live: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.inner.flag.subscribe()
    }

    pub fn track(&self) -> ConnGuard {
        let live = self.inner.live.fetch_add(1, Ordering::AcqRel) + 1;
        self.inner.peak.fetch_max(live, Ordering::Relaxed);
        ConnGuard {
            inner: self.inner.clone(),
        }
    }

    /// True once [`shutdown`](Self::shutdown) has begun.
    pub fn draining(&self) -> bool {
        *self.inner.flag.borrow()
    }

    pub fn live(&self) -> usize {
        self.inner.live.load(Ordering::Acquire)
    }

    /// The most connections live at once since the last call, which starts
    /// the next count from the connections live now.
    pub fn take_peak(&self) -> usize {
        let peak = self.inner.peak.swap(self.live(), Ordering::Relaxed);
        peak.max(self.live())
    }

    /// Stops accepting, asks connections to finish, waits up to `grace`.
    /// Returns the number of connections still open when it gave up.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.inner.flag.send_replace(true);
        let wait = async {
            loop {
                let notified = self.inner.idle.notified();
                if self.live() == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(grace, wait).await;
        self.live()
    }
}
