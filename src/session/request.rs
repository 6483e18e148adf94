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
use super::manager::{Found, Lookup, Manager};
use super::store::{SessionStore, StoreError};
use super::{now_ms, Identity, Session};
use crate::config::{Csrf, Session as SessionConfig};

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

    /// A provider's login (`oidc`): binds `identity` to the live session
    /// (the one the login started from) and rotates it (SPEC §4.6), the
    /// jar carried over; `login` is audited. Returns false when the
    /// session ended meanwhile (nothing is bound; the cookie is cleared).
    /// The upstream provider binds through the same
    /// [`Session::bind_identity`] and rotation in [`super::capture`].
    pub async fn login<S: SessionStore + 'static>(
        &mut self,
        manager: &Manager<S>,
        cfg: &SessionConfig,
        identity: Identity,
        now: u64,
    ) -> Result<bool, StoreError> {
        let Some(found) = self.live.take() else {
            return Ok(false);
        };
        let mut session = Arc::clone(&found.session);
        if !Arc::make_mut(&mut session).bind_identity(identity, now) {
            self.live = Some(found);
            return Ok(true);
        }
        match manager.rotate(&found.key, &mut session, cfg, None).await? {
            Some((id, key)) => {
                self.issued(id, key, session);
                audit("login", self.key(), self.user(), None);
                Ok(true)
            }
            None => {
                self.ended_elsewhere();
                Ok(false)
            }
        }
    }

    /// Makes a session for a request that has none (a login is starting:
    /// there is something to store, SPEC §4.5).
    pub async fn ensure<S: SessionStore + 'static>(
        &mut self,
        manager: &Manager<S>,
        cfg: &SessionConfig,
        client_ip: &str,
        user_agent: &str,
    ) -> Result<SessionKey, StoreError> {
        if let Some(found) = &self.live {
            return Ok(found.key);
        }
        let mut session = Arc::new(Session::new(
            now_ms(),
            client_ip.to_string(),
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
