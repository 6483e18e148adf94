//! The one writer: a std thread that owns the database connection and
//! commits in groups, so no disk I/O ever runs on the runtime.
//!
//! Callers change the memory map first, then [`Writer::mark`] the keys
//! they changed. The writer takes dirty keys in batches and writes what
//! memory holds for each *at that moment* (the session, or its deletion),
//! one transaction per batch. Writing the current state rather than
//! replaying operations means marks may arrive in any order and a write
//! racing a logout can never bring a session back to the file.
//!
//! A mark is either urgent (the caller then awaits [`Writer::durable`]:
//! the writer starts a batch at once, and every urgent key marked
//! meanwhile joins the next one: a group commit) or lazy (committed within
//! [`LAZY`], at most [`CAP`] per batch so a backlog never holds a login up
//! for long). Batches are numbered; a caller's ticket is the batch its mark
//! joined. A failed batch's keys are carried by every later batch until one
//! succeeds: success of batch N therefore means every urgent key of every
//! batch up to N is on disk, and a failing disk (full, say) is retried
//! every [`RETRY`] and recovers by itself.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::watch;

use super::{block_on, db};
use crate::session::SessionKey;
use crate::store::{MemoryStore, SessionStore, StoreError};

/// How long a lazy change may wait for its commit (SPEC §7.4: at most the
/// last second is lost; this leaves room for the commit itself).
const LAZY: Duration = Duration::from_millis(500);
/// How often a failing disk is tried again when no caller is waiting.
const RETRY: Duration = Duration::from_secs(1);

/// A commit that failed; shared by every caller whose batch it was.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct WriteError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

/// Dirty keys, in three kinds: the ones a caller waits for, the lazy ones,
/// and the ones of a failed batch (carried by every batch until one
/// succeeds, so a success covers every earlier urgent key).
#[derive(Default)]
struct Queue {
    urgent: Vec<SessionKey>,
    lazy: HashSet<SessionKey>,
    retry: HashSet<SessionKey>,
    /// The batch that marks join now.
    batch: u64,
    /// A caller waits for `batch`: commit it at once.
    waiting: bool,
    /// `flush`: this batch takes every lazy key, not just [`CAP`].
    everything: bool,
    /// When the oldest lazy mark still in `lazy` arrived.
    lazy_since: Option<Instant>,
    /// When the last batch failed (`retry` is due [`RETRY`] later).
    failed_at: Option<Instant>,
    stop: bool,
}

/// At most this many lazy keys per transaction, so that a backlog (a purge
/// of many sessions, a burst of new ones) never holds a login's commit up
/// for long: a batch takes a few tens of milliseconds at most.
const CAP: usize = 2_000;
/// At most this many lazy keys ride along in a batch a caller waits for.
const CAP_WAITING: usize = 200;

impl Queue {
    /// When the next batch is due without a waiting caller.
    fn due(&self, failing: bool) -> Option<Instant> {
        let lazy = self
            .lazy_since
            .map(|t| t + if failing { RETRY } else { LAZY });
        let retry = self.failed_at.map(|t| t + RETRY);
        lazy.into_iter().chain(retry).min()
    }

    /// Takes the next batch: every retried and urgent key and up to [`CAP`]
    /// lazy ones ([`CAP_WAITING`] when a caller waits; all of them for a
    /// flush or at the end).
    fn take(&mut self) -> Vec<SessionKey> {
        let mut keys: Vec<SessionKey> = self.retry.drain().collect();
        keys.append(&mut self.urgent);
        let cap = if self.everything || self.stop {
            usize::MAX
        } else if self.waiting {
            CAP_WAITING
        } else {
            CAP
        };
        if self.lazy.len() <= cap {
            keys.extend(self.lazy.drain());
            self.lazy_since = None;
        } else {
            let some: Vec<SessionKey> = self.lazy.iter().take(cap).copied().collect();
            for k in &some {
                self.lazy.remove(k);
            }
            keys.extend(some);
        }
        self.failed_at = None;
        self.waiting = false;
        self.everything = false;
        keys
    }

    fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.lazy.is_empty() && self.retry.is_empty()
    }
}

/// What has been committed: the last batch that succeeded (all before it
/// did too) and the last that failed, with its error.
#[derive(Clone, Default)]
struct Progress {
    durable: u64,
    failed: u64,
    error: Option<Arc<WriteError>>,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every critical section leaves the queue whole, so a poisoned lock
        // is still good.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the next batch: at once when a caller waits or on stop,
    /// else when lazy marks or a failed batch are due. `None` once stopped
    /// with nothing left.
    fn next(&self, failing: bool) -> Option<(Vec<SessionKey>, u64, bool)> {
        let mut q = self.lock();
        while !(q.waiting || q.stop) {
            let Some(due) = q.due(failing) else {
                q = self.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            let now = Instant::now();
            if now >= due {
                break;
            }
            q = self
                .wake
                .wait_timeout(q, due - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        if q.stop && q.is_empty() && !q.waiting {
            return None;
        }
        let keys = q.take();
        let batch = q.batch;
        q.batch += 1;
        Some((keys, batch, q.stop))
    }

    /// Keeps a failed batch's keys for the next batch.
    fn requeue(&self, keys: Vec<SessionKey>) {
        let mut q = self.lock();
        q.retry.extend(keys);
        q.failed_at = Some(Instant::now());
    }
}

pub struct Writer {
    shared: Arc<Shared>,
    progress: watch::Receiver<Progress>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread on `conn`, reading sessions from `mem`.
    pub fn spawn(
        conn: Connection,
        mem: Arc<MemoryStore>,
        path: &Path,
    ) -> Result<Writer, std::io::Error> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                batch: 1,
                ..Queue::default()
            }),
            wake: Condvar::new(),
        });
        let (tx, progress) = watch::channel(Progress::default());
        let (s, path) = (Arc::clone(&shared), path.to_path_buf());
        let thread = std::thread::Builder::new()
            .name("cloakroom-store".into())
            .spawn(move || run(&s, &tx, conn, &mem, &path))?;
        Ok(Writer {
            shared,
            progress,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Marks keys changed in memory; returns the batch they joined. With
    /// `urgent` the caller is about to wait for that batch: it starts now.
    pub fn mark(&self, keys: &[SessionKey], urgent: bool) -> u64 {
        let mut q = self.shared.lock();
        let wake = if urgent {
            for k in keys {
                q.lazy.remove(k);
            }
            q.urgent.extend_from_slice(keys);
            !std::mem::replace(&mut q.waiting, true)
        } else {
            q.lazy.extend(keys.iter().copied());
            q.lazy_since.is_none() && !keys.is_empty() && {
                q.lazy_since = Some(Instant::now());
                true
            }
        };
        let ticket = q.batch;
        drop(q);
        if wake {
            self.shared.wake.notify_one();
        }
        ticket
    }

    /// Like an urgent [`mark`](Self::mark) of every key still pending: the
    /// batch takes all of them (SIGTERM's flush).
    pub fn mark_everything(&self) -> u64 {
        let mut q = self.shared.lock();
        q.waiting = true;
        q.everything = true;
        let ticket = q.batch;
        drop(q);
        self.shared.wake.notify_one();
        ticket
    }

    /// Waits until batch `ticket` is on disk; its error when it failed.
    pub async fn durable(&self, ticket: u64, op: &'static str) -> Result<(), StoreError> {
        let mut rx = self.progress.clone();
        let failed = match rx
            .wait_for(|p| p.durable >= ticket || p.failed >= ticket)
            .await
        {
            Ok(p) if p.durable >= ticket => return Ok(()),
            Ok(p) => p.error.clone(),
            Err(_) => None,
        };
        Err(match failed {
            Some(e) => StoreError::unavailable(op, e),
            None => StoreError::unavailable(op, "the session database is closed"),
        })
    }

    /// Commits what is dirty and ends the thread.
    pub fn stop(&self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            if t.join().is_err() {
                tracing::error!("the session store writer panicked");
            }
        }
    }
}

fn run(
    shared: &Shared,
    progress: &watch::Sender<Progress>,
    mut conn: Connection,
    mem: &MemoryStore,
    path: &Path,
) {
    let mut failing = false;
    while let Some((keys, batch, last)) = shared.next(failing) {
        let rows: Vec<_> = keys
            .iter()
            .map(|k| (*k, block_on(mem.load(k)).ok().flatten()))
            .collect();
        match db::write(&mut conn, &rows) {
            Ok(()) => {
                if failing {
                    tracing::info!(path = %path.display(), "session store writes succeed again");
                }
                failing = false;
                progress.send_modify(|p| p.durable = batch);
            }
            Err(source) => {
                // Counted here too: a failing disk shows in the metric even
                // when no caller waits (the callers that do count their own).
                crate::metrics::get().store_errors.inc();
                let e = Arc::new(WriteError {
                    path: path.to_path_buf(),
                    source,
                });
                if last {
                    tracing::error!(error = %e, lost = keys.len(), "session changes could not be written at shutdown");
                } else if !failing {
                    tracing::warn!(error = %e, pending = keys.len(), "session store writes fail; logins and logouts get 503 until they succeed (retried every second)");
                }
                failing = true;
                shared.requeue(keys);
                progress.send_modify(|p| {
                    p.failed = batch;
                    p.error = Some(e);
                });
            }
        }
        if last {
            break;
        }
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, path = %path.display(), "closing the session database failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<SessionKey> {
        (0..n)
            .map(|i| {
                let mut k = [0u8; 32];
                k[..8].copy_from_slice(&(i as u64).to_le_bytes());
                SessionKey(k)
            })
            .collect()
    }

    #[test]
    fn a_batch_takes_every_urgent_and_retried_key_and_at_most_cap_lazy_ones() {
        let lazy = 2 * CAP + 10;
        let all = keys(lazy + 20);
        let mut q = Queue::default();
        q.lazy.extend(all[..lazy].iter().copied());
        q.lazy_since = Some(Instant::now());
        q.retry.extend(all[lazy..lazy + 10].iter().copied());
        q.urgent.extend_from_slice(&all[lazy + 10..]);
        q.waiting = true;
        let batch = q.take();
        assert_eq!(batch.len(), 20 + CAP_WAITING);
        for k in &all[lazy..] {
            assert!(batch.contains(k));
        }
        assert!(!q.waiting);
        // The rest of the backlog stays due; lazy batches take more of it.
        assert!(q.due(false).is_some_and(|d| d <= Instant::now() + LAZY));
        assert_eq!(q.take().len(), CAP);
        assert_eq!(q.take().len(), lazy - CAP_WAITING - CAP);
        assert!(q.is_empty() && q.due(false).is_none());
    }

    #[test]
    fn s2_a_flush_takes_every_lazy_key() {
        let mut q = Queue::default();
        q.lazy.extend(keys(3 * CAP));
        q.everything = true;
        assert_eq!(q.take().len(), 3 * CAP);
        assert!(q.is_empty());
    }

    #[test]
    fn a_failed_batch_is_retried_after_a_pause() {
        let mut q = Queue {
            failed_at: Some(Instant::now()),
            ..Queue::default()
        };
        q.retry.extend(keys(3));
        let due = q.due(true).unwrap();
        assert!(due >= Instant::now() + RETRY - Duration::from_millis(100));
    }
}
