//! The session of one request: what its cookies led to (SPEC §4.3), its
//! transitions — touched (§7.1, §7.2a), ended (logout, §8.7), created or
//! rotated by the response ([`super::capture`]) — and the session cookie the
//! response must carry (§4.2, §4.4).

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method};

use super::audit::audit;
use super::codec::{Handle, SessionId, SessionKey, VerifyCache};
use super::cookies::{session_cookie, CookieScan};
use super::csrf::{csrf, CrossSite};
use super::limit::RetryAfter;
use super::manager::{Found, Lookup, Manager};
use super::store::{SessionStore, StoreError};
use super::{now_ms, Identity, Session};
use crate::config::{Csrf, Session as SessionConfig};

/// Who would create a session, and when: what
/// `session.max_new_sessions_per_client` counts ([`super::limit`]).
#[derive(Debug, Clone, Copy)]
pub struct NewSession {
    /// The peer, or behind `trusted_proxies` the client it forwarded for.
    pub client: std::net::IpAddr,
    pub now: u64,
}

/// Why a changed session could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `session.max_new_sessions_per_client`: no session was made.
    #[error("client is creating sessions too fast (retry after {} s)", .0 .0)]
    TooManyNewSessions(RetryAfter),
}

/// What the request's cookies led to, and what the response must say.
#[derive(Debug, Default)]
pub struct SessionState {
    pub live: Option<Found>,
    /// The request carried a live session (responses get `Vary: Cookie`).
    pub carried: bool,
    /// A session cookie to send: created, rotated or re-signed.
    pub issue: Option<SessionId>,
    /// Clear the browser's session cookie.
    pub clear: bool,
}

impl SessionState {
    /// Looks up the session named by the request's session cookies: the
    /// first that verifies and names a live session wins; cookies that name
    /// none are cleared; a fallback-key cookie is re-issued.
    pub async fn begin<S: SessionStore + 'static>(
        manager: &Manager<S>,
        cfg: &SessionConfig,
        cookies: &CookieScan<'_>,
        route: Option<&str>,
        cache: &VerifyCache,
    ) -> Result<SessionState, StoreError> {
        if cookies.sessions == 0 {
            return Ok(SessionState::default());
        }
        let lookup = manager
            .lookup(cookies.session_values(), cfg, route, cache)
            .await?;
        Ok(match lookup {
            Lookup::NoCookie => SessionState::default(),
            Lookup::Invalid => SessionState {
                clear: true,
                ..Default::default()
            },
            Lookup::Live(mut found) => SessionState {
                issue: found.resign.take(),
                carried: true,
                live: Some(*found),
                clear: false,
            },
        })
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.live.as_ref().and_then(|f| f.session.identity.as_ref())
    }

    pub fn key(&self) -> Option<&SessionKey> {
        self.live.as_ref().map(|f| &f.key)
    }

    pub fn user(&self) -> Option<&str> {
        self.identity().map(|i| i.user.as_str())
    }

    /// The handle for logs, never the id.
    pub fn handle(&self) -> Option<Handle> {
        self.key().map(SessionKey::handle)
    }

    /// Records activity when `touch_interval` has passed, unless the
    /// request is passive (SPEC §7.2a).
    pub async fn touch<S: SessionStore + 'static>(
        &mut self,
        manager: &Manager<S>,
        cfg: &SessionConfig,
        now: u64,
        passive: bool,
    ) -> Result<(), StoreError> {
        match self.live.as_mut() {
            Some(found) if !passive => manager.touch_if_due(found, cfg, now).await,
            _ => Ok(()),
        }
    }

    /// Ends the live session (`event`: `logout`, …) and clears the cookie.
    /// The one way a request logs out: `/.cloakroom/logout`, the upstream's
    /// logout header and the app's logout paths all come here.
    pub async fn end<S: SessionStore + 'static>(
        &mut self,
        manager: &Manager<S>,
        event: &str,
        route: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Some(found) = self.live.take() {
            manager
                .end(&found.key, found.session.user(), event, route)
                .await?;
            self.clear = true;
            self.issue = None;
        }
        Ok(())
    }

    /// The CSRF rule (SPEC §9.6) for this request: it applies only when the
    /// request carries a live session; a refusal is an audit event.
    pub fn check_csrf(
        &self,
        cfg: &Csrf,
        method: &Method,
        headers: &HeaderMap,
        host: &str,
        route: Option<&str>,
    ) -> Result<(), CrossSite> {
        if self.live.is_none() {
            return Ok(());
        }
        csrf(cfg, method, headers, host)
            .inspect_err(|_| audit("csrf_rejected", self.key(), self.user(), route))
    }

    /// Writes a changed session: under a new id when `rotate`, else under
    /// its own, or created when the request had none (§4.5). A session that
    /// ended meanwhile (a logout or revocation elsewhere) is not brought back.
    /// Every login takes this path, whichever provider made it.
    pub async fn commit<S: SessionStore + 'static>(
        &mut self,
        manager: &Manager<S>,
        cfg: &SessionConfig,
        mut session: Arc<Session>,
        rotate: bool,
        route: Option<&str>,
        new: NewSession,
    ) -> Result<(), CommitError> {
        match self.live.take() {
            Some(found) if rotate => {
                match manager.rotate(&found.key, &mut session, cfg, route).await? {
                    Some((id, key)) => self.issued(id, key, session),
                    None => self.ended_elsewhere(),
                }
            }
            Some(found) => {
                if manager.save(&found.key, &mut session, cfg).await? {
                    self.live = Some(Found { session, ..found });
                } else {
                    self.ended_elsewhere();
                }
            }
            None => {
                manager
                    .new_sessions
                    .take(new.client, cfg.max_new_sessions_per_client, new.now)
                    .map_err(CommitError::TooManyNewSessions)?;
                let (id, key) = manager.create(&mut session, cfg, route).await?;
                self.issued(id, key, session);
            }
        }
        Ok(())
    }

    /// A login by the proxy's own provider (`local`): binds `identity` to
    /// the request's session, or to a new one made by `fresh`, and rotates
    /// it ([`Session::bind`], [`SessionState::commit`]: the path an
    /// upstream login header takes too). True when the session now carries
    /// the identity; false when it ended elsewhere meanwhile.
    pub async fn login<S: SessionStore + 'static>(
        &mut self,
        manager: &Manager<S>,
        cfg: &SessionConfig,
        identity: Identity,
        new: NewSession,
        fresh: impl FnOnce() -> Session,
        route: Option<&str>,
    ) -> Result<bool, CommitError> {
        let mut session = match self.live.as_ref() {
            Some(f) => Arc::clone(&f.session),
            None => Arc::new(fresh()),
        };
        if Arc::make_mut(&mut session).bind(identity, new.now) {
            self.commit(manager, cfg, session, true, route, new).await?;
        }
        Ok(self.identity().is_some())
    }

    /// Makes a session for a request that has none (a login is starting:
    /// there is something to store, SPEC §4.5), counted against
    /// `session.max_new_sessions_per_client` like any other.
    pub async fn ensure<S: SessionStore + 'static>(
        &mut self,
        manager: &Manager<S>,
        cfg: &SessionConfig,
        new: NewSession,
        user_agent: &str,
    ) -> Result<SessionKey, CommitError> {
        if let Some(found) = &self.live {
            return Ok(found.key);
        }
        manager
            .new_sessions
            .take(new.client, cfg.max_new_sessions_per_client, new.now)
            .map_err(CommitError::TooManyNewSessions)?;
        let mut session = Arc::new(Session::new(
            new.now,
            new.client.to_string(),
            user_agent,
            "",
        ));
        let (id, key) = manager.create(&mut session, cfg, None).await?;
        self.issued(id, key, session);
        Ok(key)
    }

    /// The session now lives under a new id (created or rotated): the
    /// response sends its cookie.
    pub fn issued(&mut self, id: SessionId, key: SessionKey, session: Arc<Session>) {
        self.issue = Some(id);
        self.clear = false;
        self.live = Some(Found {
            key,
            session,
            resign: None,
        });
    }

    /// The session ended while the upstream answered (a logout or
    /// revocation elsewhere): nothing is written, the cookie is cleared.
    pub fn ended_elsewhere(&mut self) {
        self.live = None;
        self.issue = None;
        self.clear = true;
    }

    /// The `Set-Cookie` the response carries: the session's new or re-signed
    /// cookie, a clearing one, or none.
    pub fn response_cookie(
        &self,
        keys: &super::Keyring,
        cfg: &SessionConfig,
    ) -> Option<HeaderValue> {
        match (&self.issue, self.clear) {
            (Some(id), _) => {
                let value = keys.encode(id);
                let max_age = cfg.persistent.then(|| {
                    let deadline = self
                        .live
                        .as_ref()
                        .map_or(0, |f| f.session.absolute_deadline(cfg));
                    deadline.saturating_sub(now_ms()) / 1000
                });
                Some(session_cookie(cfg, Some(&value), max_age))
            }
            (None, true) => Some(session_cookie(cfg, None, None)),
            (None, false) => None,
        }
    }
}
