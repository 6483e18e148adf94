//! The session phase: around the upstream exchange.
//!
//! Before forwarding ([`begin`], [`prepare_request`]): find the live session
//! behind the request's cookies, strip the session cookie from the `Cookie`
//! header and merge the route's jar into it (SPEC §4.7, §5.2).
//!
//! After the response ([`Exchange::capture`]): upstream login/logout headers
//! (§8.4), `Set-Cookie` into the jar or rewritten for the browser (§5, §6),
//! lazy creation and rotation (§4.5, §4.6), and the session cookie itself.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};

use super::path::under_any;
use super::ProxyError;
use crate::app::State;
use crate::config::{CookieMode, Provider, Route};
use crate::identity::valid_value;
use crate::session::jar::{push_pair, Stored};
use crate::session::manager::{Found, Lookup, Manager};
use crate::session::setcookie::{rewrite_for_browser, SetCookie};
use crate::session::{Identity, Session, SessionId, SessionKey, VerifyCache};
use crate::store::StoreError;

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
    pub fn handle(&self) -> Option<crate::session::codec::Handle> {
        self.key().map(SessionKey::handle)
    }
}

/// Looks up the session named by the request's cookies (SPEC §4.3).
pub async fn begin(
    manager: &Manager,
    state: &State,
    headers: &HeaderMap,
    route: Option<&str>,
    cache: &VerifyCache,
) -> Result<SessionState, ProxyError> {
    let name = &state.config.session.cookie_name;
    // Bytes, not text: a value with bytes outside base64url cannot verify,
    // and counts as a bad cookie.
    let values = cookie_pairs(headers)
        .filter(|(n, _)| *n == name.as_bytes())
        .map(|(_, v)| v);
    let lookup = manager
        .lookup(values, &state.config.session, route, cache)
        .await
        .map_err(store_error)?;
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

pub fn store_error(e: StoreError) -> ProxyError {
    match e {
        StoreError::Full => ProxyError::SessionsFull,
        StoreError::Unavailable { ref source, .. } => {
            tracing::warn!(error = %e, cause = %source, "session store error");
            ProxyError::StoreUnavailable
        }
    }
}

/// Every cookie-pair of every `Cookie` field, as bytes: values may hold
/// non-ASCII bytes, and a pair without `=` is a value with an empty name
/// (RFC 6265bis §5.6). Nothing is skipped, so nothing escapes the rewrite.
pub fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| Pairs(Some(v.as_bytes())))
        .filter(|(n, v)| !(n.is_empty() && v.is_empty()))
}

/// The `;`-separated pairs of one `Cookie` field, split with `memchr` (this
/// runs on every request, twice when a session is carried).
struct Pairs<'a>(Option<&'a [u8]>);

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.0?;
        let (pair, tail) = match memchr::memchr(b';', rest) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        self.0 = tail;
        Some(match memchr::memchr(b'=', pair) {
            Some(i) => (pair[..i].trim_ascii(), pair[i + 1..].trim_ascii()),
            None => (&pair[..0], pair.trim_ascii()),
        })
    }
}

/// Rewrites the `Cookie` header for the upstream: the session cookie out,
/// the jar's matching cookies in (longer paths first), and client cookies
/// that share a name with a jar cookie dropped (the jar wins). Other client
/// cookies go as they came.
pub fn prepare_request(
    headers: &mut HeaderMap,
    cookie_name: &str,
    route: &Route,
    session: Option<&Session>,
    path: &str,
    now: u64,
) {
    let jar = session
        .filter(|_| route.cookies == CookieMode::Jar)
        .and_then(|s| s.jar(&route.name));
    let name = cookie_name.as_bytes();
    // The usual request: the browser sent only the session cookie, and the
    // jar's cookies all apply: its joined value goes as it is.
    if let Some(joined) = jar
        .filter(|_| cookie_pairs(headers).all(|(n, _)| n == name))
        .and_then(|j| j.joined_if_all_match(path, now))
    {
        headers.insert(header::COOKIE, joined);
        return;
    }
    let jar_matches = || jar.into_iter().flat_map(move |j| j.matching(path, now));
    // Nothing to merge and no session cookie to remove: leave it as sent.
    if jar_matches().next().is_none() && !cookie_pairs(headers).any(|(n, _)| n == name) {
        return;
    }
    // One allocation: the jar's cookies plus what the client sent is an
    // upper bound of the merged header.
    let sent: usize = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.len() + 2)
        .sum();
    let jar_bytes: usize = jar_matches()
        .map(|c| c.name.len() + c.value.len() + 3)
        .sum();
    let mut out = Vec::with_capacity(sent + jar_bytes);
    for c in jar_matches() {
        push_pair(&mut out, c.name.as_bytes(), c.value.as_bytes());
    }
    for (n, v) in cookie_pairs(headers) {
        if n != name && !jar_matches().any(|c| c.name.as_bytes() == n) {
            push_pair(&mut out, n, v);
        }
    }
    headers.remove(header::COOKIE);
    if !out.is_empty() {
        // Hands the buffer over without a copy; still validated.
        if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(out)) {
            headers.insert(header::COOKIE, v);
        }
    }
}

/// Whether a response has anything for [`Exchange::capture`]: most carry
/// none of its headers, and one scan of the names present settles it without
/// hashing each or building the capture's future.
pub fn has_effects(state: &State, headers: &HeaderMap) -> bool {
    let auth = &state.config.auth;
    headers.keys().any(|n| {
        n == header::SET_COOKIE
            || n == auth.upstream_login_header
            || n == auth.upstream_logout_header
    })
}

/// The facts of one exchange the response side needs.
pub struct Exchange<'a> {
    pub manager: &'a Manager,
    pub state: &'a State,
    pub route: &'a Route,
    pub path: &'a str,
    pub is_post: bool,
    pub client_ip: std::net::IpAddr,
    pub user_agent: Option<&'a HeaderValue>,
    pub now: u64,
}

impl Exchange<'_> {
    /// Applies the upstream response's session effects to `sess` and the
    /// response headers.
    pub async fn capture(
        &self,
        sess: &mut SessionState,
        headers: &mut HeaderMap,
    ) -> Result<(), ProxyError> {
        if !has_effects(self.state, headers) {
            return Ok(());
        }
        let cfg = &self.state.config;
        let login = headers.remove(&cfg.auth.upstream_login_header);
        let logout = headers.remove(&cfg.auth.upstream_logout_header);
        let upstream_auth = cfg.auth.provider == Provider::Upstream;
        if upstream_auth && logout.is_some() {
            if let Some(found) = sess.live.take() {
                self.manager
                    .end(
                        &found.key,
                        found.session.user(),
                        "logout",
                        Some(&self.route.name),
                    )
                    .await
                    .map_err(store_error)?;
                sess.clear = true;
                sess.issue = None;
            }
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
                let (id, key) = self
                    .manager
                    .rotate(&found.key, &mut session, session_cfg, route)
                    .await
                    .map_err(store_error)?;
                sess.issue = Some(id);
                sess.live = Some(Found {
                    key,
                    session,
                    resign: None,
                });
            }
            Some(found) => {
                if self
                    .manager
                    .save(&found.key, &mut session, session_cfg)
                    .await
                    .map_err(store_error)?
                {
                    sess.live = Some(Found { session, ..found });
                } else {
                    // Ended while the upstream answered (logout elsewhere).
                    sess.clear = true;
                    sess.issue = None;
                }
            }
            None => {
                debug_assert!(!existed);
                let (id, key) = self
                    .manager
                    .create(&mut session, session_cfg, route)
                    .await
                    .map_err(store_error)?;
                sess.issue = Some(id);
                sess.clear = false;
                sess.live = Some(Found {
                    key,
                    session,
                    resign: None,
                });
            }
        }
        if identity_changed {
            crate::telemetry::audit("login", sess.key(), sess.user(), route);
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
        let cfg = &self.state.config;
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
            Ok(u) if valid_value(u.trim()) => u.trim(),
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

/// The browser's session cookie (SPEC §4.2), or a clearing one.
pub fn session_cookie(state: &State, value: Option<&str>, max_age: Option<u64>) -> HeaderValue {
    let cfg = &state.config.session;
    let mut s = String::with_capacity(160);
    s.push_str(&cfg.cookie_name);
    s.push('=');
    s.push_str(value.unwrap_or(""));
    s.push_str("; Secure; HttpOnly; SameSite=");
    s.push_str(cfg.same_site.as_str());
    s.push_str("; Path=/");
    match (value, max_age) {
        (None, _) => s.push_str("; Max-Age=0"),
        (Some(_), Some(secs)) => s.push_str(&format!("; Max-Age={secs}")),
        (Some(_), None) => {}
    }
    HeaderValue::from_str(&s).expect("cookie names and base64url values are valid header text")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn s4_3_store_error_is_503_and_keeps_the_cookie() {
        let e = store_error(StoreError::unavailable("load", "connection refused"));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        let resp = e.respond(None);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        // The error response itself never clears the session cookie; only a
        // lookup that found no live session sets `clear`.
        assert!(!resp.headers().contains_key(header::SET_COOKIE));
        assert!(!SessionState::default().clear);
    }

    #[test]
    fn cookie_pairs_are_bytes_and_keep_nameless_values() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes("a=1; flag; n=Jos\u{e9}".as_bytes()).unwrap(),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b = 2 ;;"));
        let pairs: Vec<_> = cookie_pairs(&h).collect();
        assert_eq!(
            pairs,
            [
                (&b"a"[..], &b"1"[..]),
                (&b""[..], &b"flag"[..]),
                (&b"n"[..], "Jos\u{e9}".as_bytes()),
                (&b"b"[..], &b"2"[..]),
            ]
        );
    }
}
