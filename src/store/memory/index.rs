//! The memory store's indexes over one shard of its keys, so that purge,
//! eviction, the per-user calls and the handle lookup cost what they touch,
//! not the store's size: mini-redis's `BTreeSet<(Instant, key)>` expiry
//! index, and the same idea for idleness, users and handles. This file only
//! keeps the books; [`super::MemoryStore`] changes an index only under its
//! shard's lock and together with the map, so the two always agree.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::hash::BuildHasherDefault;

use super::KeyHasher;
use crate::session::{Session, SessionKey};

type KeySet = HashSet<SessionKey, BuildHasherDefault<KeyHasher>>;

/// A session's place in the time indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Times {
    pub last_seen: u64,
    pub expires_at: u64,
}

impl Times {
    pub fn of(s: &Session) -> Times {
        Times {
            last_seen: s.last_seen,
            expires_at: s.expires_at,
        }
    }
}

/// The indexes of one shard. Measured per session on top of the map entry
/// (200k entries): 50 bytes in `keys`, 78 in each time-ordered tree (they
/// fill in order, so their nodes stay about half full), about 90 in
/// `users` at four sessions a user and up to 200 for a user's only one;
/// so about 200 bytes for an anonymous session, 220–330 with an identity.
#[derive(Default)]
pub(super) struct Index {
    /// Every key, in order: the keys a handle (8-byte prefix) names are a range.
    keys: BTreeSet<SessionKey>,
    /// `(expires_at, key)` of every session: purge takes a prefix.
    expiry: BTreeSet<(u64, SessionKey)>,
    /// `(last_seen, key)` of anonymous sessions only: the evictable ones,
    /// longest idle first (SPEC §7.3).
    idle: BTreeSet<(u64, SessionKey)>,
    /// The keys bound to each user.
    users: HashMap<Box<str>, KeySet>,
}

impl Index {
    pub fn insert(&mut self, key: SessionKey, s: &Session) {
        self.keys.insert(key);
        self.expiry.insert((s.expires_at, key));
        match s.user() {
            None => {
                self.idle.insert((s.last_seen, key));
            }
            Some(user) => {
                self.users.entry(user.into()).or_default().insert(key);
            }
        }
    }

    pub fn remove(&mut self, key: &SessionKey, s: &Session) {
        self.keys.remove(key);
        self.expiry.remove(&(s.expires_at, *key));
        match s.user() {
            None => {
                self.idle.remove(&(s.last_seen, *key));
            }
            Some(user) => {
                if let Some(keys) = self.users.get_mut(user) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.users.remove(user);
                    }
                }
            }
        }
    }

    /// `old` became `new` under the same key.
    pub fn replace(&mut self, key: &SessionKey, old: &Session, new: &Session) {
        if old.user() == new.user() {
            self.retime(key, new.identity.is_none(), Times::of(old), Times::of(new));
        } else {
            // A change of identity: rare (logins rotate), so no shortcut.
            self.remove(key, old);
            self.insert(*key, new);
        }
    }

    /// A session's times changed, nothing else (a touch).
    pub fn retime(&mut self, key: &SessionKey, anonymous: bool, old: Times, new: Times) {
        if old.expires_at != new.expires_at {
            self.expiry.remove(&(old.expires_at, *key));
            self.expiry.insert((new.expires_at, *key));
        }
        if anonymous && old.last_seen != new.last_seen {
            self.idle.remove(&(old.last_seen, *key));
            self.idle.insert((new.last_seen, *key));
        }
    }

    /// The keys beginning with `handle`.
    pub fn handle(&self, handle: &[u8; 8]) -> impl Iterator<Item = &SessionKey> {
        let (mut lo, mut hi) = ([0u8; 32], [0xffu8; 32]);
        lo[..8].copy_from_slice(handle);
        hi[..8].copy_from_slice(handle);
        self.keys.range(SessionKey(lo)..=SessionKey(hi))
    }

    /// Up to `limit` sessions whose `expires_at` is at or before `now`.
    pub fn expired(&self, now: u64, limit: usize) -> Vec<(u64, SessionKey)> {
        self.expiry
            .range(..=(now, SessionKey([0xff; 32])))
            .take(limit)
            .copied()
            .collect()
    }

    /// Drops an expiry entry whose session the map does not hold. Never
    /// needed while the map and the index agree; it keeps purge from
    /// meeting the same stale entry forever should they not.
    pub fn forget_expiry(&mut self, entry: &(u64, SessionKey)) {
        self.expiry.remove(entry);
    }

    /// The keys bound to `user`.
    pub fn user(&self, user: &str) -> impl Iterator<Item = &SessionKey> {
        self.users.get(user).into_iter().flatten()
    }
}

/// The `n` longest-idle anonymous sessions across `shards`, oldest first,
/// each with its shard's position: a merge of each shard's ordered idle
/// index, costing `n` heap steps, not a scan.
pub(super) fn oldest_idle<'a>(
    shards: impl IntoIterator<Item = &'a Index>,
    n: usize,
) -> Vec<(usize, SessionKey)> {
    let mut iters: Vec<_> = shards.into_iter().map(|s| s.idle.iter()).collect();
    let mut heads = BinaryHeap::with_capacity(iters.len());
    for (i, it) in iters.iter_mut().enumerate() {
        if let Some(head) = it.next() {
            heads.push(Reverse((*head, i)));
        }
    }
    let mut out = Vec::with_capacity(n.min(1024));
    while out.len() < n {
        let Some(Reverse(((_, key), i))) = heads.pop() else {
            break;
        };
        out.push((i, key));
        if let Some(next) = iters[i].next() {
            heads.push(Reverse((*next, i)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Identity;

    fn key(first: u8, rest: u8) -> SessionKey {
        let mut k = [rest; 32];
        k[0] = first;
        SessionKey(k)
    }

    fn session(last_seen: u64, user: Option<&str>) -> Session {
        let mut s = Session::new(last_seen, "ip".into(), "ua", "r");
        s.expires_at = last_seen + 100;
        s.identity = user.map(|u| Identity {
            user: u.into(),
            email: None,
            groups: vec![],
        });
        s
    }

    #[test]
    fn handle_is_a_prefix_range() {
        let mut ix = Index::default();
        let (a, b, c) = (key(1, 0), key(1, 0xff), key(2, 0));
        for k in [a, b, c] {
            ix.insert(k, &session(0, None));
        }
        let h = |k: &SessionKey| <[u8; 8]>::try_from(&k.0[..8]).unwrap();
        assert_eq!(ix.handle(&h(&a)).collect::<Vec<_>>(), [&a]);
        assert_eq!(ix.handle(&h(&b)).collect::<Vec<_>>(), [&b]);
        assert_eq!(ix.handle(&[9; 8]).count(), 0);
    }

    #[test]
    fn replace_moves_every_index() {
        let mut ix = Index::default();
        let k = key(0, 1);
        let anon = session(10, None);
        ix.insert(k, &anon);
        let mut later = anon.clone();
        later.last_seen = 50;
        later.expires_at = 150;
        ix.replace(&k, &anon, &later);
        assert!(ix.expired(149, 10).is_empty());
        assert_eq!(ix.expired(150, 10), [(150, k)]);
        assert_eq!(oldest_idle([&ix], 5), [(0, k)]);
        let alice = session(60, Some("alice"));
        ix.replace(&k, &later, &alice);
        assert!(
            oldest_idle([&ix], 5).is_empty(),
            "an identity is never evictable"
        );
        assert_eq!(ix.user("alice").collect::<Vec<_>>(), [&k]);
        ix.remove(&k, &alice);
        assert_eq!(ix.user("alice").count(), 0);
        assert!(ix.users.is_empty() && ix.keys.is_empty() && ix.expiry.is_empty());
    }

    #[test]
    fn oldest_idle_merges_shards_in_order() {
        let (mut a, mut b) = (Index::default(), Index::default());
        for (in_b, seen, k) in [
            (false, 5, key(0, 5)),
            (true, 1, key(8, 1)),
            (false, 3, key(0, 3)),
            (true, 9, key(8, 9)),
        ] {
            let ix = if in_b { &mut b } else { &mut a };
            ix.insert(k, &session(seen, None));
        }
        let got = oldest_idle([&a, &b], 3);
        assert_eq!(got, [(1, key(8, 1)), (0, key(0, 3)), (0, key(0, 5))]);
        assert_eq!(oldest_idle([&a, &b], 10).len(), 4);
    }
}
