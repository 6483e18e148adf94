//! Session storage. [`SessionStore`] is the contract every backend meets;
//! [`Store`] picks the configured backend. Keys are SHA-256 of session ids
//! ([`SessionKey`]): a raw id never reaches a store. Sessions travel as
//! `Arc<Session>`: a read copies nothing, a change copies once.

mod memory;

use std::future::Future;
use std::sync::Arc;

use crate::config::{Backend, Config};
use crate::session::{Session, SessionKey};

pub use memory::MemoryStore;

/// A backend's own error (I/O, SQLite, Redis), kept whole as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a store call failed. Neither variant means "no such session": that
/// is `Ok(None)` / `Ok(false)`, and a request that meets an error gets 503
/// with its cookie kept (SPEC §4.3).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `max_sessions` reached and nothing could be evicted (SPEC §7.3).
    #[error("the session store is full")]
    Full,
    /// The backend could not answer. `op` names the call (`"load"`,
    /// `"rotate"`, ...); `source` is the backend's error. Neither may carry
    /// a session id, key or cookie value: this is logged.
    #[error("the session store failed to {op}")]
    Unavailable {
        op: &'static str,
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    pub fn unavailable(op: &'static str, source: impl Into<BoxError>) -> Self {
        StoreError::Unavailable {
            op,
            source: source.into(),
        }
    }
}

/// What a session store does. Every write is keyed by [`SessionKey`] and
/// every method is safe to call from many requests at once.
pub trait SessionStore: Send + Sync {
    fn load(
        &self,
        key: &SessionKey,
    ) -> impl Future<Output = Result<Option<Arc<Session>>, StoreError>> + Send;
    /// Inserts a new session, first evicting the longest-idle anonymous
    /// sessions when at capacity; [`StoreError::Full`] when none can go.
    fn create(
        &self,
        key: &SessionKey,
        session: &Arc<Session>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Replaces an existing session; `false` when it is gone (ended
    /// meanwhile), in which case nothing is written.
    fn update(
        &self,
        key: &SessionKey,
        session: &Arc<Session>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Records activity: sets `last_seen` and `expires_at`; `false` when
    /// the session is gone, in which case nothing is written.
    fn touch(
        &self,
        key: &SessionKey,
        last_seen: u64,
        expires_at: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Atomically moves a session to a new key, storing `session` there:
    /// the old key stops working at once. `false` when the old session is
    /// gone (ended or revoked meanwhile), in which case nothing is written:
    /// a rotation must not bring a revoked session back.
    fn rotate(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        session: &Arc<Session>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Removes a session; `true` when it existed.
    fn delete(&self, key: &SessionKey) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Removes every session whose `expires_at` is at or before `now`;
    /// returns how many.
    fn purge(&self, now: u64) -> impl Future<Output = Result<usize, StoreError>> + Send;
    /// Sessions held.
    fn count(&self) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

/// The configured backend.
#[derive(Debug)]
pub enum Store {
    Memory(MemoryStore),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("store.backend = \"{0}\" is not available in this build yet; use \"memory\"")]
    NotAvailable(&'static str),
}

impl Store {
    pub fn open(config: &Config) -> Result<Store, OpenError> {
        match config.store.backend {
            Backend::Memory => Ok(Store::Memory(MemoryStore::new(config.session.max_sessions))),
            Backend::Embedded => Err(OpenError::NotAvailable("embedded")),
            Backend::Redis => Err(OpenError::NotAvailable("redis")),
        }
    }
}

/// Runs one backend call, timing it and counting its errors.
macro_rules! dispatch {
    ($self:ident, $op:ident, $s:ident => $e:expr) => {{
        let started = std::time::Instant::now();
        let r = match $self {
            Store::Memory($s) => $e,
        };
        let m = crate::metrics::get();
        m.store_ops.$op.observe(started.elapsed().as_secs_f64());
        if matches!(r, Err(StoreError::Unavailable { .. })) {
            m.store_errors.inc();
        }
        r
    }};
}

impl SessionStore for Store {
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<Session>>, StoreError> {
        dispatch!(self, load, s => s.load(key).await)
    }
    async fn create(&self, key: &SessionKey, session: &Arc<Session>) -> Result<(), StoreError> {
        dispatch!(self, create, s => s.create(key, session).await)
    }
    async fn update(&self, key: &SessionKey, session: &Arc<Session>) -> Result<bool, StoreError> {
        dispatch!(self, update, s => s.update(key, session).await)
    }
    async fn touch(
        &self,
        key: &SessionKey,
        last_seen: u64,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        dispatch!(self, touch, s => s.touch(key, last_seen, expires_at).await)
    }
    async fn rotate(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        session: &Arc<Session>,
    ) -> Result<bool, StoreError> {
        dispatch!(self, rotate, s => s.rotate(old, new, session).await)
    }
    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        dispatch!(self, delete, s => s.delete(key).await)
    }
    async fn purge(&self, now: u64) -> Result<usize, StoreError> {
        dispatch!(self, purge, s => s.purge(now).await)
    }
    async fn count(&self) -> Result<usize, StoreError> {
        dispatch!(self, count, s => s.count().await)
    }
}
