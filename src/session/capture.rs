//! The session decision taken on an upstream response (SPEC §4.5, §4.6,
//! §5, §6, §8.4, §8.7a): the upstream's login and logout headers, a logout
//! path answered with success, every `Set-Cookie` into the jar or rewritten
//! for the browser, and then, once, create, rotate, save or end the session.
//!
//! A response that ends the session (the logout header, or a logout path)
//! stores nothing: the jar-bound `Set-Cookie`s go nowhere, since the jar
//! they would land in is being deleted and no session may be made for
//! them, while cookies meant for the browser (`passthrough`) are still
//! rewritten and passed, so the app can clear its own.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;

use super::audit::audit;
use super::jar::Stored;
use super::manager::{Found, Manager};
use super::request::SessionState;
use super::setcookie::{rewrite_for_browser, SetCookie};
use super::store::{SessionStore, StoreError};
use super::{Identity, Session};
use crate::config::{Auth, Config, CookieMode, Provider, Route};
use crate::wire::path::under_any;

/// Whether a response has anything for [`Exchange::capture`]: most answer
/// no logout path and carry none of its headers, and a prefix scan and one
/// scan of the names present settle it without hashing each or building the
/// capture's future.
pub fn has_effects(auth: &Auth, path: &str, status: StatusCode, headers: &HeaderMap) -> bool {
    app_logout(auth, path, status)
        || headers.keys().any(|n| {
            n == header::SET_COOKIE
                || n == auth.upstream_login_header
                || n == auth.upstream_logout_header
        })
}

/// SPEC §8.7a: the app answered a request under one of `logout_paths` with
/// success (2xx or 3xx), so its own logout ends the session too. `path` is
/// the normalised one, and the prefixes were normalised at load.
fn app_logout(auth: &Auth, path: &str, status: StatusCode) -> bool {
    (status.is_success() || status.is_redirection()) && under_any(&auth.logout_paths, path)
}

/// The facts of one exchange the response side needs.
pub struct Exchange<'a, S> {
    pub manager: &'a Manager<S>,
    pub config: &'a Config,
    pub route: &'a Route,
    pub path: &'a str,
    /// The request submitted credentials: a POST (a login form) or one
    /// carrying `Authorization` (HTTP authentication, as Trac logs in).
    pub login_submission: bool,
    /// The upstream's status (a logout path ends the session on success).
    pub status: StatusCode,
    pub client_ip: std::net::IpAddr,
    pub user_agent: Option<&'a HeaderValue>,
    pub now: u64,
}

impl<S: SessionStore + 'static> Exchange<'_, S> {
    /// Applies the upstream response's session effects to `sess` and the
    /// response headers.
    pub async fn capture(
        &self,
        sess: &mut SessionState,
        headers: &mut HeaderMap,
    ) -> Result<(), StoreError> {
        let cfg = self.config;
        if !has_effects(&cfg.auth, self.path, self.status, headers) {
            return Ok(());
        }
        let login = headers.remove(&cfg.auth.upstream_login_header);
        let logout = headers.remove(&cfg.auth.upstream_logout_header);
        let upstream_auth = cfg.auth.provider == Provider::Upstream;
        if (upstream_auth && logout.is_some()) || app_logout(&cfg.auth, self.path, self.status) {
            // Once, whichever said it; nothing is stored and nothing bound.
            sess.end(self.manager, "logout", Some(&self.route.name))
                .await?;
            self.capture_set_cookies(headers, None);
            return Ok(());
        }
        let mut session = match sess.live.as_ref() {
            Some(f) => Arc::clone(&f.session),
            None => {
                let ua = self.user_agent.and_then(|v| v.to_str().ok()).unwrap_or("");
                Arc::new(Session::new(
                    self.now,
                    self.client_ip.to_string(),
                    ua,
                    &self.route.name,
                ))
            }
        };
        // The one copy of a changing session: the stored one stays intact
        // until the store swaps in the new version.
        let draft = Arc::make_mut(&mut session);
        let jar_changed = self.capture_set_cookies(headers, Some(&mut *draft));
        let identity_changed = match (upstream_auth, login.as_ref()) {
            (true, Some(v)) => self.bind_login(draft, v),
            _ => false,
        };
        if !(jar_changed || identity_changed) {
            return Ok(());
        }
        // A login rotates (§4.6), and so does a submission to a login path
        // that changed the jar (§8.4: fixation defence for apps without the
        // header). §8.4 names a POST; a GET carrying HTTP credentials is the
        // same act for an app that logs in by HTTP authentication.
        let rotate = identity_changed
            || (self.login_submission
                && jar_changed
                && under_any(&cfg.auth.login_paths, self.path));
        self.commit(sess, session, rotate).await?;
        if identity_changed && sess.live.is_some() {
            audit("login", sess.key(), sess.user(), Some(&self.route.name));
        }
        Ok(())
    }

    /// Writes the changed session: under a new id when `rotate`, else under
    /// its own, or created when the request had none (§4.5). A session that
    /// ended while the upstream answered is not brought back.
    async fn commit(
        &self,
        sess: &mut SessionState,
        mut session: Arc<Session>,
        rotate: bool,
    ) -> Result<(), StoreError> {
        let session_cfg = &self.config.session;
        let route = Some(self.route.name.as_str());
        match sess.live.take() {
            Some(found) if rotate => {
                let rotated = self
                    .manager
                    .rotate(&found.key, &mut session, session_cfg, route)
                    .await?;
                match rotated {
                    Some((id, key)) => sess.issued(id, key, session),
                    None => sess.ended_elsewhere(),
                }
            }
            Some(found) => {
                if self
                    .manager
                    .save(&found.key, &mut session, session_cfg)
                    .await?
                {
                    sess.live = Some(Found { session, ..found });
                } else {
                    sess.ended_elsewhere();
                }
            }
            None => {
                let (id, key) = self
                    .manager
                    .create(&mut session, session_cfg, route)
                    .await?;
                sess.issued(id, key, session);
            }
        }
        Ok(())
    }

    /// Moves jar-bound `Set-Cookie`s into the session's jar (or, when the
    /// session is ending and there is none, drops them) and rewrites the
    /// rest for the browser. Returns true when the jar changed.
    fn capture_set_cookies(
        &self,
        headers: &mut HeaderMap,
        mut session: Option<&mut Session>,
    ) -> bool {
        if !headers.contains_key(header::SET_COOKIE) {
            return false;
        }
        let values: Vec<HeaderValue> = match headers.entry(header::SET_COOKIE) {
            header::Entry::Occupied(e) => e.remove_entry_mult().1.collect(),
            header::Entry::Vacant(_) => return false,
        };
        let cfg = self.config;
        let route = self.route;
        let mut changed = false;
        for value in values {
            let Ok(raw) = std::str::from_utf8(value.as_bytes()) else {
                reject(route, "malformed");
                continue;
            };
            let name = raw.split(['=', ';']).next().unwrap_or("").trim();
            if name == cfg.session.cookie_name {
                tracing::warn!(route = %route.name, "upstream tried to set the session cookie; dropped");
                continue;
            }
            let to_jar = route.cookies == CookieMode::Jar
                && !route.passthrough_cookies.iter().any(|p| p == name);
            if !to_jar {
                match SetCookie::parse(raw) {
                    Ok(_) => {
                        let readable = route.script_readable_cookies.iter().any(|p| p == name);
                        let rewritten = rewrite_for_browser(raw, cfg.session.same_site, readable);
                        if let Ok(v) = HeaderValue::from_str(&rewritten) {
                            headers.append(header::SET_COOKIE, v);
                        }
                    }
                    Err(r) => reject(route, r.reason()),
                }
                continue;
            }
            let Some(session) = session.as_deref_mut() else {
                continue;
            };
            match SetCookie::parse(raw) {
                Ok(sc) => match session.jar_mut(&route.name).store(
                    &sc,
                    self.path,
                    self.now,
                    cfg.session.max_jar_bytes,
                ) {
                    Stored::OverCap => reject(route, "jar_full"),
                    s => changed |= s.changed(),
                },
                Err(r) => reject(route, r.reason()),
            }
        }
        if let Some(session) = session {
            session.jars.retain(|(_, j)| !j.is_empty());
        }
        changed
    }

    /// Binds the user an upstream login header names; true when the
    /// identity changed (the session must rotate).
    fn bind_login(&self, session: &mut Session, value: &HeaderValue) -> bool {
        let user = match value.to_str() {
            Ok(u) if Identity::valid_value(u.trim()) => u.trim(),
            _ => {
                tracing::warn!(route = %self.route.name, "refused an upstream login header: empty, over 256 bytes or with control characters");
                return false;
            }
        };
        let identity = Identity {
            user: user.to_string(),
            email: None,
            groups: Vec::new(),
        };
        session.bind_identity(identity, self.now)
    }
}

fn reject(route: &Route, reason: &str) {
    crate::metrics::get()
        .jar_rejected
        .with_label_values(&[reason])
        .inc();
    tracing::warn!(route = %route.name, reason, "dropped an upstream Set-Cookie");
}
