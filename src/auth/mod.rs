//! The proxy's own endpoints under `/.cloakroom/` (SPEC §8.3, §8.7):
//! `GET session` (who am I), `POST logout`, and `GET login`, which with the
//! `upstream` and `none` providers sends the browser to the app's own login
//! page, and with `oidc` starts the authorization code flow ([`oidc`],
//! whose callback is `GET callback`); `GET jwks.json`, the keys that verify
//! the identity assertion (SPEC §8.6a). Anything else under the prefix is
//! 404.

mod oidc;

use std::net::IpAddr;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::config::{Config, Provider};
use crate::identity::assertion::Assertion;
use crate::reply::{json, no_content, redirect, ProxyBody, ProxyError};
use crate::session::{Manager, SessionState, SessionStore};
use crate::state::State;
use crate::wire::headers::accepts_html;
use crate::wire::percent::{percent_decode, percent_encode};

/// One request to the proxy's own endpoints.
pub struct Own<'a, S> {
    pub manager: &'a Manager<S>,
    pub state: &'a State,
    pub req: &'a Request<Incoming>,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The validated host the client asked for.
    pub host: &'a str,
    pub client_ip: IpAddr,
}

pub async fn serve<S: SessionStore + 'static>(
    own: Own<'_, S>,
    sess: &mut SessionState,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (manager, state, req, query, host) = (own.manager, own.state, own.req, own.query, own.host);
    let config: &Config = &state.config;
    let method = req.method();
    let read = method == Method::GET || method == Method::HEAD;
    match own.path {
        "/.cloakroom/session" if read => Ok(session_info(config, sess)),
        "/.cloakroom/jwks.json" if read => match &state.assertion {
            Some(a) => Ok(jwks(a)),
            None => Err(ProxyError::NotFound),
        },
        "/.cloakroom/logout" if method == Method::POST => {
            sess.check_csrf(&config.csrf, method, req.headers(), host, None)
                .map_err(|_| ProxyError::CsrfRejected)?;
            sess.end(manager, "logout", None).await?;
            if !accepts_html(req.headers()) {
                return Ok(no_content());
            }
            // SPEC §8.6: an OIDC session ends at the issuer too, when it
            // offers RP-initiated logout.
            let at_issuer = state.oidc.as_ref().and_then(|rp| rp.logout_url());
            Ok(redirect(
                StatusCode::SEE_OTHER,
                at_issuer.as_deref().unwrap_or("/"),
            ))
        }
        "/.cloakroom/login" if read => match (config.auth.provider, &state.oidc) {
            (Provider::None | Provider::Upstream, _) => Ok(app_login(config, query)),
            (Provider::Oidc, Some(rp)) => oidc::start(&own, rp, sess).await,
            _ => Err(ProxyError::NotFound),
        },
        "/.cloakroom/callback" if read => match &state.oidc {
            Some(rp) => oidc::callback(&own, rp, sess).await,
            None => Err(ProxyError::NotFound),
        },
        _ => Err(ProxyError::NotFound),
    }
}

/// The assertion's public key set. Cacheable for five minutes: the key
/// changes only when an operator replaces the file, and verifiers refetch
/// on an unknown `kid`.
fn jwks(assertion: &Assertion) -> Response<ProxyBody> {
    let mut resp = json(StatusCode::OK, assertion.jwks());
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// `{authenticated, user, email, groups, expires_at}`; never the id.
fn session_info(config: &Config, sess: &SessionState) -> Response<ProxyBody> {
    let identity = sess.identity();
    let expires_at = sess.live.as_ref().map(|f| {
        let t = std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(f.session.deadline(&config.session));
        humantime::format_rfc3339_seconds(t).to_string()
    });
    let body = serde_json::json!({
        "authenticated": identity.is_some(),
        "user": identity.map(|i| &i.user),
        "email": identity.and_then(|i| i.email.as_ref()),
        "groups": identity.map(|i| i.groups.clone()).unwrap_or_default(),
        "expires_at": expires_at,
    });
    json(StatusCode::OK, body.to_string())
}

/// The value of `name` in a query string, percent-decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .map(percent_decode)
}

/// The `rd` return path, when it is a same-origin relative path.
fn return_path(query: Option<&str>) -> Option<String> {
    query_param(query, "rd").filter(|rd| is_local_path(rd))
}

/// Sends the browser to the app's own login page, keeping `rd` as `next`
/// when it is a same-origin relative path.
fn app_login(config: &Config, query: Option<&str>) -> Response<ProxyBody> {
    let login = config
        .auth
        .login_paths
        .first()
        .map_or("/login", String::as_str);
    let rd = return_path(query);
    let location = match rd {
        Some(rd) => format!("{login}?next={}", percent_encode(&rd)),
        None => login.to_string(),
    };
    redirect(StatusCode::FOUND, &location)
}

/// A same-origin relative path: `/x`, never `//host` or `/\\host`.
pub fn is_local_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.starts_with("//")
        && !p.starts_with("/\\")
        && !p.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_are_local_only() {
        assert!(is_local_path("/dashboard?x=1"));
        for bad in [
            "//evil.test",
            "/\\evil.test",
            "https://evil.test",
            "",
            "/a\nb",
        ] {
            assert!(!is_local_path(bad), "{bad}");
        }
    }
}
