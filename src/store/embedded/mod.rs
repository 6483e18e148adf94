//! The embedded backend (SPEC §7.4): sessions survive a restart.
//!
//! A [`MemoryStore`] stays the hot set and answers every read: on the
//! request path nothing touches the disk. Each change is made there
//! first, then its keys are marked for the [`writer`] thread, which
//! writes them into one SQLite file ([`db`]) in group commits.
//!
//! Durability, as §7.4 asks:
//!
//! | call | returns after its commit is on disk |
//! | --- | --- |
//! | `create` of a session with an identity (a login) | yes |
//! | `update` that changes the identity | yes |
//! | `rotate` (login, identity change), `delete` (logout, expiry, revocation) | yes |
//! | `touch`, anonymous `create`, other `update`s (jar changes), eviction, purge | no: committed within a second |
//!
//! When a commit a call waits for fails (a full disk, say), the call
//! answers [`StoreError::Unavailable`] (the request gets 503) and a change
//! no cookie will name is undone in memory: a login that was not stored
//! gets no session, and a rotation that was not stored moves the session
//! back under its old key. Sessions already held keep being served from
//! memory, and the writer retries until the disk takes writes again.
//!
//! Start-up reads the whole file into memory before the proxy serves
//! (docs/performance.md: about a second for 1,000,000 sessions), so a
//! session missing from memory is missing from the file too. Sessions
//! that ended while the proxy was down are not loaded and are deleted
//! from the file.
//!
//! `max_sessions`, eviction and purge are the memory store's (its indexes
//! cost what they remove); it answers which sessions went, and those are
//! removed from the file as well.

mod db;
#[cfg(test)]
mod tests;
mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use super::{Keyed, MemoryStore, OpenError, SessionStore, StoreError};
use crate::session::{now_ms, Session, SessionKey};
use writer::Writer;

pub use db::DbError;

pub struct EmbeddedStore {
    mem: Arc<MemoryStore>,
    writer: Writer,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens the database at `path` (created when missing) and loads every
    /// live session. Blocks: call it before serving, or off the runtime.
    pub fn open(path: &Path, max_sessions: usize) -> Result<EmbeddedStore, OpenError> {
        let fail = |source: DbError| OpenError::Embedded {
            path: path.to_path_buf(),
            source,
        };
        let started = Instant::now();
        let conn = db::open(path).map_err(fail)?;
        // Unbounded while loading: every stored session comes back, and the
        // next create evicts down to the cap.
        let mem = Arc::new(MemoryStore::new(usize::MAX));
        let ended = db::load(&conn, now_ms(), |key, session| {
            // The memory store never fails a create below its cap.
            let _ = block_on(mem.create(&key, &Arc::new(session)));
        })
        .map_err(fail)?;
        let loaded = block_on(mem.count()).unwrap_or(0);
        mem.set_max_sessions(max_sessions);
        let writer =
            Writer::spawn(conn, Arc::clone(&mem), path).map_err(|e| fail(DbError::Create(e)))?;
        writer.mark(&ended, false);
        tracing::info!(
            path = %path.display(),
            sessions = loaded,
            ended = ended.len(),
            ms = started.elapsed().as_millis() as u64,
            "session store loaded"
        );
        Ok(EmbeddedStore {
            mem,
            writer,
            path: path.to_path_buf(),
        })
    }
}

impl Drop for EmbeddedStore {
    /// Commits what is pending and closes the file.
    fn drop(&mut self) {
        self.writer.stop();
    }
}

impl SessionStore for EmbeddedStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<Session>>, StoreError> {
        self.mem.load(key).await
    }

    async fn create(&self, key: &SessionKey, session: &Arc<Session>) -> Result<(), StoreError> {
        let evicted = self.mem.create_evicting(key, session)?;
        if !evicted.is_empty() {
            self.writer.mark(&evicted, false);
        }
        let login = session.identity.is_some();
        let ticket = self.writer.mark(&[*key], login);
        if login {
            if let Err(e) = self.writer.durable(ticket, "create").await {
                // No cookie will name it: take it back out.
                self.mem.delete(key).await?;
                self.writer.mark(&[*key], false);
                return Err(e);
            }
        }
        Ok(())
    }

    async fn update(&self, key: &SessionKey, session: &Arc<Session>) -> Result<bool, StoreError> {
        let before = self.mem.load(key).await?;
        if !self.mem.update(key, session).await? {
            return Ok(false);
        }
        let login = before.is_some_and(|b| b.identity != session.identity);
        let ticket = self.writer.mark(&[*key], login);
        if login {
            self.writer.durable(ticket, "update").await?;
        }
        Ok(true)
    }

    async fn touch(
        &self,
        key: &SessionKey,
        last_seen: u64,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let touched = self.mem.touch(key, last_seen, expires_at).await?;
        if touched {
            self.writer.mark(&[*key], false);
        }
        Ok(touched)
    }

    async fn rotate(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        session: &Arc<Session>,
    ) -> Result<bool, StoreError> {
        let before = self.mem.load(old).await?;
        if !self.mem.rotate(old, new, session).await? {
            return Ok(false);
        }
        let ticket = self.writer.mark(&[*old, *new], true);
        if let Err(e) = self.writer.durable(ticket, "rotate").await {
            // The response will not name the new key and the file still
            // holds the old one: move the session back, so its cookie works.
            if let Some(before) = before {
                self.mem.rotate(new, old, &before).await?;
            }
            self.writer.mark(&[*old, *new], false);
            return Err(e);
        }
        Ok(true)
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let existed = self.mem.delete(key).await?;
        // Waits even when memory had no such session: a logout retried
        // after a failed commit must still reach the file.
        let ticket = self.writer.mark(&[*key], true);
        self.writer.durable(ticket, "delete").await?;
        Ok(existed)
    }

    async fn purge(&self, now: u64) -> Result<usize, StoreError> {
        let purged = self.mem.purge_keys(now);
        // The writer deletes what memory no longer holds.
        self.writer.mark(&purged, false);
        Ok(purged.len())
    }

    async fn count(&self) -> Result<usize, StoreError> {
        self.mem.count().await
    }

    async fn by_user(&self, user: &str) -> Result<Keyed, StoreError> {
        self.mem.by_user(user).await
    }

    async fn by_handle(&self, handle: &[u8; 8]) -> Result<Keyed, StoreError> {
        self.mem.by_handle(handle).await
    }

    /// A revocation: on disk before it answers, like `delete`.
    async fn delete_user(&self, user: &str) -> Result<Keyed, StoreError> {
        let removed = self.mem.delete_user(user).await?;
        let keys: Vec<SessionKey> = removed.iter().map(|(k, _)| *k).collect();
        let ticket = self.writer.mark(&keys, true);
        self.writer.durable(ticket, "delete_user").await?;
        Ok(removed)
    }

    fn set_max_sessions(&self, max_sessions: usize) {
        self.mem.set_max_sessions(max_sessions);
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let ticket = self.writer.mark_everything();
        self.writer.durable(ticket, "flush").await
    }
}

/// Runs a memory-store call to completion off the runtime (start-up, the
/// writer thread). The memory store never waits, so the first poll
/// answers; parking only keeps this correct for a future that would.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        return v;
    }
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
