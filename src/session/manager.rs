//! Session lifecycle over a store: look up the cookie's session, create,
//! rotate, touch (coalesced by `touch_interval`), end; purge in the
//! background. Every lifecycle change emits its audit event (SPEC §11).

use std::sync::Arc;
use std::time::Duration;

use super::audit::audit;
use super::codec::{Keyring, SessionId, SessionKey, VerifyCache};
use super::limit::NewSessionLimit;
use super::now_ms;
use super::store::{Keyed, SessionStore, StoreError};
use super::{Ended, Session};
use crate::config::Session as SessionConfig;

/// Sessions over a store `S` (the process uses [`crate::store::Store`]).
pub struct Manager<S> {
    pub store: S,
    pub keys: Keyring,
    /// `session.max_new_sessions_per_client`, across reloads.
    pub new_sessions: NewSessionLimit,
}

/// A live session found from the request's cookie.
#[derive(Debug)]
pub struct Found {
    pub key: SessionKey,
    pub session: Arc<Session>,
    /// Verified under a fallback key: re-issue signed with the current key.
    pub resign: Option<SessionId>,
}

impl Found {
    /// Whether `touch_interval` has passed since the session was last seen.
    pub fn touch_due(&self, cfg: &SessionConfig, now: u64) -> bool {
        now.saturating_sub(self.session.last_seen) >= cfg.touch_interval.as_millis() as u64
    }
}

/// The outcome of looking at a request's session cookies.
#[derive(Debug)]
pub enum Lookup {
    /// No cookie with the session cookie's name.
    NoCookie,
    /// Cookies were sent but none names a live session: clear it.
    Invalid,
    Live(Box<Found>),
}

impl<S: SessionStore + 'static> Manager<S> {
    pub fn new(store: S, keys: Keyring) -> Self {
        Manager {
            store,
            keys,
            new_sessions: NewSessionLimit::default(),
        }
    }

    /// Tries each cookie value; the first that verifies and names a live
    /// session wins (SPEC §4.3). A bad MAC costs no store lookup; a store
    /// error fails the request rather than treating the session as unknown.
    /// `cache` is the client connection's (see [`VerifyCache`]).
    pub async fn lookup<'a>(
        &self,
        values: impl Iterator<Item = &'a [u8]>,
        cfg: &SessionConfig,
        route: Option<&str>,
        cache: &VerifyCache,
    ) -> Result<Lookup, StoreError> {
        let mut any = false;
        for value in values {
            any = true;
            let Some((key, resign)) = self.keys.verify_key(value, cache) else {
                audit("forged_cookie", None, None, route);
                continue;
            };
            let Some(session) = self.store.load(&key).await? else {
                continue;
            };
            let now = now_ms();
            if let Some(why) = session.ended(cfg, now) {
                // Boxed, as below: a rare path whose store future would
                // otherwise grow every request's state.
                if Box::pin(self.store.delete(&key)).await? {
                    crate::metrics::get().sessions_active.dec();
                }
                let event = match why {
                    Ended::Idle => "expired_idle",
                    Ended::Absolute => "expired_absolute",
                };
                audit(event, Some(&key), session.user(), route);
                continue;
            }
            return Ok(Lookup::Live(Box::new(Found {
                key,
                session,
                resign,
            })));
        }
        Ok(if any {
            Lookup::Invalid
        } else {
            Lookup::NoCookie
        })
    }

    /// Stores a new session under a fresh id.
    pub async fn create(
        &self,
        session: &mut Arc<Session>,
        cfg: &SessionConfig,
        route: Option<&str>,
    ) -> Result<(SessionId, SessionKey), StoreError> {
        let id = fresh_id()?;
        let key = id.key();
        set_deadline(session, cfg);
        self.store.create(&key, session).await?;
        crate::metrics::get().sessions_active.inc();
        audit("session_created", Some(&key), session.user(), route);
        Ok((id, key))
    }

    /// Writes a changed session back; `false` when it ended meanwhile.
    pub async fn save(
        &self,
        key: &SessionKey,
        session: &mut Arc<Session>,
        cfg: &SessionConfig,
    ) -> Result<bool, StoreError> {
        set_deadline(session, cfg);
        self.store.update(key, session).await
    }

    /// Moves a session to a fresh id; the old one stops working at once.
    /// `None` when the old one had already ended (nothing is written: a
    /// rotation never brings back a revoked session).
    pub async fn rotate(
        &self,
        old: &SessionKey,
        session: &mut Arc<Session>,
        cfg: &SessionConfig,
        route: Option<&str>,
    ) -> Result<Option<(SessionId, SessionKey)>, StoreError> {
        let id = fresh_id()?;
        let key = id.key();
        set_deadline(session, cfg);
        if !self.store.rotate(old, &key, session).await? {
            return Ok(None);
        }
        audit("rotated", Some(&key), session.user(), route);
        Ok(Some((id, key)))
    }

    /// Records activity when `touch_interval` has passed since the last write.
    pub async fn touch_if_due(
        &self,
        found: &mut Found,
        cfg: &SessionConfig,
        now: u64,
    ) -> Result<(), StoreError> {
        if !found.touch_due(cfg, now) {
            return Ok(());
        }
        // Copies the session once per touch_interval, not per request.
        let session = Arc::make_mut(&mut found.session);
        session.last_seen = now;
        session.expires_at = session.deadline(cfg);
        // Boxed: due once per `touch_interval`, and the store's future
        // (Redis's is about a kilobyte) is part of every request's state.
        Box::pin(self.store.touch(&found.key, now, found.session.expires_at))
            .await
            .map(drop)
    }

    /// Ends a session (logout, revocation); `true` when it existed.
    pub async fn end(
        &self,
        key: &SessionKey,
        user: Option<&str>,
        event: &str,
        route: Option<&str>,
    ) -> Result<bool, StoreError> {
        let existed = self.store.delete(key).await?;
        if existed {
            crate::metrics::get().sessions_active.dec();
            audit(event, Some(key), user, route);
        }
        Ok(existed)
    }

    /// The live sessions bound to `user`, oldest first (SPEC §10: never an
    /// ended one, even before the purge removes it).
    pub async fn sessions_of(&self, user: &str, cfg: &SessionConfig) -> Result<Keyed, StoreError> {
        let now = now_ms();
        let mut live = self.store.by_user(user).await?;
        live.retain(|(_, s)| s.ended(cfg, now).is_none());
        live.sort_by_key(|(key, s)| (s.created, *key));
        Ok(live)
    }

    /// Revokes one session (SPEC §10): deletes it and logs `revoked` once,
    /// however many revocations race; `true` when this call ended it. The
    /// next request with its cookie has no session, and an open websocket
    /// on it closes within a second ([`Manager::is_live`]).
    pub async fn revoke(&self, key: &SessionKey, session: &Session) -> Result<bool, StoreError> {
        self.end(key, session.user(), "revoked", Some(&session.route))
            .await
    }

    /// Revokes the live session whose handle is `handle` (SPEC §4.1);
    /// `false` when there is none. An ended session not yet purged is not
    /// revoked: it is already over, and the purge takes it.
    pub async fn revoke_handle(
        &self,
        handle: &[u8; 8],
        cfg: &SessionConfig,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut revoked = false;
        for (key, session) in self.store.by_handle(handle).await? {
            if session.ended(cfg, now).is_none() {
                revoked |= self.revoke(&key, &session).await?;
            }
        }
        Ok(revoked)
    }

    /// Revokes every session of `user` at once; returns how many were
    /// live. Ended ones not yet purged go too, without an event.
    pub async fn revoke_user(&self, user: &str, cfg: &SessionConfig) -> Result<usize, StoreError> {
        let now = now_ms();
        let removed = self.store.delete_user(user).await?;
        let m = crate::metrics::get();
        let mut revoked = 0;
        for (key, session) in &removed {
            m.sessions_active.dec();
            if session.ended(cfg, now).is_none() {
                audit("revoked", Some(key), session.user(), Some(&session.route));
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    /// True while the session exists and has not ended (tunnels poll this).
    pub async fn is_live(&self, key: &SessionKey, cfg: &SessionConfig) -> Result<bool, StoreError> {
        Ok(self
            .store
            .load(key)
            .await?
            .is_some_and(|s| s.ended(cfg, now_ms()).is_none()))
    }

    /// Purges ended sessions every `every` until the process ends.
    pub fn spawn_purge(self: &Arc<Self>, every: Duration) {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Logged once per run of failures, not every tick of an outage.
            let mut failing = false;
            loop {
                tick.tick().await;
                let Some(m) = this.upgrade() else { return };
                match m.store.purge(now_ms()).await {
                    Ok(n) => {
                        failing = false;
                        if n > 0 {
                            tracing::debug!(purged = n, "purged ended sessions");
                        }
                    }
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "session purge failed");
                    }
                    Err(_) => {}
                }
                // Reconciles evictions and expiries the counters did not see.
                if let Ok(n) = m.store.count().await {
                    crate::metrics::get().sessions_active.set(n as i64);
                }
            }
        });
    }
}

/// Keeps the stored deadline current; copies only a shared session.
fn set_deadline(session: &mut Arc<Session>, cfg: &SessionConfig) {
    let deadline = session.deadline(cfg);
    if session.expires_at != deadline {
        Arc::make_mut(session).expires_at = deadline;
    }
}

fn fresh_id() -> Result<SessionId, StoreError> {
    SessionId::generate().map_err(|_| {
        let source = std::io::Error::other("the system random generator failed");
        StoreError::unavailable("draw a session id", source)
    })
}
