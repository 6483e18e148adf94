//! The session decision taken on an upstream response (SPEC §4.5, §4.6,
//! §5, §6, §8.4): the upstream's login and logout headers, every
//! `Set-Cookie` into the jar or rewritten for the browser, and then, once,
//! create, rotate or save the session.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};

use super::audit::audit;
use super::jar::Stored;
use super::manager::{Found, Manager};
use super::request::SessionState;
use super::setcookie::{rewrite_for_browser, SetCookie};
use super::store::{SessionStore, StoreError};
use super::{Identity, Session};
use crate::config::{Auth, Config, CookieMode, Provider, Route};
use crate::wire::path::under_any;

/// Whether a response has anything for [`Exchange::capture`]: most carry
/// none of its headers, and one scan of the names present settles it without
/// hashing each or building the capture's future.
pub fn has_effects(auth: &Auth, headers: &HeaderMap) -> bool {
    headers.keys().any(|n| {
        n == header::SET_COOKIE
            || n == auth.upstream_login_header
            || n == auth.upstream_logout_header
    })
}

/// The facts of one exchange the response side needs.
pub struct Exchange<'a, S> {
    pub manager: &'a Manager<S>,
    pub config: &'a Config,
    pub route: &'a Route,
    pub path: &'a str,
    pub is_post: bool,
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
        if !has_effects(&cfg.auth, headers) {
            return Ok(());
        }
        let login = headers.remove(&cfg.auth.upstream_login_header);
        let logout = headers.remove(&cfg.auth.upstream_logout_header);
        let upstream_auth = cfg.auth.provider == Provider::Upstream;
        if upstream_auth && logout.is_some() {
            sess.end(self.manager, "logout", Some(&self.route.name))
                .await?;
        }
        let existed = sess.live.is_some();
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
        let ended = upstream_auth && logout.is_some();
        // The one copy of a changing session: the stored one stays intact
        // until the store swaps in the new version.
        let draft = Arc::make_mut(&mut session);
        let jar_changed = self.capture_set_cookies(headers, draft, ended);
        let mut identity_changed = false;
        if let (true, false, Some(v)) = (upstream_auth, ended, login.as_ref()) {
            identity_changed = self.bind_login(draft, v);
        }
        if ended || !(jar_changed || identity_changed) {
            return Ok(());
        }
        let login_post = self.is_post && jar_changed && under_any(&cfg.auth.login_paths, self.path);
        let session_cfg = &cfg.session;
        let route = Some(self.route.name.as_str());
        match sess.live.take() {
            Some(found) if identity_changed || login_post => {
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
                debug_assert!(!existed);
                let (id, key) = self
                    .manager
                    .create(&mut session, session_cfg, route)
                    .await?;
                sess.issued(id, key, session);
            }
        }
        if identity_changed && sess.live.is_some() {
            audit("login", sess.key(), sess.user(), route);
        }
        Ok(())
    }

    /// Moves jar-bound `Set-Cookie`s into the session's jar and rewrites the
    /// rest for the browser. Returns true when the jar changed.
    fn capture_set_cookies(
        &self,
        headers: &mut HeaderMap,
        session: &mut Session,
        session_ended: bool,
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
            if session_ended {
                continue;
            }
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
        session.jars.retain(|(_, j)| !j.is_empty());
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
        if session.user() == Some(user) {
            return false;
        }
        session.identity = Some(Identity {
            user: user.to_string(),
            email: None,
            groups: Vec::new(),
        });
        session.started = self.now;
        session.last_seen = self.now;
        true
    }
}

fn reject(route: &Route, reason: &str) {
    crate::metrics::get()
        .jar_rejected
        .with_label_values(&[reason])
        .inc();
    tracing::warn!(route = %route.name, reason, "dropped an upstream Set-Cookie");
}
