//! The embedded store over a real file: what survives a close and reopen,
//! what reaches the file, and how a bad file is refused. The contract
//! itself is `tests/store_conformance.rs`; killed processes are
//! `tests/store_embedded.rs`.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::session::jar::Jar;
use crate::session::setcookie::SetCookie;
use crate::session::{Identity, SessionId};

const T0: u64 = 4_000_000_000_000;
const HOUR: u64 = 3_600_000;

fn key() -> SessionKey {
    SessionId::generate().unwrap().key()
}

fn session(user: Option<&str>) -> Arc<Session> {
    let mut s = Session::new(T0, "192.0.2.9".into(), "Mozilla/5.0 test", "app");
    s.expires_at = T0 + HOUR;
    s.identity = user.map(|u| Identity {
        user: u.into(),
        email: Some(format!("{u}@example.com")),
        groups: vec!["staff".into()],
    });
    let sc = SetCookie::parse("sid=abc; Path=/").unwrap();
    let mut jar = Jar::default();
    jar.store(&sc, "/", T0, 65_536);
    s.jars.push(("app".into(), jar));
    Arc::new(s)
}

/// Rows in the file, read by a second connection (the store is closed).
fn rows(path: &Path) -> Vec<SessionKey> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn.prepare("SELECT key FROM sessions").unwrap();
    let keys = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|k| SessionKey(k.unwrap().try_into().unwrap()))
        .collect();
    keys
}

fn open(path: &Path) -> EmbeddedStore {
    EmbeddedStore::open(path, 1000).unwrap()
}

#[tokio::test]
async fn s7_4_every_change_survives_a_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/sessions.db");
    let (anon, user, rotated, gone, new) = (key(), key(), key(), key(), key());
    let store = open(&path);
    store.create(&anon, &session(None)).await.unwrap();
    store.create(&user, &session(Some("alice"))).await.unwrap();
    store.create(&rotated, &session(None)).await.unwrap();
    store.create(&gone, &session(None)).await.unwrap();
    assert!(store.touch(&anon, T0 + 5, T0 + 2 * HOUR).await.unwrap());
    assert!(store
        .rotate(&rotated, &new, &session(Some("bob")))
        .await
        .unwrap());
    assert!(store.delete(&gone).await.unwrap());
    let want: Vec<_> = [anon, user, new]
        .iter()
        .map(|k| (*k, block_on(store.load(k)).unwrap().unwrap()))
        .collect();
    drop(store);

    let store = open(&path);
    for (k, s) in &want {
        assert_eq!(store.load(k).await.unwrap().as_deref(), Some(&**s));
    }
    assert_eq!(store.load(&anon).await.unwrap().unwrap().last_seen, T0 + 5);
    assert!(store.load(&rotated).await.unwrap().is_none());
    assert!(store.load(&gone).await.unwrap().is_none());
    assert_eq!(store.count().await.unwrap(), 3);
    drop(store);
    let mut on_disk = rows(&path);
    on_disk.sort();
    let mut expected = vec![anon, user, new];
    expected.sort();
    assert_eq!(on_disk, expected);
}

#[cfg(unix)]
#[tokio::test]
async fn the_file_and_its_directory_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/sessions.db");
    drop(open(&path));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
}

#[tokio::test]
async fn s7_1_sessions_that_ended_while_closed_are_not_loaded_and_leave_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let (ended, live) = (key(), key());
    let store = open(&path);
    let mut s = (*session(None)).clone();
    s.expires_at = now_ms() - 1;
    store.create(&ended, &Arc::new(s)).await.unwrap();
    let mut s = (*session(None)).clone();
    s.expires_at = now_ms() + HOUR;
    store.create(&live, &Arc::new(s)).await.unwrap();
    drop(store);
    assert_eq!(rows(&path).len(), 2);

    let store = open(&path);
    assert!(store.load(&ended).await.unwrap().is_none());
    assert!(store.load(&live).await.unwrap().is_some());
    drop(store);
    assert_eq!(rows(&path), vec![live]);
}

#[tokio::test]
async fn s7_3_purge_and_eviction_remove_sessions_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = EmbeddedStore::open(&path, 3).unwrap();
    let (purged, evicted, user, kept) = (key(), key(), key(), key());
    let mut s = (*session(None)).clone();
    s.expires_at = T0 + 10;
    store.create(&purged, &Arc::new(s)).await.unwrap();
    let mut s = (*session(None)).clone();
    s.last_seen = T0 - 1;
    store.create(&evicted, &Arc::new(s)).await.unwrap();
    store.create(&user, &session(Some("carol"))).await.unwrap();
    assert_eq!(store.purge(T0 + 10).await.unwrap(), 1);
    store.create(&key(), &session(None)).await.unwrap();
    // At the cap (3): the longest-idle anonymous session makes room.
    store.create(&kept, &session(None)).await.unwrap();
    assert!(store.load(&evicted).await.unwrap().is_none());
    store.flush().await.unwrap();
    let on_disk = rows_while_open(&store, &path);
    assert!(!on_disk.contains(&purged));
    assert!(!on_disk.contains(&evicted));
    assert!(on_disk.contains(&user) && on_disk.contains(&kept));
    assert_eq!(on_disk.len(), 3);
}

/// The rows of a store's file: the store must close it first (it holds
/// the file's exclusive lock), so this stops its writer without a Drop.
fn rows_while_open(store: &EmbeddedStore, path: &Path) -> Vec<SessionKey> {
    store.writer.stop();
    rows(path)
}

#[tokio::test]
async fn s2_flush_commits_lazy_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = open(&path);
    let k = key();
    store.create(&k, &session(None)).await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(rows_while_open(&store, &path), vec![k]);
}

#[tokio::test]
async fn a_damaged_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let e = EmbeddedStore::open(&path, 10).unwrap_err();
    let text = e.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(
        matches!(
            e,
            OpenError::Embedded {
                source: DbError::Corrupt(_),
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains("move it aside"), "{text}");
}

#[tokio::test]
async fn a_damaged_page_inside_the_table_is_an_error_not_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = open(&path);
    for _ in 0..2000 {
        store.create(&key(), &session(None)).await.unwrap();
    }
    drop(store);
    // Overwrite the middle of the file (table pages, not the header).
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 8192].fill(0xa5);
    std::fs::write(&path, bytes).unwrap();
    let e = EmbeddedStore::open(&path, 10_000).unwrap_err();
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
}

#[tokio::test]
async fn a_foreign_or_newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&foreign).unwrap();
    conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(conn);
    let e = EmbeddedStore::open(&foreign, 10).unwrap_err();
    assert!(
        e.to_string().contains("not a cloakroom session database"),
        "{e}"
    );

    let newer = dir.path().join("newer.db");
    drop(open(&newer));
    let conn = rusqlite::Connection::open(&newer).unwrap();
    conn.pragma_update(None, "user_version", 9).unwrap();
    drop(conn);
    let e = EmbeddedStore::open(&newer, 10).unwrap_err();
    assert!(e.to_string().contains("newer cloakroom"), "{e}");
}

#[tokio::test]
async fn a_second_process_on_the_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let _first = open(&path);
    let e = EmbeddedStore::open(&path, 10).unwrap_err();
    assert!(e.to_string().contains("in use by another process"), "{e}");
}
