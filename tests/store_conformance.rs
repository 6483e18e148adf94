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

use cloakroom::session::setcookie::SetCookie;
use cloakroom::session::{Identity, Session, SessionId, SessionKey};
use cloakroom::store::{EmbeddedStore, MemoryStore, SessionStore, StoreError};

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

conformance!(memory, |max| async move { (MemoryStore::new(max), ()) });
conformance!(embedded, |max| async move {
    let dir = tempfile::tempdir().unwrap();
    (
        EmbeddedStore::open(&dir.path().join("s.db"), max).unwrap(),
        dir,
    )
});
