//! What sessions need of a store: the [`SessionStore`] contract every
//! backend under [`crate::store`] meets (one conformance suite,
//! `tests/store_conformance.rs`, checks each), and its error. It lives here,
//! with the rules that use it, so the session layer never names a backend.
//! Sessions travel as `Arc<Session>`: a read copies nothing, a change
//! copies once.

use std::future::Future;
use std::sync::Arc;

use super::{Session, SessionKey};

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
    /// Every session bound to `user`, with its key, in no particular
    /// order; ended sessions not yet purged included (the store does not
    /// know the timeouts). Costs the user's sessions, not the store's.
    fn by_user(&self, user: &str) -> impl Future<Output = Result<Keyed, StoreError>> + Send;
    /// The sessions whose key begins with `handle`: the handle of SPEC
    /// §4.1 is the first 8 bytes of the [`SessionKey`]. At most one in
    /// practice (two only if 64-bit prefixes collide); ended sessions not
    /// yet purged included. Costs no scan of the store.
    fn by_handle(&self, handle: &[u8; 8])
        -> impl Future<Output = Result<Keyed, StoreError>> + Send;
    /// Removes every session bound to `user` and returns them with their
    /// keys (revoke-all, SPEC §10). Atomic with respect to [`rotate`]: a
    /// session of the user rotating meanwhile is removed under one key or
    /// the other, never left under the new one.
    ///
    /// [`rotate`]: SessionStore::rotate
    fn delete_user(&self, user: &str) -> impl Future<Output = Result<Keyed, StoreError>> + Send;
    /// Changes the `max_sessions` cap (a reload); the next [`create`]
    /// applies it, evicting down to it as SPEC §7.3 says.
    ///
    /// [`create`]: SessionStore::create
    fn set_max_sessions(&self, max_sessions: usize);
    /// Makes every change made so far durable: the last call at shutdown
    /// (SPEC §2: SIGTERM flushes the store). A backend with nothing
    /// pending returns at once.
    fn flush(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Sessions with their keys, as [`SessionStore::by_user`] and its kin answer.
pub type Keyed = Vec<(SessionKey, Arc<Session>)>;
