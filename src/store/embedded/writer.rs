//! The one writer: a std thread that owns the database connection and
//! commits in groups, so no disk I/O ever runs on the runtime.
//!
//! Callers change the memory map first, then [`Writer::mark`] the keys
//! they changed. The writer takes every dirty key at once and writes what
//! memory holds for each *at that moment* (the session, or its deletion),
//! in one transaction. Writing the current state rather than replaying
//! operations means marks may arrive in any order and a write racing a
//! logout can never bring a session back to the file.
//!
//! A mark is either urgent (the caller then awaits [`Writer::durable`]:
//! the writer commits at once, taking along everything else dirty) or lazy
//! (committed within [`LAZY`]). Batches are numbered; a caller's ticket is
//! the batch its mark joined. A failed batch's keys go back into the
//! dirty set, so the next successful commit carries them: success of batch
//! N therefore means every batch up to N is on disk, and a failing disk
//! (full, say) is retried every [`RETRY`] and recovers by itself.

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

#[derive(Default)]
struct Queue {
    dirty: HashSet<SessionKey>,
    /// The batch that marks join now.
    batch: u64,
    /// A caller waits for `batch`: commit it at once.
    urgent: bool,
    /// When the oldest lazy mark (or failed batch) in `dirty` arrived.
    since: Option<Instant>,
    stop: bool,
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

    /// Waits for the next batch to commit: now when urgent or stopping,
    /// else when the oldest lazy mark is due. `None` once stopped and empty.
    fn next(&self, failing: bool) -> Option<(Vec<SessionKey>, u64, bool)> {
        let mut q = self.lock();
        while !(q.urgent || q.stop) {
            let Some(since) = q.since else {
                q = self.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            let due = since + if failing { RETRY } else { LAZY };
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
        if q.stop && q.dirty.is_empty() && !q.urgent {
            return None;
        }
        let keys: Vec<SessionKey> = q.dirty.drain().collect();
        let batch = q.batch;
        q.batch += 1;
        q.urgent = false;
        q.since = None;
        Some((keys, batch, q.stop))
    }

    /// Puts a failed batch's keys back, to be retried.
    fn requeue(&self, keys: Vec<SessionKey>) {
        let mut q = self.lock();
        q.dirty.extend(keys);
        q.since.get_or_insert_with(Instant::now);
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

    /// Marks keys changed in memory; returns the batch they joined.
    pub fn mark(&self, keys: &[SessionKey], urgent: bool) -> u64 {
        let mut q = self.shared.lock();
        q.dirty.extend(keys.iter().copied());
        let wake = if urgent {
            !std::mem::replace(&mut q.urgent, true)
        } else if q.since.is_none() && !keys.is_empty() {
            q.since = Some(Instant::now());
            true
        } else {
            false
        };
        let ticket = q.batch;
        drop(q);
        if wake {
            self.shared.wake.notify_one();
        }
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
