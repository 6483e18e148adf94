//! The in-memory backend: a sharded map, bounded by `max_sessions`. Nothing
//! survives a restart.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use dashmap::DashMap;

use super::{SessionStore, StoreError};
use crate::session::{Session, SessionKey};

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

#[derive(Debug)]
pub struct MemoryStore {
    map: KeyMap,
    max: AtomicUsize,
    /// Held by `create` from its capacity check to its insert, so creates
    /// racing at the cap cannot each see room for one and overshoot it, nor
    /// evict the same victims and report `Full` with room made. Only
    /// creates take it; the other calls only shrink the map or keep its size.
    creating: Mutex<()>,
}

impl MemoryStore {
    pub fn new(max_sessions: usize) -> Self {
        MemoryStore {
            map: KeyMap::default(),
            max: AtomicUsize::new(max_sessions),
            creating: Mutex::new(()),
        }
    }

    /// Evicts the longest-idle anonymous sessions: at least one, and up to
    /// 1% of capacity so a full store pays for the scan rarely. Sessions
    /// with an identity are never evicted (SPEC §7.3).
    fn evict(&self, max: usize) -> usize {
        let batch = (max / 100).max(1);
        let mut anon: Vec<(u64, SessionKey)> = self
            .map
            .iter()
            .filter(|e| e.value().identity.is_none())
            .map(|e| (e.value().last_seen, *e.key()))
            .collect();
        let n = batch.min(anon.len());
        if n == 0 {
            return 0;
        }
        anon.select_nth_unstable(n - 1);
        let mut evicted = 0;
        for (_, key) in &anon[..n] {
            // Only if it is still anonymous: a login may have raced the scan.
            if self
                .map
                .remove_if(key, |_, s| s.identity.is_none())
                .is_some()
            {
                evicted += 1;
            }
        }
        evicted
    }

    /// Calls `f` on every session held, one shard at a time (not one
    /// snapshot): for a backend that keeps this store as its hot set
    /// ([`super::EmbeddedStore`]) and must see which sessions a policy
    /// picks. `f` must not call back into this store.
    pub fn for_each(&self, mut f: impl FnMut(&SessionKey, &Session)) {
        for e in self.map.iter() {
            f(e.key(), e.value());
        }
    }
}

impl SessionStore for MemoryStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<Session>>, StoreError> {
        Ok(self.map.get(key).map(|s| Arc::clone(s.value())))
    }

    async fn create(&self, key: &SessionKey, session: &Arc<Session>) -> Result<(), StoreError> {
        let max = self.max.load(Ordering::Relaxed);
        // Guards nothing but this section, so a poisoned lock is still good.
        let _creating = self.creating.lock().unwrap_or_else(PoisonError::into_inner);
        // A delete may free the victim evict() picked: only full if still so.
        if self.map.len() >= max && self.evict(max) == 0 && self.map.len() >= max {
            return Err(StoreError::Full);
        }
        self.map.insert(*key, Arc::clone(session));
        Ok(())
    }

    async fn update(&self, key: &SessionKey, session: &Arc<Session>) -> Result<bool, StoreError> {
        Ok(match self.map.get_mut(key) {
            Some(mut s) => {
                *s = Arc::clone(session);
                true
            }
            None => false,
        })
    }

    async fn touch(
        &self,
        key: &SessionKey,
        last_seen: u64,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        Ok(match self.map.get_mut(key) {
            Some(mut s) => {
                let s = Arc::make_mut(&mut s);
                s.last_seen = s.last_seen.max(last_seen);
                s.expires_at = s.expires_at.max(expires_at);
                true
            }
            None => false,
        })
    }

    async fn rotate(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        session: &Arc<Session>,
    ) -> Result<bool, StoreError> {
        // Insert first, then remove: there is no moment with neither key,
        // and the old key is gone before the response names the new one.
        // Taking the old entry is the moment the move happens: if a logout
        // or revocation took it first, the new key (which no client knows
        // yet) is withdrawn, so the session does not come back.
        self.map.insert(*new, Arc::clone(session));
        if self.map.remove(old).is_none() {
            self.map.remove(new);
            return Ok(false);
        }
        Ok(true)
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        Ok(self.map.remove(key).is_some())
    }

    async fn purge(&self, now: u64) -> Result<usize, StoreError> {
        let before = self.map.len();
        self.map.retain(|_, s| s.expires_at > now);
        Ok(before.saturating_sub(self.map.len()))
    }

    async fn count(&self) -> Result<usize, StoreError> {
        Ok(self.map.len())
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
