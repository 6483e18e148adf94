//! The Redis backend (SPEC §7.5): replicas sharing one Redis, standalone
//! or Cluster, share sessions. A session is one hash keyed by the hex of
//! its [`SessionKey`] (SHA-256 of the id: the raw id never reaches Redis),
//! beside a few indexes (per user, by handle, by expiry, by idle time for
//! eviction); `scripts` keeps every write and every multi-key read in one
//! Lua script, so they are atomic across replicas. Every key carries a TTL
//! (the session's time left plus [`GRACE`]), so Redis drops what the
//! purge missed.
//!
//! All of one deployment's keys share the hash tag `{sessions}`: in a
//! Cluster they live in one slot, on one primary. Rotation, revoke-all and
//! the `max_sessions` cap each change several keys atomically, which a
//! Cluster only allows within a slot; a Cluster here buys failover, not
//! capacity beyond one primary.
//!
//! Each script is short (it costs the keys it names, the user's sessions,
//! or one purge batch), with one exception: a reload that lowers
//! `max_sessions` far below the sessions held makes the next create evict
//! the difference in one script, during which Redis serves nothing else.
//!
//! Nothing is cached in the process: every request with a session reads
//! Redis once, so a revocation on one replica holds on all at once. Redis
//! unreachable: each call fails within [`connect::TIMEOUT`] with
//! [`StoreError::Unavailable`] (a 503 for requests that need a session;
//! `store::outage` logs the outage once and drops `cloakroom_store_up`),
//! and the connection comes back by itself when Redis does.

mod connect;
mod scripts;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use redis::RedisResult;

use super::{Keyed, SessionStore, StoreError};
use crate::session::{now_ms, Session, SessionKey};
use connect::{Conn, TIMEOUT};

pub use connect::{RedisOpenError, RedisOptions};

/// How long a key outlives its session's `expires_at`. The purge (every
/// 15 s on every replica) removes ended sessions with their index entries
/// well before Redis does, and the manager still sees an ended session as
/// ended (its audit event) rather than as unknown.
pub const GRACE: u64 = 60_000;

/// Sessions removed per purge script: Redis serves nothing else while a
/// script runs.
const PURGE_BATCH: usize = 1000;

pub struct RedisStore {
    conn: Conn,
    /// `<key_prefix>{sessions}:`, the start of every key.
    base: String,
    max: AtomicUsize,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("base", &self.base)
            .field("max_sessions", &self.max.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A Redis call that took longer than [`TIMEOUT`].
#[derive(Debug, thiserror::Error)]
#[error("Redis did not answer within {TIMEOUT:?}")]
struct TimedOut;

/// Lowercase hex of `bytes`: how keys name sessions.
fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

fn unhex(s: &str) -> Option<SessionKey> {
    let digits = s.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(SessionKey(out))
}

/// The TTL, in ms, of a session ending at `expires_at`.
fn ttl(expires_at: u64, now: u64) -> u64 {
    expires_at.saturating_sub(now).saturating_add(GRACE)
}

/// A stored session from its hash fields: the JSON, then `last_seen` and
/// `expires_at`, which a touch changes without rewriting the JSON.
fn decode(d: &str, l: Option<&str>, e: Option<&str>) -> Result<Session, StoreError> {
    let bad = |source: Box<dyn std::error::Error + Send + Sync>| {
        StoreError::unavailable("decode a stored session", source)
    };
    let mut s: Session = serde_json::from_str(d).map_err(|e| bad(e.into()))?;
    if let Some(l) = l {
        s.last_seen = l
            .parse()
            .map_err(|e: std::num::ParseIntError| bad(e.into()))?;
    }
    if let Some(e) = e {
        s.expires_at = e
            .parse()
            .map_err(|e: std::num::ParseIntError| bad(e.into()))?;
    }
    Ok(s)
}

/// Sessions answered by a script as `hex, d, l, e` groups.
fn keyed(flat: Vec<Option<String>>) -> Result<Keyed, StoreError> {
    let mut out = Vec::with_capacity(flat.len() / 4);
    for group in flat.chunks_exact(4) {
        let (Some(h), Some(d)) = (&group[0], &group[1]) else {
            continue;
        };
        let key = unhex(h).ok_or_else(|| {
            StoreError::unavailable("decode a stored session", "a malformed key in an index")
        })?;
        let s = decode(d, group[2].as_deref(), group[3].as_deref())?;
        out.push((key, Arc::new(s)));
    }
    Ok(out)
}

impl RedisStore {
    /// Sets the store up without waiting for Redis (see [`Conn::open`]).
    pub fn open(opts: &RedisOptions, max_sessions: usize) -> Result<Self, RedisOpenError> {
        let conn = Conn::open(opts)?;
        Ok(RedisStore {
            conn,
            base: format!("{}{{sessions}}:", opts.key_prefix),
            max: AtomicUsize::new(max_sessions),
        })
    }

    fn key(&self, key: &SessionKey) -> String {
        format!("{}k:{}", self.base, hex(&key.0))
    }

    /// A script call over this store's keys: `KEYS[1]` (which routes it to
    /// the slot in a Cluster) and the base as `ARGV[1]`.
    fn script(&self, s: &'static redis::Script) -> redis::ScriptInvocation<'static> {
        let mut inv = s.prepare_invoke();
        inv.key(format!("{}all", self.base)).arg(&self.base);
        inv
    }

    /// Runs one Redis call within [`TIMEOUT`].
    async fn run<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(TIMEOUT, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::unavailable(op, e)),
            Err(_) => Err(StoreError::unavailable(op, TimedOut)),
        }
    }

    /// A session's write arguments: hex, JSON, last_seen, expires_at,
    /// user ("" when anonymous), TTL.
    fn write_args(
        inv: &mut redis::ScriptInvocation<'_>,
        key: &SessionKey,
        s: &Session,
    ) -> Result<(), StoreError> {
        let d = serde_json::to_string(s).map_err(|e| StoreError::unavailable("encode", e))?;
        inv.arg(hex(&key.0))
            .arg(d)
            .arg(s.last_seen)
            .arg(s.expires_at)
            .arg(s.user().unwrap_or(""))
            .arg(ttl(s.expires_at, now_ms()));
        Ok(())
    }

    async fn flag(
        &self,
        op: &'static str,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<bool, StoreError> {
        let n: i64 = self.run(op, self.conn.invoke(&inv)).await?;
        Ok(n == 1)
    }
}

impl SessionStore for RedisStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<Session>>, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.key(key)).arg("d").arg("l").arg("e");
        let (d, l, e): (Option<String>, Option<String>, Option<String>) =
            self.run("load", self.conn.query(&cmd)).await?;
        d.map(|d| decode(&d, l.as_deref(), e.as_deref()).map(Arc::new))
            .transpose()
    }

    async fn create(&self, key: &SessionKey, session: &Arc<Session>) -> Result<(), StoreError> {
        let mut inv = self.script(&scripts::CREATE);
        Self::write_args(&mut inv, key, session)?;
        inv.arg(self.max.load(Ordering::Relaxed));
        match self.run("create", self.conn.invoke::<i64>(&inv)).await? {
            1 => Ok(()),
            0 => Err(StoreError::Full),
            _ => Err(StoreError::unavailable(
                "create",
                "a session already exists under the new key",
            )),
        }
    }

    async fn update(&self, key: &SessionKey, session: &Arc<Session>) -> Result<bool, StoreError> {
        let mut inv = self.script(&scripts::UPDATE);
        Self::write_args(&mut inv, key, session)?;
        self.flag("update", inv).await
    }

    async fn touch(
        &self,
        key: &SessionKey,
        last_seen: u64,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let mut inv = self.script(&scripts::TOUCH);
        inv.arg(hex(&key.0))
            .arg(last_seen)
            .arg(expires_at)
            .arg(ttl(expires_at, now_ms()));
        self.flag("touch", inv).await
    }

    async fn rotate(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        session: &Arc<Session>,
    ) -> Result<bool, StoreError> {
        let mut inv = self.script(&scripts::ROTATE);
        inv.arg(hex(&old.0));
        Self::write_args(&mut inv, new, session)?;
        self.flag("rotate", inv).await
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let mut inv = self.script(&scripts::DELETE);
        inv.arg(hex(&key.0));
        self.flag("delete", inv).await
    }

    async fn purge(&self, now: u64) -> Result<usize, StoreError> {
        let mut purged = 0;
        loop {
            let mut inv = self.script(&scripts::PURGE);
            inv.arg(now).arg(PURGE_BATCH);
            let (examined, removed): (usize, usize) =
                self.run("purge", self.conn.invoke(&inv)).await?;
            purged += removed;
            if examined < PURGE_BATCH {
                return Ok(purged);
            }
        }
    }

    async fn count(&self) -> Result<usize, StoreError> {
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(format!("{}all", self.base));
        self.run("count", self.conn.query(&cmd)).await
    }

    async fn by_user(&self, user: &str) -> Result<Keyed, StoreError> {
        let mut inv = self.script(&scripts::BY_USER);
        inv.arg(user);
        keyed(self.run("by_user", self.conn.invoke(&inv)).await?)
    }

    async fn by_handle(&self, handle: &[u8; 8]) -> Result<Keyed, StoreError> {
        let mut inv = self.script(&scripts::BY_HANDLE);
        inv.arg(hex(handle));
        keyed(self.run("by_handle", self.conn.invoke(&inv)).await?)
    }

    async fn delete_user(&self, user: &str) -> Result<Keyed, StoreError> {
        let mut inv = self.script(&scripts::DELETE_USER);
        inv.arg(user);
        keyed(self.run("delete_user", self.conn.invoke(&inv)).await?)
    }

    fn set_max_sessions(&self, max_sessions: usize) {
        self.max.store(max_sessions, Ordering::Relaxed);
    }

    /// Every write was answered only once Redis had it: nothing is pending
    /// here (what Redis keeps across its own restart is its persistence).
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_hex_of_the_session_key() {
        let k = SessionKey([0xab; 32]);
        assert_eq!(hex(&k.0), "ab".repeat(32));
        assert_eq!(unhex(&hex(&k.0)), Some(k));
        assert_eq!(unhex("ab"), None);
        assert_eq!(unhex(&"zz".repeat(32)), None);
        assert_eq!(hex(&k.0[..8]), k.handle().as_str());
    }

    #[test]
    fn s11_every_key_gets_a_positive_ttl_even_for_a_past_deadline() {
        assert_eq!(ttl(10_000, 4_000), 6_000 + GRACE);
        assert_eq!(ttl(1, 4_000), GRACE);
    }
}
