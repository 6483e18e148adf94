//! Session storage backends. The contract they meet, [`SessionStore`], is
//! the session layer's ([`crate::session::store`]): sessions say what they
//! need of a store, and this module provides it. [`Store`] picks the
//! configured backend (`embedded`, `memory`, or `redis`: replicas sharing
//! one Redis), times every call, counts its errors and logs an outage once
//! (`outage`). Keys are SHA-256 of session ids ([`SessionKey`]): a raw id
//! never reaches a store. [`EmbeddedStore`] keeps a [`MemoryStore`] as its
//! hot set and writes through to a database file.

mod embedded;
mod memory;
mod outage;
mod redis;

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Backend, Config};
use crate::session::{Session, SessionKey};

pub use self::redis::{RedisOpenError, RedisOptions, RedisStore};
pub use crate::session::store::{BoxError, Keyed, SessionStore, StoreError};
pub use embedded::{DbError, EmbeddedStore};
pub use memory::MemoryStore;

/// The configured backend.
#[derive(Debug)]
pub enum Store {
    Memory(MemoryStore),
    Embedded(EmbeddedStore),
    Redis(RedisStore),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The embedded store's database file cannot be opened or read.
    #[error("session database {}: {source}", path.display())]
    Embedded {
        path: PathBuf,
        #[source]
        source: DbError,
    },
    #[error(transparent)]
    Redis(#[from] RedisOpenError),
}

impl Store {
    /// Opens the configured backend; the embedded one reads its whole file
    /// first (blocking), so call this before serving.
    pub fn open(config: &Config) -> Result<Store, OpenError> {
        let max = config.session.max_sessions;
        match config.store.backend {
            Backend::Memory => Ok(Store::Memory(MemoryStore::new(max))),
            Backend::Embedded => Ok(Store::Embedded(EmbeddedStore::open(
                &config.store.path,
                max,
            )?)),
            Backend::Redis => Ok(Store::Redis(RedisStore::open(
                &RedisOptions::from_config(&config.store),
                max,
            )?)),
        }
    }
}

/// Runs one backend call, timing it and counting its errors.
macro_rules! dispatch {
    ($self:ident, $op:ident, $s:ident => $e:expr) => {{
        let started = std::time::Instant::now();
        let r = match $self {
            Store::Memory($s) => $e,
            Store::Embedded($s) => $e,
            Store::Redis($s) => $e,
        };
        crate::metrics::get()
            .store_ops
            .$op
            .observe(started.elapsed().as_secs_f64());
        outage::observe(stringify!($op), &r);
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
    async fn by_user(&self, user: &str) -> Result<Keyed, StoreError> {
        dispatch!(self, by_user, s => s.by_user(user).await)
    }
    async fn by_handle(&self, handle: &[u8; 8]) -> Result<Keyed, StoreError> {
        dispatch!(self, by_handle, s => s.by_handle(handle).await)
    }
    async fn delete_user(&self, user: &str) -> Result<Keyed, StoreError> {
        dispatch!(self, delete_user, s => s.delete_user(user).await)
    }
    fn set_max_sessions(&self, max_sessions: usize) {
        match self {
            Store::Memory(s) => s.set_max_sessions(max_sessions),
            Store::Embedded(s) => s.set_max_sessions(max_sessions),
            Store::Redis(s) => s.set_max_sessions(max_sessions),
        }
    }

    /// Not timed: it runs once, at shutdown.
    async fn flush(&self) -> Result<(), StoreError> {
        let r = match self {
            Store::Memory(s) => s.flush().await,
            Store::Embedded(s) => s.flush().await,
            Store::Redis(s) => s.flush().await,
        };
        if r.is_err() {
            crate::metrics::get().store_errors.inc();
        }
        r
    }
}
