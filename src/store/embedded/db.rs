//! The session database: one SQLite file (SPEC §7.4: a proven embedded
//! database, not a home-made format), opened by one process at a time.
//!
//! One table, `sessions (key, expires_at, data)`: `key` is the 32-byte
//! [`SessionKey`], `expires_at` the session's deadline in unix ms (for
//! people inspecting the file; the store decides from memory), and `data`
//! the [`Session`] in postcard, serde's compact binary form. The file says
//! what it is in SQLite's header: `application_id` marks it as cloakroom's
//! and `user_version` is the record format, so a foreign or newer file is
//! refused by name instead of misread.
//!
//! WAL with `synchronous = FULL`: a commit is on disk (fsync'd) when it
//! returns, and a crash leaves the last commit whole. `locking_mode =
//! EXCLUSIVE` keeps a second process off the file (and the WAL index in
//! this process's memory).

use std::fs::{DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::session::{Session, SessionKey};

/// "Clkr": marks the file as a cloakroom session database.
const APPLICATION_ID: i32 = 0x436c_6b72;
/// The record format in `data`; raise it (and convert older files at open)
/// whenever [`Session`]'s serialised shape changes.
const FORMAT: i32 = 1;

/// Why the database cannot be opened or read at start-up. Each says what
/// to do; the caller names the file.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot create its directory: {0}")]
    Dir(#[source] std::io::Error),
    #[error("cannot create it: {0}")]
    Create(#[source] std::io::Error),
    #[error("is damaged or not an SQLite database ({0}); move it aside to start with no sessions, or restore it from a backup")]
    Corrupt(#[source] rusqlite::Error),
    #[error("is in use by another process ({0}); one cloakroom per session database")]
    Busy(#[source] rusqlite::Error),
    #[error("{0}")]
    Sqlite(#[source] rusqlite::Error),
    #[error("is not a cloakroom session database (application_id {0:#x}); point store.path at another file")]
    Foreign(i32),
    #[error("was written by a newer cloakroom (record format {0}; this build reads {FORMAT})")]
    Newer(i32),
    #[error("holds a damaged session record ({0}); move it aside to start with no sessions, or restore it from a backup")]
    Record(String),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => DbError::Corrupt(e),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DbError::Busy(e),
            _ => DbError::Sqlite(e),
        }
    }
}

/// Opens (creating when missing, mode 0600 in a 0700 directory) and checks
/// the database, and takes its exclusive lock.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(DbError::Dir)?;
    }
    // SQLite would create the file with the umask's mode; the jars in it
    // are the upstreams' session secrets.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(DbError::Create(e)),
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // A restart may briefly overlap the old process's exit.
    conn.busy_timeout(Duration::from_secs(2))?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    // The first read of the file: a damaged header fails here.
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(DbError::Record(format!("journal_mode is {mode}, not wal")));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    // A big transaction grows the WAL; give the space back after it.
    conn.pragma_update(None, "journal_size_limit", 64 << 20)?;
    let app: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let format: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    match (app, format) {
        (0, 0) if tables == 0 => conn.execute_batch(&format!(
            "BEGIN EXCLUSIVE;
             CREATE TABLE sessions (
                 key BLOB PRIMARY KEY NOT NULL,
                 expires_at INTEGER NOT NULL,
                 data BLOB NOT NULL
             ) WITHOUT ROWID;
             PRAGMA application_id = {APPLICATION_ID};
             PRAGMA user_version = {FORMAT};
             COMMIT;"
        ))?,
        (APPLICATION_ID, FORMAT) => conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;")?,
        (APPLICATION_ID, newer) if newer > FORMAT => return Err(DbError::Newer(newer)),
        (APPLICATION_ID, other) => return Err(DbError::Record(format!("record format {other}"))),
        (other, _) => return Err(DbError::Foreign(other)),
    }
    Ok(conn)
}

/// Reads every session: each live one goes to `keep`; the keys of those
/// that ended by `now` are returned (to be deleted by the writer).
pub fn load(
    conn: &Connection,
    now: u64,
    mut keep: impl FnMut(SessionKey, Session),
) -> Result<Vec<SessionKey>, DbError> {
    let mut ended = Vec::new();
    let mut stmt = conn.prepare("SELECT key, data FROM sessions")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let key = row.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
        let key = SessionKey(
            key.try_into()
                .map_err(|_| DbError::Record(format!("a key of {} bytes", key.len())))?,
        );
        let data = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
        let session = decode(data).map_err(|e| DbError::Record(e.to_string()))?;
        if session.expires_at <= now {
            ended.push(key);
        } else {
            keep(key, session);
        }
    }
    Ok(ended)
}

/// Writes one batch in one transaction: each key's current session, or
/// its deletion when it has none.
pub fn write(
    conn: &mut Connection,
    batch: &[(SessionKey, Option<Arc<Session>>)],
) -> Result<(), rusqlite::Error> {
    if batch.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    {
        let mut put = tx.prepare(
            "INSERT OR REPLACE INTO sessions (key, expires_at, data) VALUES (?1, ?2, ?3)",
        )?;
        let mut delete = tx.prepare("DELETE FROM sessions WHERE key = ?1")?;
        let mut buf = Vec::new();
        for (key, session) in batch {
            match session {
                Some(s) => {
                    buf.clear();
                    buf = encode(s, buf);
                    let expires_at = i64::try_from(s.expires_at).unwrap_or(i64::MAX);
                    put.execute((&key.0[..], expires_at, &buf[..]))?;
                }
                None => {
                    delete.execute([&key.0[..]])?;
                }
            }
        }
    }
    tx.commit()
}

/// Appends `session`'s record to `buf`.
pub fn encode(session: &Session, buf: Vec<u8>) -> Vec<u8> {
    // Serialising into a Vec cannot fail: every field is a plain value.
    postcard::to_extend(session, buf).expect("a session always serialises")
}

pub fn decode(data: &[u8]) -> Result<Session, postcard::Error> {
    postcard::from_bytes(data)
}
