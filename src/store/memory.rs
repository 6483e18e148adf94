//! The in-memory backend: a sharded map, bounded by `max_sessions`, with
//! ordered indexes (`index`) beside it. Nothing survives a restart.
//!
//! `load` is one lookup in the sharded map and takes no other lock. Every
//! write takes the lock of the key's index shard (one of `SHARDS`, by
//! the key's first byte) and changes the map entry and the indexes under
//! it, so for any key the two agree whenever its shard is unlocked; loads
//! may see the map a moment ahead. Writes to keys in different shards run
//! in parallel. What spans keys takes several shard locks, always in
//! ascending order: `rotate` the two it touches; eviction and
//! `delete_user` all of them (they are rare, and brief: they cost what
//! they remove). `create` takes its own lock first, before any shard's.
//!
//! Costs, for `n` sessions held: `touch` and `update` move a few B-tree
//! entries (O(log n)); `purge` and eviction cost O(log n) per session they
//! remove; `by_user` and `delete_user` cost the user's sessions plus one
//! lock per shard; `by_handle` is one range lookup. No call scans the map.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dashmap::DashMap;

use super::{Keyed, SessionStore, StoreError};
use crate::session::{Session, SessionKey};

mod index;

use index::{oldest_idle, Index, Times};

/// Hashes a [`SessionKey`] by its first 8 bytes. The key is already a
/// SHA-256 output of an id that was either drawn from the CSPRNG or passed
/// the MAC check, so a client cannot pick keys that collide: SipHash's
/// flood resistance would buy nothing here, and it costs per lookup.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached by `SessionKey`'s hash (the array's bytes, after its
        // length prefix): fold them in so the hasher stays correct for
        // anything else too.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(29) ^ n;
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

type KeyMap = DashMap<SessionKey, Arc<Session>, BuildHasherDefault<KeyHasher>>;

/// Index shards: enough that writers on different sessions rarely meet,
/// few enough that taking them all (eviction, `delete_user`) is cheap.
const SHARDS: usize = 16;

/// At most this many sessions are purged under one shard lock, so a large
/// purge lets writers in between.
const PURGE_BATCH: usize = 1024;

/// The shard of the key (or handle) starting with `first`.
fn shard_of(first: u8) -> usize {
    usize::from(first) * SHARDS / 256
}

/// The indexes guard no invariant a panic could break half-way that the
/// next writer would trip on (every change is a set insert or remove), so
/// a poisoned lock is still good.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub struct MemoryStore {
    map: KeyMap,
    indexes: Box<[Mutex<Index>]>,
    max: AtomicUsize,
    /// Held by `create` from its capacity check to its insert, so creates
    /// racing at the cap cannot each see room for one and overshoot it, nor
    /// evict the same victims and report `Full` with room made. Only
    /// creates take it; the other calls only shrink the map or keep its size.
    creating: Mutex<()>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.map.len())
            .field("max_sessions", &self.max.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    pub fn new(max_sessions: usize) -> Self {
        MemoryStore {
            map: KeyMap::default(),
            indexes: (0..SHARDS).map(|_| Mutex::default()).collect(),
            max: AtomicUsize::new(max_sessions),
            creating: Mutex::new(()),
        }
    }

    fn index(&self, key: &SessionKey) -> MutexGuard<'_, Index> {
        lock(&self.indexes[shard_of(key.0[0])])
    }

    /// Every shard's lock, in ascending order.
    fn all_indexes(&self) -> Vec<MutexGuard<'_, Index>> {
        self.indexes.iter().map(lock).collect()
    }

    /// Evicts the `n` longest-idle anonymous sessions (fewer when there are
    /// not as many). Sessions with an identity are never evicted (SPEC §7.3).
    fn evict(&self, n: usize) -> Vec<SessionKey> {
        let mut shards = self.all_indexes();
        let mut gone = Vec::with_capacity(n);
        for (i, key) in oldest_idle(shards.iter().map(|g| &**g), n) {
            if let Some((_, s)) = self.map.remove(&key) {
                shards[i].remove(&key, &s);
                gone.push(key);
            }
        }
        gone
    }

    /// `create`, answering which sessions it evicted to make room (the
    /// embedded store removes them from its file too).
    pub fn create_evicting(
        &self,
        key: &SessionKey,
        session: &Arc<Session>,
    ) -> Result<Vec<SessionKey>, StoreError> {
        let _creating = lock(&self.creating);
        let max = self.max.load(Ordering::Relaxed);
        let held = self.map.len();
        let mut evicted = Vec::new();
        if held >= max {
            // Down to one below the cap, however far a reload lowered it.
            evicted = self.evict(held + 1 - max);
            // A delete may have freed room meanwhile: only full if still so.
            if self.map.len() >= max {
                return Err(StoreError::Full);
            }
        }
        let mut index = self.index(key);
        if let Some(old) = self.map.insert(*key, Arc::clone(session)) {
            index.remove(key, &old);
        }
        index.insert(*key, session);
        Ok(evicted)
    }

    /// `purge`, answering which sessions it removed.
    pub fn purge_keys(&self, now: u64) -> Vec<SessionKey> {
        let mut purged = Vec::new();
        for shard in self.indexes.iter() {
            loop {
                let mut index = lock(shard);
                let due = index.expired(now, PURGE_BATCH);
                for entry @ (_, key) in &due {
                    match self.map.remove(key) {
                        Some((_, s)) => {
                            index.remove(key, &s);
                            purged.push(*key);
                        }
                        None => index.forget_expiry(entry),
                    }
                }
                if due.len() < PURGE_BATCH {
                    break;
                }
            }
        }
        purged
    }
}

impl SessionStore for MemoryStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<Session>>, StoreError> {
        Ok(self.map.get(key).map(|s| Arc::clone(s.value())))
    }

    async fn create(&self, key: &SessionKey, session: &Arc<Session>) -> Result<(), StoreError> {
        self.create_evicting(key, session).map(drop)
    }

    async fn update(&self, key: &SessionKey, session: &Arc<Session>) -> Result<bool, StoreError> {
        let mut index = self.index(key);
        let old = match self.map.get_mut(key) {
            Some(mut s) => std::mem::replace(&mut *s, Arc::clone(session)),
            None => return Ok(false),
        };
        index.replace(key, &old, session);
        Ok(true)
    }

    async fn touch(
        &self,
        key: &SessionKey,
        last_seen: u64,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let mut index = self.index(key);
        let (anonymous, old, new) = match self.map.get_mut(key) {
            Some(mut s) => {
                let s = Arc::make_mut(&mut s);
                let old = Times::of(s);
                s.last_seen = s.last_seen.max(last_seen);
                s.expires_at = s.expires_at.max(expires_at);
                (s.identity.is_none(), old, Times::of(s))
            }
            None => return Ok(false),
        };
        // The map's shard is unlocked again: loads wait on none of this.
        index.retime(key, anonymous, old, new);
        Ok(true)
    }

    async fn rotate(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        session: &Arc<Session>,
    ) -> Result<bool, StoreError> {
        let (a, b) = (shard_of(old.0[0]), shard_of(new.0[0]));
        let (lo, hi) = (a.min(b), a.max(b));
        let mut lo_index = lock(&self.indexes[lo]);
        let mut hi_index = (hi != lo).then(|| lock(&self.indexes[hi]));
        // Every writer of `old` holds its shard's lock, as this call does:
        // it cannot end between this check and the move below.
        if !self.map.contains_key(old) {
            return Ok(false);
        }
        // Insert first, then remove: there is no moment with neither key,
        // and the old key is gone before the response names the new one.
        let displaced = self.map.insert(*new, Arc::clone(session));
        let Some((_, was)) = self.map.remove(old) else {
            self.map.remove(new);
            return Ok(false);
        };
        let new_index = match &mut hi_index {
            Some(g) if b == hi => &mut **g,
            _ => &mut *lo_index,
        };
        if let Some(d) = displaced {
            new_index.remove(new, &d);
        }
        new_index.insert(*new, session);
        let old_index = match &mut hi_index {
            Some(g) if a == hi => &mut **g,
            _ => &mut *lo_index,
        };
        old_index.remove(old, &was);
        Ok(true)
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let mut index = self.index(key);
        Ok(match self.map.remove(key) {
            Some((_, s)) => {
                index.remove(key, &s);
                true
            }
            None => false,
        })
    }

    async fn purge(&self, now: u64) -> Result<usize, StoreError> {
        Ok(self.purge_keys(now).len())
    }

    async fn count(&self) -> Result<usize, StoreError> {
        Ok(self.map.len())
    }

    async fn by_user(&self, user: &str) -> Result<Keyed, StoreError> {
        let mut found = Vec::new();
        for shard in self.indexes.iter() {
            let index = lock(shard);
            for key in index.user(user) {
                if let Some(s) = self.map.get(key) {
                    found.push((*key, Arc::clone(s.value())));
                }
            }
        }
        Ok(found)
    }

    async fn by_handle(&self, handle: &[u8; 8]) -> Result<Keyed, StoreError> {
        let index = lock(&self.indexes[shard_of(handle[0])]);
        Ok(index
            .handle(handle)
            .filter_map(|key| self.map.get(key).map(|s| (*key, Arc::clone(s.value()))))
            .collect())
    }

    async fn delete_user(&self, user: &str) -> Result<Keyed, StoreError> {
        // All shards at once: a rotation (which holds the shards of both
        // its keys) lands wholly before this or wholly after it.
        let mut shards = self.all_indexes();
        let mut removed = Vec::new();
        for index in shards.iter_mut() {
            let keys: Vec<SessionKey> = index.user(user).copied().collect();
            for key in keys {
                if let Some((_, s)) = self.map.remove(&key) {
                    index.remove(&key, &s);
                    removed.push((key, s));
                }
            }
        }
        Ok(removed)
    }

    fn set_max_sessions(&self, max_sessions: usize) {
        self.max.store(max_sessions, Ordering::Relaxed);
    }

    /// Nothing is kept anywhere else, so nothing is pending.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Identity, SessionId};

    fn session(last_seen: u64, user: Option<&str>) -> Arc<Session> {
        let mut s = Session::new(last_seen, "127.0.0.1".into(), "t", "/");
        s.expires_at = last_seen + 1000;
        s.identity = user.map(|u| Identity {
            user: u.into(),
            email: None,
            groups: vec![],
        });
        Arc::new(s)
    }

    fn key() -> SessionKey {
        SessionId::generate().unwrap().key()
    }

    #[tokio::test]
    async fn s7_3_full_store_evicts_longest_idle_anonymous_first() {
        let store = MemoryStore::new(3);
        let (old, newer, user) = (key(), key(), key());
        store.create(&old, &session(1, None)).await.unwrap();
        store.create(&newer, &session(5, None)).await.unwrap();
        store
            .create(&user, &session(0, Some("alice")))
            .await
            .unwrap();
        store.create(&key(), &session(9, None)).await.unwrap();
        assert!(store.load(&old).await.unwrap().is_none());
        assert!(store.load(&newer).await.unwrap().is_some());
        assert!(store.load(&user).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn s7_3_full_of_identities_refuses() {
        let store = MemoryStore::new(1);
        store
            .create(&key(), &session(0, Some("alice")))
            .await
            .unwrap();
        assert!(matches!(
            store.create(&key(), &session(1, None)).await,
            Err(StoreError::Full)
        ));
    }

    #[tokio::test]
    async fn update_touch_and_rotate() {
        let store = MemoryStore::new(10);
        let (a, b) = (key(), key());
        assert!(!store.update(&a, &session(0, None)).await.unwrap());
        store.create(&a, &session(0, None)).await.unwrap();
        assert!(store.touch(&a, 50, 1050).await.unwrap());
        assert_eq!(store.load(&a).await.unwrap().unwrap().last_seen, 50);
        assert!(store
            .rotate(&a, &b, &session(60, Some("bob")))
            .await
            .unwrap());
        assert!(store.load(&a).await.unwrap().is_none());
        assert_eq!(store.load(&b).await.unwrap().unwrap().user(), Some("bob"));
    }

    #[tokio::test]
    async fn purge_removes_ended_sessions() {
        let store = MemoryStore::new(10);
        store.create(&key(), &session(0, None)).await.unwrap();
        store.create(&key(), &session(5000, None)).await.unwrap();
        assert_eq!(store.purge(2000).await.unwrap(), 1);
        assert_eq!(store.count().await.unwrap(), 1);
    }
}
