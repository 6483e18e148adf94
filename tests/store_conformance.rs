//! The `SessionStore` contract (`src/store/mod.rs`) and SPEC §4.6 and §7.3,
//! written once and run against every backend: each behaviour below is a
//! function generic over the store, and [`conformance!`] turns every
//! behaviour into one `#[tokio::test]` per backend, named
//! `<backend>::<behaviour>`, so a failure names both.
//!
//! # Adding a backend
//!
//! One `conformance!` line at the end of this file: a module name and a
//! closure that opens a fresh, empty store holding at most `max` sessions
//! and returns it with a guard that lives as long as the store (`()` when
//! nothing must), e.g.
//!
//! ```text
//! conformance!(embedded, |max| async move {
//!     let dir = tempfile::tempdir().unwrap();
//!     (EmbeddedStore::open(&dir.path().join("s.db"), max).unwrap(), dir)
//! });
//! ```
//!
//! A Redis opener gives each store its own `key_prefix` so tests running at
//! once do not see each other's sessions.
//!
//! Times are unix milliseconds passed in explicitly: no test waits.

use std::future::Future;
use std::sync::Arc;

use cloakroom::session::codec::parse_handle;
use cloakroom::session::setcookie::SetCookie;
use cloakroom::session::{Identity, Session, SessionId, SessionKey};
use cloakroom::store::{
    EmbeddedStore, Keyed, MemoryStore, RedisOptions, RedisStore, SessionStore, StoreError,
};

#[path = "support/redis.rs"]
mod redis_fixture;

/// Opens a fresh, empty store of one backend; see the module docs.
trait Open {
    type Store: SessionStore + 'static;
    type Guard;
    async fn open(&self, max_sessions: usize) -> (Arc<Self::Store>, Self::Guard);
}

impl<F, Fut, S, G> Open for F
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = (S, G)>,
    S: SessionStore + 'static,
{
    type Store = S;
    type Guard = G;
    async fn open(&self, max_sessions: usize) -> (Arc<S>, G) {
        let (store, guard) = self(max_sessions).await;
        (Arc::new(store), guard)
    }
}

/// Instantiates every behaviour for one backend.
macro_rules! conformance {
    ($backend:ident, $open:expr) => {
        conformance!(@tests $backend, $open;
            create_then_load_round_trips_every_field,
            load_of_an_unknown_key_is_none,
            update_replaces_an_existing_session,
            update_of_a_missing_or_deleted_session_writes_nothing,
            touch_records_activity,
            touch_of_a_missing_session_writes_nothing,
            s4_6_rotate_moves_the_session_and_the_old_key_stops_working,
            s4_6_rotate_of_a_missing_session_writes_nothing,
            delete_is_true_once_then_false,
            s7_3_purge_removes_exactly_the_ended_sessions,
            count_follows_creates_and_deletes,
            s7_3_at_capacity_create_evicts_the_longest_idle_anonymous_sessions,
            s7_3_touch_counts_for_longest_idle,
            s7_3_sessions_with_an_identity_are_never_evicted,
            concurrent_creates_lose_nothing,
            concurrent_writers_on_one_session_stay_consistent,
            concurrent_mixed_writers_end_consistent,
            no_write_racing_a_delete_brings_the_session_back,
            s4_6_rotate_racing_a_delete_has_one_winner,
            s7_3_concurrent_creates_at_capacity_respect_the_cap,
            s10_by_user_lists_that_users_sessions_with_their_keys,
            s4_1_by_handle_finds_a_session_by_its_key_prefix,
            s10_delete_user_removes_exactly_that_users_sessions,
            s10_delete_user_racing_rotations_leaves_none_of_that_user,
            s7_3_set_max_sessions_applies_at_the_next_create,
            s7_3_purge_and_eviction_follow_every_write,
            concurrent_writers_keep_every_lookup_consistent,
        );
    };
    (@tests $backend:ident, $open:expr; $($behaviour:ident,)*) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $behaviour() {
                    super::$behaviour($open).await;
                }
            )*
        }
    };
}

const T0: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;
const ROOMY: usize = 10_000;

fn key() -> SessionKey {
    SessionId::generate().expect("CSPRNG").key()
}

/// An anonymous session last seen at `last_seen`, live for an hour.
fn anon(last_seen: u64) -> Arc<Session> {
    let mut s = Session::new(last_seen, "192.0.2.1".into(), "test", "app");
    s.expires_at = last_seen + HOUR;
    Arc::new(s)
}

fn with_user(last_seen: u64, user: &str) -> Arc<Session> {
    let mut s = anon(last_seen);
    Arc::make_mut(&mut s).identity = Some(Identity {
        user: user.into(),
        email: None,
        groups: vec![],
    });
    s
}

/// A session with every field set to something other than its default.
fn everything() -> Session {
    let mut s = Session::new(T0, "2001:db8::7".into(), "Mozilla/5.0 (X11) ü", "billing");
    s.started = T0 + 1_000;
    s.last_seen = T0 + 2_000;
    s.expires_at = T0 + HOUR;
    s.identity = Some(Identity {
        user: "alice".into(),
        email: Some("alice@example.com".into()),
        groups: vec!["admins".into(), "ops".into()],
    });
    for (route, raw, request_path) in [
        ("billing", "sid=abc123; Path=/", "/"),
        ("billing", "pref=dark; Max-Age=3600", "/settings/x"),
        ("wiki", "wsid=z=9; Path=/w", "/w/page"),
    ] {
        let sc = SetCookie::parse(raw).expect("valid Set-Cookie");
        assert!(s
            .jar_mut(route)
            .store(&sc, request_path, T0, 65_536)
            .changed());
    }
    s
}

async fn create_then_load_round_trips_every_field(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    let (k, s) = (key(), Arc::new(everything()));
    store.create(&k, &s).await.unwrap();
    let loaded = store.load(&k).await.unwrap().expect("just created");
    assert_eq!(*loaded, *s);
    assert_eq!(loaded.jar("billing").unwrap().cookies().len(), 2);
    assert_eq!(loaded.jar("wiki").unwrap().cookies()[0].value, "z=9");
}

async fn load_of_an_unknown_key_is_none(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    store.create(&key(), &anon(T0)).await.unwrap();
    assert!(store.load(&key()).await.unwrap().is_none());
}

async fn update_replaces_an_existing_session(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    let k = key();
    store.create(&k, &anon(T0)).await.unwrap();
    let changed = Arc::new(everything());
    assert!(store.update(&k, &changed).await.unwrap());
    assert_eq!(*store.load(&k).await.unwrap().unwrap(), *changed);
    assert_eq!(store.count().await.unwrap(), 1);
}

async fn update_of_a_missing_or_deleted_session_writes_nothing(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    let (never, deleted) = (key(), key());
    assert!(!store.update(&never, &anon(T0)).await.unwrap());
    store.create(&deleted, &anon(T0)).await.unwrap();
    assert!(store.delete(&deleted).await.unwrap());
    assert!(!store.update(&deleted, &anon(T0 + 1)).await.unwrap());
    assert!(store.load(&never).await.unwrap().is_none());
    assert!(store.load(&deleted).await.unwrap().is_none());
    assert_eq!(store.count().await.unwrap(), 0);
}

async fn touch_records_activity(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    let (k, s) = (key(), Arc::new(everything()));
    store.create(&k, &s).await.unwrap();
    assert!(store.touch(&k, T0 + 60_000, T0 + 2 * HOUR).await.unwrap());
    let mut expected = (*s).clone();
    expected.last_seen = T0 + 60_000;
    expected.expires_at = T0 + 2 * HOUR;
    assert_eq!(*store.load(&k).await.unwrap().unwrap(), expected);
}

async fn touch_of_a_missing_session_writes_nothing(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    let (never, deleted) = (key(), key());
    assert!(!store.touch(&never, T0, T0 + HOUR).await.unwrap());
    store.create(&deleted, &anon(T0)).await.unwrap();
    store.delete(&deleted).await.unwrap();
    assert!(!store.touch(&deleted, T0, T0 + HOUR).await.unwrap());
    assert!(store.load(&never).await.unwrap().is_none());
    assert!(store.load(&deleted).await.unwrap().is_none());
    assert_eq!(store.count().await.unwrap(), 0);
}

async fn s4_6_rotate_moves_the_session_and_the_old_key_stops_working(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    let (old, new, other) = (key(), key(), key());
    store.create(&old, &anon(T0)).await.unwrap();
    store.create(&other, &anon(T0)).await.unwrap();
    let logged_in = Arc::new(everything());
    assert!(store.rotate(&old, &new, &logged_in).await.unwrap());
    assert!(store.load(&old).await.unwrap().is_none());
    assert_eq!(*store.load(&new).await.unwrap().unwrap(), *logged_in);
    assert!(!store.update(&old, &anon(T0)).await.unwrap());
    assert!(!store.delete(&old).await.unwrap());
    assert_eq!(*store.load(&other).await.unwrap().unwrap(), *anon(T0));
    assert_eq!(store.count().await.unwrap(), 2);
}

async fn s4_6_rotate_of_a_missing_session_writes_nothing(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    let (never, revoked, new) = (key(), key(), key());
    assert!(!store.rotate(&never, &new, &anon(T0)).await.unwrap());
    store.create(&revoked, &anon(T0)).await.unwrap();
    store.delete(&revoked).await.unwrap();
    assert!(!store.rotate(&revoked, &new, &anon(T0)).await.unwrap());
    assert!(store.load(&new).await.unwrap().is_none());
    assert!(store.load(&revoked).await.unwrap().is_none());
    assert_eq!(store.count().await.unwrap(), 0);
}

async fn delete_is_true_once_then_false(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    let (k, kept) = (key(), key());
    store.create(&k, &anon(T0)).await.unwrap();
    store.create(&kept, &anon(T0)).await.unwrap();
    assert!(store.delete(&k).await.unwrap());
    assert!(!store.delete(&k).await.unwrap());
    assert!(!store.delete(&key()).await.unwrap());
    assert!(store.load(&k).await.unwrap().is_none());
    assert!(store.load(&kept).await.unwrap().is_some());
}

async fn s7_3_purge_removes_exactly_the_ended_sessions(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    let now = T0 + HOUR;
    let mut ended = Vec::new();
    let mut live = Vec::new();
    // Anonymous and logged-in alike; `expires_at == now` has ended.
    for (expires_at, user) in [
        (now - HOUR, None),
        (now - 1, Some("alice")),
        (now, None),
        (now + 1, None),
        (now + 1, Some("bob")),
        (now + HOUR, None),
    ] {
        let k = key();
        let mut s = user.map_or_else(|| anon(T0), |u| with_user(T0, u));
        Arc::make_mut(&mut s).expires_at = expires_at;
        store.create(&k, &s).await.unwrap();
        if expires_at <= now {
            ended.push(k);
        } else {
            live.push(k);
        }
    }
    assert_eq!(store.purge(now).await.unwrap(), ended.len());
    for k in &ended {
        assert!(store.load(k).await.unwrap().is_none());
    }
    for k in &live {
        assert!(store.load(k).await.unwrap().is_some());
    }
    assert_eq!(store.count().await.unwrap(), live.len());
    assert_eq!(store.purge(now).await.unwrap(), 0);
}

async fn count_follows_creates_and_deletes(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    assert_eq!(store.count().await.unwrap(), 0);
    let keys: Vec<_> = (0..5).map(|_| key()).collect();
    for k in &keys {
        store.create(k, &anon(T0)).await.unwrap();
    }
    assert_eq!(store.count().await.unwrap(), 5);
    store.delete(&keys[0]).await.unwrap();
    store.update(&keys[1], &anon(T0 + 1)).await.unwrap();
    store.touch(&keys[2], T0 + 2, T0 + HOUR).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 4);
}

/// Fills a store of `cap` with anonymous sessions idle since shuffled times
/// and ten logged-in ones idle longest of all, then creates one more and
/// checks SPEC §7.3: the new session is in, the cap holds, no identity
/// went, and the anonymous sessions that went are the longest idle.
async fn s7_3_at_capacity_create_evicts_the_longest_idle_anonymous_sessions(open: impl Open) {
    const CAP: usize = 250;
    let (store, _g) = open.open(CAP).await;
    let mut held = Vec::new();
    for i in 0..CAP as u64 {
        let s = match i {
            0..10 => with_user(T0 + i, "alice"),
            // 7 is coprime with 240: every time once, out of order.
            _ => anon(T0 + 1_000 + (i * 7) % 240),
        };
        let k = key();
        store.create(&k, &s).await.unwrap();
        held.push((k, s));
    }
    let new = key();
    store.create(&new, &anon(T0 + HOUR)).await.unwrap();
    assert!(store.load(&new).await.unwrap().is_some());

    let mut gone = Vec::new();
    let mut kept = Vec::new();
    for (k, s) in &held {
        if store.load(k).await.unwrap().is_some() {
            kept.push(s);
        } else {
            gone.push(s);
        }
    }
    assert!(!gone.is_empty(), "a create at the cap must make room");
    assert!(gone.iter().all(|s| s.identity.is_none()));
    let newest_gone = gone.iter().map(|s| s.last_seen).max().unwrap();
    let oldest_kept_anon = kept
        .iter()
        .filter(|s| s.identity.is_none())
        .map(|s| s.last_seen)
        .min()
        .unwrap();
    assert!(newest_gone <= oldest_kept_anon, "evicted a fresher session");
    let count = store.count().await.unwrap();
    assert!(count <= CAP);
    assert_eq!(count, kept.len() + 1);
}

async fn s7_3_touch_counts_for_longest_idle(open: impl Open) {
    let (store, _g) = open.open(2).await;
    let (a, b) = (key(), key());
    store.create(&a, &anon(T0)).await.unwrap();
    store.create(&b, &anon(T0 + 1)).await.unwrap();
    store.touch(&a, T0 + 100, T0 + HOUR).await.unwrap();
    store.create(&key(), &anon(T0 + 200)).await.unwrap();
    assert!(store.load(&a).await.unwrap().is_some());
    assert!(store.load(&b).await.unwrap().is_none());
}

async fn s7_3_sessions_with_an_identity_are_never_evicted(open: impl Open) {
    let (store, _g) = open.open(3).await;
    let users: Vec<_> = (0..3).map(|_| key()).collect();
    for (i, k) in users.iter().enumerate() {
        store
            .create(k, &with_user(T0 + i as u64, "alice"))
            .await
            .unwrap();
    }
    let (refused_anon, refused_user) = (key(), key());
    let r = store.create(&refused_anon, &anon(T0 + HOUR)).await;
    assert!(matches!(r, Err(StoreError::Full)), "{r:?}");
    let r = store
        .create(&refused_user, &with_user(T0 + HOUR, "bob"))
        .await;
    assert!(matches!(r, Err(StoreError::Full)), "{r:?}");
    assert!(store.load(&refused_anon).await.unwrap().is_none());
    assert!(store.load(&refused_user).await.unwrap().is_none());
    for k in &users {
        assert!(store.load(k).await.unwrap().is_some());
    }
    assert_eq!(store.count().await.unwrap(), 3);
    // Room again once one goes.
    store.delete(&users[0]).await.unwrap();
    store.create(&refused_anon, &anon(T0 + HOUR)).await.unwrap();
}

const TASKS: usize = 8;
const EACH: usize = 50;

/// Runs `work(task)` on `TASKS` tasks at once and collects their results.
async fn on_tasks<S, T, F, Fut>(store: &Arc<S>, work: F) -> Vec<T>
where
    S: SessionStore + 'static,
    T: Send + 'static,
    F: Fn(Arc<S>, usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let handles: Vec<_> = (0..TASKS)
        .map(|t| tokio::spawn(work(Arc::clone(store), t)))
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task panicked"));
    }
    out
}

async fn concurrent_creates_lose_nothing(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    let keys = on_tasks(&store, |store, t| async move {
        let mut keys = Vec::new();
        for i in 0..EACH {
            let k = key();
            store
                .create(&k, &anon(T0 + (t * EACH + i) as u64))
                .await
                .unwrap();
            keys.push(k);
        }
        keys
    })
    .await;
    assert_eq!(store.count().await.unwrap(), TASKS * EACH);
    for (t, keys) in keys.iter().enumerate() {
        for (i, k) in keys.iter().enumerate() {
            let s = store.load(k).await.unwrap().expect("a create was lost");
            assert_eq!(s.last_seen, T0 + (t * EACH + i) as u64);
        }
    }
}

async fn concurrent_writers_on_one_session_stay_consistent(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    let k = key();
    store.create(&k, &anon(T0)).await.unwrap();
    let all_applied = on_tasks(&store, move |store, t| async move {
        let mut ok = true;
        for i in 0..EACH {
            let mut s = anon(T0);
            Arc::make_mut(&mut s).user_agent = format!("task {t} write {i}");
            ok &= store.update(&k, &s).await.unwrap();
            ok &= store.touch(&k, T0 + 1, T0 + HOUR + 1).await.unwrap();
        }
        ok
    })
    .await;
    assert!(all_applied.into_iter().all(|ok| ok));
    let s = store.load(&k).await.unwrap().unwrap();
    assert!(s.user_agent.starts_with("task "), "{:?}", s.user_agent);
    assert_eq!(store.count().await.unwrap(), 1);
    let deleted = on_tasks(&store, move |store, _| async move {
        store.delete(&k).await.unwrap()
    })
    .await;
    assert_eq!(deleted.iter().filter(|d| **d).count(), 1);
    assert_eq!(store.count().await.unwrap(), 0);
}

/// Each task creates its own sessions, deletes every third and updates the
/// rest, while all tasks also write to one shared session.
async fn concurrent_mixed_writers_end_consistent(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    let shared = key();
    store.create(&shared, &anon(T0)).await.unwrap();
    let outcomes = on_tasks(&store, move |store, t| async move {
        let mut outcome = Vec::new();
        for i in 0..EACH {
            let k = key();
            store.create(&k, &anon(T0)).await.unwrap();
            store
                .touch(&shared, T0 + i as u64, T0 + HOUR)
                .await
                .unwrap();
            let version = with_user(T0 + (t * EACH + i) as u64, "carol");
            if i % 3 == 0 {
                assert!(store.delete(&k).await.unwrap());
                outcome.push((k, None));
            } else {
                assert!(store.update(&k, &version).await.unwrap());
                outcome.push((k, Some(version)));
            }
        }
        outcome
    })
    .await;
    let mut expected = 1;
    for (k, version) in outcomes.iter().flatten() {
        let loaded = store.load(k).await.unwrap();
        assert_eq!(loaded.as_deref(), version.as_deref());
        expected += usize::from(version.is_some());
    }
    assert_eq!(store.count().await.unwrap(), expected);
    assert!(store.load(&shared).await.unwrap().is_some());
}

/// A logout or revocation that lands while other requests on the same
/// session write to it: whatever the order, the session stays gone.
async fn no_write_racing_a_delete_brings_the_session_back(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    for round in 0..EACH as u64 {
        let k = key();
        store.create(&k, &anon(T0)).await.unwrap();
        let writes = on_tasks(&store, move |store, t| async move {
            match t % 3 {
                0 => store.delete(&k).await.unwrap(),
                1 => store.update(&k, &anon(T0 + round)).await.unwrap(),
                _ => store.touch(&k, T0 + round, T0 + HOUR).await.unwrap(),
            }
        })
        .await;
        let deletes_won = writes.iter().step_by(3).filter(|d| **d).count();
        assert_eq!(deletes_won, 1);
        assert!(store.load(&k).await.unwrap().is_none());
    }
    assert_eq!(store.count().await.unwrap(), 0);
}

async fn s4_6_rotate_racing_a_delete_has_one_winner(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    let mut rotated = 0;
    for _ in 0..EACH {
        let (old, new) = (key(), key());
        store.create(&old, &anon(T0)).await.unwrap();
        let won = on_tasks(&store, move |store, t| async move {
            if t == 0 {
                store
                    .rotate(&old, &new, &with_user(T0, "dave"))
                    .await
                    .unwrap()
            } else {
                store.delete(&old).await.unwrap()
            }
        })
        .await;
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        assert!(store.load(&old).await.unwrap().is_none());
        assert_eq!(store.load(&new).await.unwrap().is_some(), won[0]);
        rotated += usize::from(won[0]);
    }
    assert_eq!(store.count().await.unwrap(), rotated);
}

async fn s7_3_concurrent_creates_at_capacity_respect_the_cap(open: impl Open) {
    const CAP: usize = 20;
    let (store, _g) = open.open(CAP).await;
    on_tasks(&store, |store, t| async move {
        for i in 0..EACH {
            let s = anon(T0 + (i * TASKS + t) as u64);
            store.create(&key(), &s).await.unwrap();
        }
    })
    .await;
    let count = store.count().await.unwrap();
    assert!(count <= CAP, "{count} sessions in a store capped at {CAP}");
}

/// `keyed` ordered by key, to compare with an expectation.
fn by_key(mut keyed: Keyed) -> Keyed {
    keyed.sort_by_key(|(k, _)| *k);
    keyed
}

fn keys_of(keyed: Keyed) -> Vec<SessionKey> {
    by_key(keyed).into_iter().map(|(k, _)| k).collect()
}

fn sorted(mut keys: Vec<SessionKey>) -> Vec<SessionKey> {
    keys.sort();
    keys
}

/// The handle of SPEC §4.1 as bytes: the key's first 8.
fn handle(k: &SessionKey) -> [u8; 8] {
    k.0[..8].try_into().expect("8 bytes")
}

async fn s10_by_user_lists_that_users_sessions_with_their_keys(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    let (a1, a2, bob, nobody, promoted, demoted) = (key(), key(), key(), key(), key(), key());
    store.create(&a1, &with_user(T0, "alice")).await.unwrap();
    store
        .create(&a2, &with_user(T0 + 1, "alice"))
        .await
        .unwrap();
    store.create(&bob, &with_user(T0, "bob")).await.unwrap();
    store.create(&nobody, &anon(T0)).await.unwrap();
    // An update that gives an identity, and one that takes it away.
    store.create(&promoted, &anon(T0)).await.unwrap();
    let alice_later = with_user(T0 + 2, "alice");
    assert!(store.update(&promoted, &alice_later).await.unwrap());
    store
        .create(&demoted, &with_user(T0, "alice"))
        .await
        .unwrap();
    assert!(store.update(&demoted, &anon(T0 + 3)).await.unwrap());
    let expected = by_key(vec![
        (a1, with_user(T0, "alice")),
        (a2, with_user(T0 + 1, "alice")),
        (promoted, alice_later),
    ]);
    assert_eq!(by_key(store.by_user("alice").await.unwrap()), expected);

    // Rotation moves the key, deletion removes it, a touch keeps it.
    let a3 = key();
    assert!(store
        .rotate(&a1, &a3, &with_user(T0 + 5, "alice"))
        .await
        .unwrap());
    assert!(store.delete(&a2).await.unwrap());
    assert!(store.touch(&promoted, T0 + 9, T0 + HOUR).await.unwrap());
    assert_eq!(
        keys_of(store.by_user("alice").await.unwrap()),
        sorted(vec![a3, promoted])
    );
    assert_eq!(keys_of(store.by_user("bob").await.unwrap()), [bob]);
    for other in ["nobody", "alic", "ALICE", ""] {
        assert!(store.by_user(other).await.unwrap().is_empty(), "{other}");
    }
}

async fn s4_1_by_handle_finds_a_session_by_its_key_prefix(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    let (k, other, new) = (key(), key(), key());
    store.create(&k, &anon(T0)).await.unwrap();
    store.create(&other, &with_user(T0, "alice")).await.unwrap();
    // The handle text of the logs and the admin API names these bytes.
    assert_eq!(parse_handle(k.handle().as_str()), Some(handle(&k)));
    assert_eq!(store.by_handle(&handle(&k)).await.unwrap(), [(k, anon(T0))]);
    assert!(store.by_handle(&handle(&key())).await.unwrap().is_empty());
    let mut near = handle(&k);
    near[7] ^= 1;
    assert!(store.by_handle(&near).await.unwrap().is_empty());

    assert!(store.rotate(&k, &new, &anon(T0 + 1)).await.unwrap());
    assert!(store.by_handle(&handle(&k)).await.unwrap().is_empty());
    assert_eq!(
        keys_of(store.by_handle(&handle(&new)).await.unwrap()),
        [new]
    );
    assert!(store.delete(&new).await.unwrap());
    assert!(store.by_handle(&handle(&new)).await.unwrap().is_empty());

    // Keys sharing the first 8 bytes (a 64-bit collision) are all named;
    // one differing in them is not.
    let prefix = [0xa5u8; 8];
    let with_prefix = |fill: u8, last: u8| {
        let mut b = [fill; 32];
        b[..8].copy_from_slice(&prefix);
        b[7] = b[7].wrapping_add(last);
        SessionKey(b)
    };
    let (lo, hi, next) = (
        with_prefix(0x00, 0),
        with_prefix(0xff, 0),
        with_prefix(0x00, 1),
    );
    for k in [lo, hi, next] {
        store.create(&k, &anon(T0)).await.unwrap();
    }
    assert_eq!(keys_of(store.by_handle(&prefix).await.unwrap()), [lo, hi]);
}

async fn s10_delete_user_removes_exactly_that_users_sessions(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    let alice: Vec<_> = (0..3).map(|_| key()).collect();
    let mut ended = with_user(T0, "alice");
    Arc::make_mut(&mut ended).expires_at = T0;
    store
        .create(&alice[0], &with_user(T0, "alice"))
        .await
        .unwrap();
    store
        .create(&alice[1], &with_user(T0 + 1, "alice"))
        .await
        .unwrap();
    // Not yet purged: removed too.
    store.create(&alice[2], &ended).await.unwrap();
    let (bob, nobody) = (key(), key());
    store.create(&bob, &with_user(T0, "bob")).await.unwrap();
    store.create(&nobody, &anon(T0)).await.unwrap();

    let removed = by_key(store.delete_user("alice").await.unwrap());
    let expected = by_key(vec![
        (alice[0], with_user(T0, "alice")),
        (alice[1], with_user(T0 + 1, "alice")),
        (alice[2], ended),
    ]);
    assert_eq!(removed, expected);
    for k in &alice {
        assert!(store.load(k).await.unwrap().is_none());
        assert!(!store.delete(k).await.unwrap());
    }
    assert!(store.by_user("alice").await.unwrap().is_empty());
    assert!(store
        .by_handle(&handle(&alice[0]))
        .await
        .unwrap()
        .is_empty());
    assert!(store.load(&bob).await.unwrap().is_some());
    assert!(store.load(&nobody).await.unwrap().is_some());
    assert_eq!(store.count().await.unwrap(), 2);
    assert!(store.delete_user("alice").await.unwrap().is_empty());
    assert!(store.delete_user("nobody").await.unwrap().is_empty());
    // Nothing of alice's is left to purge or to count.
    assert_eq!(store.purge(u64::MAX).await.unwrap(), 2);
}

/// A revoke-all while the user's sessions rotate (a re-login on each
/// device): whatever the order, none of them survives under either key.
async fn s10_delete_user_racing_rotations_leaves_none_of_that_user(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    for _ in 0..EACH / 5 {
        let olds: Vec<_> = (1..TASKS).map(|_| key()).collect();
        let news: Vec<_> = (1..TASKS).map(|_| key()).collect();
        for k in &olds {
            store.create(k, &with_user(T0, "frank")).await.unwrap();
        }
        let (o, n) = (olds.clone(), news.clone());
        let outcomes = on_tasks(&store, move |store, t| {
            let pair = t.checked_sub(1).map(|i| (o[i], n[i]));
            async move {
                match pair {
                    None => (keys_of(store.delete_user("frank").await.unwrap()), false),
                    Some((old, new)) => {
                        let s = with_user(T0 + 1, "frank");
                        (Vec::new(), store.rotate(&old, &new, &s).await.unwrap())
                    }
                }
            }
        })
        .await;
        let removed = &outcomes[0].0;
        for i in 0..olds.len() {
            let rotated = outcomes[i + 1].1;
            let survivor = if rotated { news[i] } else { olds[i] };
            assert!(removed.contains(&survivor), "session {i} was not revoked");
            assert!(store.load(&olds[i]).await.unwrap().is_none());
            assert!(store.load(&news[i]).await.unwrap().is_none());
        }
        assert_eq!(removed.len(), olds.len());
        assert!(store.by_user("frank").await.unwrap().is_empty());
    }
    assert_eq!(store.count().await.unwrap(), 0);
}

async fn s7_3_set_max_sessions_applies_at_the_next_create(open: impl Open) {
    let (store, _g) = open.open(10).await;
    let held: Vec<_> = (0..10).map(|_| key()).collect();
    for (i, k) in held.iter().enumerate() {
        store.create(k, &anon(T0 + i as u64)).await.unwrap();
    }
    // Lowered: the next create evicts down to the new cap, longest idle first.
    store.set_max_sessions(4);
    let first = key();
    store.create(&first, &anon(T0 + 100)).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 4);
    for (i, k) in held.iter().enumerate() {
        assert_eq!(store.load(k).await.unwrap().is_some(), i >= 7, "{i}");
    }
    // Raised: room again, nothing evicted until the new cap.
    store.set_max_sessions(6);
    for i in 0..2 {
        store.create(&key(), &anon(T0 + 200 + i)).await.unwrap();
    }
    assert_eq!(store.count().await.unwrap(), 6);
    assert!(store.load(&held[7]).await.unwrap().is_some());
    store.create(&key(), &anon(T0 + 300)).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 6);
    assert!(store.load(&held[7]).await.unwrap().is_none());
    assert!(store.load(&first).await.unwrap().is_some());
}

/// Purge and eviction go by a session's current times and identity, as
/// touch, update and rotate left them, not as it was created.
async fn s7_3_purge_and_eviction_follow_every_write(open: impl Open) {
    let (store, _g) = open.open(3).await;
    let (touched, updated, old, new) = (key(), key(), key(), key());
    store.create(&touched, &anon(T0)).await.unwrap();
    store.create(&updated, &anon(T0 + 1)).await.unwrap();
    store.create(&old, &anon(T0 + 2)).await.unwrap();
    // Seen later and ending later.
    assert!(store.touch(&touched, T0 + 50, T0 + 3 * HOUR).await.unwrap());
    // Gains an identity (never evictable) and ends sooner.
    let mut u = with_user(T0 + 1, "erin");
    Arc::make_mut(&mut u).expires_at = T0 + 10;
    assert!(store.update(&updated, &u).await.unwrap());
    // Moves to a new key, ending later than it would have.
    let mut r = anon(T0 + 2);
    Arc::make_mut(&mut r).expires_at = T0 + 2 * HOUR;
    assert!(store.rotate(&old, &new, &r).await.unwrap());

    // At the cap, the longest-idle anonymous session is the rotated one.
    let extra = key();
    store.create(&extra, &anon(T0 + 60)).await.unwrap();
    assert!(store.load(&new).await.unwrap().is_none());
    assert!(store.load(&touched).await.unwrap().is_some());
    assert!(store.load(&updated).await.unwrap().is_some());

    // `updated` now ends at T0 + 10 and `extra` at T0 + 60 + HOUR;
    // `touched` lives on to T0 + 3 h.
    assert_eq!(store.purge(T0 + HOUR + 100).await.unwrap(), 2);
    assert!(store.load(&touched).await.unwrap().is_some());
    assert_eq!(store.count().await.unwrap(), 1);
    assert!(store.by_user("erin").await.unwrap().is_empty());
}

/// Many tasks create, update, touch, rotate and delete at once; afterwards
/// every lookup (by user, by handle), purge and count agree with what each
/// task knows it left behind.
async fn concurrent_writers_keep_every_lookup_consistent(open: impl Open) {
    let (store, _g) = open.open(ROOMY).await;
    let left = on_tasks(&store, |store, t| async move {
        let mut left: Vec<(SessionKey, Option<&'static str>)> = Vec::new();
        for i in 0..EACH {
            let user = ["gus", "hal"][(t + i) % 2];
            let at = T0 + (t * EACH + i) as u64;
            let k = key();
            store.create(&k, &anon(at)).await.unwrap();
            match i % 5 {
                0 => assert!(store.delete(&k).await.unwrap()),
                1 => {
                    assert!(store.update(&k, &with_user(at, user)).await.unwrap());
                    left.push((k, Some(user)));
                }
                2 => {
                    assert!(store.touch(&k, at + 1, at + 2 * HOUR).await.unwrap());
                    left.push((k, None));
                }
                3 => {
                    let new = key();
                    assert!(store.rotate(&k, &new, &with_user(at, user)).await.unwrap());
                    left.push((new, Some(user)));
                }
                _ => {
                    assert!(store.update(&k, &with_user(at, user)).await.unwrap());
                    assert!(store.update(&k, &anon(at + 1)).await.unwrap());
                    left.push((k, None));
                }
            }
        }
        left
    })
    .await;
    let left: Vec<_> = left.into_iter().flatten().collect();
    for user in ["gus", "hal"] {
        let expected = left
            .iter()
            .filter(|(_, u)| *u == Some(user))
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(
            keys_of(store.by_user(user).await.unwrap()),
            sorted(expected),
            "{user}"
        );
    }
    for (k, _) in &left {
        assert_eq!(keys_of(store.by_handle(&handle(k)).await.unwrap()), [*k]);
    }
    assert_eq!(store.count().await.unwrap(), left.len());
    assert_eq!(store.purge(u64::MAX).await.unwrap(), left.len());
    assert_eq!(store.count().await.unwrap(), 0);
    assert!(store.by_user("gus").await.unwrap().is_empty());
}

conformance!(memory, |max| async move { (MemoryStore::new(max), ()) });
conformance!(embedded, |max| async move {
    let dir = tempfile::tempdir().unwrap();
    (
        EmbeddedStore::open(&dir.path().join("s.db"), max).unwrap(),
        dir,
    )
});

// Each test gets its own redis-server on a free loopback port (killed with
// the guard) and its own key prefix. Every case runs, the exact caps of
// SPEC §7.3 included: the create script counts, evicts and inserts in one
// atomic step in Redis.
conformance!(redis, |max| async move {
    let server = redis_fixture::RedisServer::start();
    let opts = RedisOptions {
        urls: vec![server.url()],
        cluster: false,
        key_prefix: format!("t{}:", server.port),
        password: None,
    };
    (RedisStore::open(&opts, max).unwrap(), server)
});

/// One 3-node Cluster shared by the `redis_cluster` cases that run at
/// once (starting one costs about a second), stopped when the last of them
/// drops its handle; each case has its own key prefix.
fn shared_cluster() -> Arc<redis_fixture::RedisCluster> {
    static SHARED: std::sync::Mutex<std::sync::Weak<redis_fixture::RedisCluster>> =
        std::sync::Mutex::new(std::sync::Weak::new());
    let mut shared = SHARED.lock().unwrap();
    if let Some(c) = shared.upgrade() {
        return c;
    }
    let c = Arc::new(redis_fixture::RedisCluster::start());
    *shared = Arc::downgrade(&c);
    c
}

/// Key prefixes for the cases sharing a Cluster.
static NEXT_PREFIX: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

conformance!(redis_cluster, |max| async move {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let n = NEXT_PREFIX.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let opts = RedisOptions {
        urls: cluster.urls(),
        cluster: true,
        key_prefix: format!("t{n}:"),
        password: None,
    };
    (RedisStore::open(&opts, max).unwrap(), cluster)
});
