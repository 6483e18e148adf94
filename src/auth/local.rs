//! `provider = "local"` (SPEC §8.5): `GET /.cloakroom/login` serves the
//! login form, `POST` checks the password against the users file.
//!
//! - The form carries its own CSRF token, a signed double-submit value: a
//!   random nonce in the `__Host-cloakroom-login` cookie (HttpOnly,
//!   SameSite=Strict) and, in the form, an HMAC of it under the session
//!   key. A cross-site page can neither read the token nor mint a pair, so
//!   it cannot log a browser in as someone else. The `[csrf]` origin check
//!   applies too when the request carries a session.
//! - Failures are counted per user name and per client address
//!   ([`crate::throttle`]); a locked-out attempt is answered 429 with
//!   `Retry-After` before any password work.
//! - The password is checked off the runtime ([`crate::password`]); an
//!   unknown name costs what a wrong password costs.
//! - Success binds the user to the session through the one login path of
//!   every provider ([`SessionState::login`]: rotated, SPEC §4.6) and
//!   redirects (303) to `rd` when it is a same-origin path, else to `/`.
//! - Each attempt is one audit line naming the user and the outcome; the
//!   password and hashes are never logged.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use ring::rand::{SecureRandom, SystemRandom};

use super::page::{self, Form};
use super::safe_return_path;
use crate::config::users::User;
use crate::config::Config;
use crate::password::VerifyError;
use crate::reply::{redirect, ProxyBody, ProxyError};
use crate::session::audit::login_attempt;
use crate::session::cookies::cookie_pairs;
use crate::session::request::NewSession;
use crate::session::{now_ms, Identity, Session, SessionState};
use crate::state::Shared;
use crate::throttle::Limits;
use crate::wire::body::ClientBody;

/// The form's CSRF cookie. `__Host-`: Secure, `Path=/`, no `Domain`, so a
/// sibling subdomain cannot plant one.
pub const CSRF_COOKIE: &str = "__Host-cloakroom-login";
/// What the form's token is a MAC of, besides the nonce.
const CSRF_PURPOSE: &str = "cloakroom login form";
/// A login form is three short fields and a path.
const MAX_FORM_BYTES: usize = 8 * 1024;

/// `GET /.cloakroom/login`: the form, and a CSRF cookie when the browser
/// has none yet.
pub fn form(shared: &Shared, headers: &HeaderMap, query: Option<&str>) -> Response<ProxyBody> {
    let rd = safe_return_path(query_value(query, "rd").as_deref());
    Reply::new(shared, headers, rd).page(StatusCode::OK, "", None)
}

/// The fields of a submitted form.
#[derive(Default)]
struct Submitted {
    username: String,
    password: String,
    csrf: String,
    rd: String,
}

/// How this request's form is shown again: its token, return path and, when
/// the browser had none, the CSRF cookie to set.
struct Reply {
    token: String,
    rd: String,
    nonce: String,
    fresh: bool,
}

impl Reply {
    fn new(shared: &Shared, headers: &HeaderMap, rd: String) -> Reply {
        let (nonce, fresh) = nonce(headers);
        let token = shared
            .sessions
            .keys
            .sign_token(CSRF_PURPOSE, nonce.as_bytes());
        Reply {
            token,
            rd,
            nonce,
            fresh,
        }
    }

    fn page(&self, status: StatusCode, user: &str, message: Option<&str>) -> Response<ProxyBody> {
        let form = Form {
            token: &self.token,
            rd: &self.rd,
            user,
            message,
        };
        let mut resp = page::render(status, &form);
        if self.fresh {
            resp.headers_mut()
                .append(header::SET_COOKIE, csrf_cookie(Some(&self.nonce)));
        }
        resp
    }
}

/// The request facts a submission needs besides its body.
pub struct Attempt<'a> {
    pub shared: &'a Shared,
    pub config: &'a Config,
    pub host: &'a str,
    /// The client failures count under: the peer, or behind
    /// `trusted_proxies` the address they forwarded for.
    pub client: IpAddr,
}

impl Attempt<'_> {
    /// `POST /.cloakroom/login`: the origin check, the form and its CSRF
    /// token, then the attempt.
    pub async fn submit(
        &self,
        req: Request<ClientBody>,
        sess: &mut SessionState,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let cfg = self.config;
        let (parts, body) = req.into_parts();
        sess.check_csrf(&cfg.csrf, &parts.method, &parts.headers, self.host, None)
            .map_err(|_| ProxyError::CsrfRejected)?;
        let form = read_form(&parts.headers, body, cfg.server.request_header_timeout).await?;
        let reply = Reply::new(
            self.shared,
            &parts.headers,
            safe_return_path(Some(&form.rd)),
        );
        let keys = &self.shared.sessions.keys;
        if reply.fresh || !keys.verify_token(CSRF_PURPOSE, reply.nonce.as_bytes(), &form.csrf) {
            tracing::debug!("login form without a valid CSRF token; form served again");
            return Ok(reply.page(StatusCode::FORBIDDEN, "", Some(page::EXPIRED)));
        }
        let client = self.client;
        let agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        self.attempt(&reply, form, client, agent, sess).await
    }

    /// The lock-out check, the password check, and its outcome.
    async fn attempt(
        &self,
        reply: &Reply,
        form: Submitted,
        client: IpAddr,
        agent: &str,
        sess: &mut SessionState,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let cfg = self.config;
        // A name that could never be a user is still checked (same cost),
        // and counted under one shared key; it is not logged.
        let valid_name = Identity::valid_value(&form.username);
        let user_key = if valid_name {
            form.username.as_str()
        } else {
            "\u{0}"
        };
        let shown = valid_name.then_some(form.username.as_str());
        let limits = Limits {
            per_user: cfg.auth.max_failures_per_user,
            per_address: cfg.auth.max_failures_per_address,
            window: cfg.auth.failure_window,
        };
        let failures = &self.shared.failures;
        if let Err(wait) = failures.check(user_key, client, limits, Instant::now()) {
            login_attempt("login_failed", "locked", None, shown, client);
            let status = StatusCode::TOO_MANY_REQUESTS;
            let mut resp = reply.page(status, shown.unwrap_or(""), Some(page::LOCKED));
            resp.headers_mut()
                .insert(header::RETRY_AFTER, retry_after(wait));
            return Ok(resp);
        }
        let users = cfg.auth.users.clone();
        let verified = self
            .shared
            .passwords
            .verify(users, form.username.clone(), form.password)
            .await
            .map_err(|e| match e {
                VerifyError::Busy(_) => ProxyError::Busy,
                VerifyError::Task(e) => ProxyError::TaskFailed(e),
            })?;
        let Some(user) = verified else {
            failures.failed(user_key, client, limits, Instant::now());
            let outcome = match cfg.auth.users.get(&form.username) {
                Some(_) => "wrong_password",
                None => "unknown_user",
            };
            login_attempt("login_failed", outcome, None, shown, client);
            let status = StatusCode::UNAUTHORIZED;
            return Ok(reply.page(status, shown.unwrap_or(""), Some(page::WRONG)));
        };
        failures.succeeded(&user.name);
        self.sign_in(reply, user, client, agent, sess).await
    }

    /// Binds `user` to the session, rotating it (SPEC §4.6) through the one
    /// login path every provider takes, and sends the browser to `rd`.
    async fn sign_in(
        &self,
        reply: &Reply,
        user: User,
        client: IpAddr,
        agent: &str,
        sess: &mut SessionState,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let now = now_ms();
        let fresh = || Session::new(now, client.to_string(), agent, "");
        let new = NewSession { client, now };
        let identity = Identity {
            user: user.name.clone(),
            email: user.email,
            groups: user.groups,
        };
        let manager = &self.shared.sessions;
        if !sess
            .login(manager, &self.config.session, identity, new, fresh, None)
            .await?
        {
            // Revoked while the password was checked: nothing was bound.
            return Ok(reply.page(StatusCode::UNAUTHORIZED, &user.name, Some(page::ENDED)));
        }
        login_attempt("login", "success", sess.key(), Some(&user.name), client);
        let mut resp = redirect(StatusCode::SEE_OTHER, &reply.rd);
        resp.headers_mut()
            .append(header::SET_COOKIE, csrf_cookie(None));
        Ok(resp)
    }
}

/// The first value of `name` in a query string, form-decoded.
pub fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Reads an `application/x-www-form-urlencoded` body of at most
/// [`MAX_FORM_BYTES`] within `timeout`.
async fn read_form(
    headers: &HeaderMap,
    body: ClientBody,
    timeout: Duration,
) -> Result<Submitted, ProxyError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(ProxyError::BadRequest(
            "a login form is application/x-www-form-urlencoded",
        ));
    }
    let bytes = tokio::time::timeout(timeout, Limited::new(body, MAX_FORM_BYTES).collect())
        .await
        .map_err(|_| ProxyError::BadRequest("the login form did not arrive in time"))?
        .map_err(|_| ProxyError::BadRequest("the login form is too large or broken"))?
        .to_bytes();
    let mut form = Submitted::default();
    let mut seen = [false; 4];
    for (k, v) in form_urlencoded::parse(&bytes) {
        let (i, slot) = match k.as_ref() {
            "username" => (0, &mut form.username),
            "password" => (1, &mut form.password),
            "csrf" => (2, &mut form.csrf),
            "rd" => (3, &mut form.rd),
            _ => continue,
        };
        if !seen[i] {
            seen[i] = true;
            *slot = v.into_owned();
        }
    }
    Ok(form)
}

/// The browser's CSRF nonce when it sent a well-formed one, else a fresh
/// one (true: the response must set it).
fn nonce(headers: &HeaderMap) -> (String, bool) {
    let sent = cookie_pairs(headers)
        .filter(|(name, _)| *name == CSRF_COOKIE.as_bytes())
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .find(|v| v.len() == 43 && B64.decode(v).is_ok_and(|b| b.len() == 32));
    if let Some(v) = sent {
        return (v.to_string(), false);
    }
    let mut raw = [0u8; 32];
    // A failed CSPRNG leaves zeros: the token still binds to the key, and
    // the next GET tries again; the RNG does not fail on Linux in practice.
    if SystemRandom::new().fill(&mut raw).is_err() {
        tracing::error!("the system random generator failed");
    }
    (B64.encode(raw), true)
}

/// The CSRF cookie, or its clearing (`None`, after a login).
fn csrf_cookie(nonce: Option<&str>) -> HeaderValue {
    let text = match nonce {
        Some(n) => format!("{CSRF_COOKIE}={n}; Secure; HttpOnly; SameSite=Strict; Path=/"),
        None => format!("{CSRF_COOKIE}=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    };
    HeaderValue::from_str(&text).expect("base64url and attribute text are header-safe")
}

/// Whole seconds, rounded up, never 0.
fn retry_after(wait: Duration) -> HeaderValue {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}
