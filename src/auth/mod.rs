//! The proxy's own endpoints under `/.cloakroom/` (SPEC §8.3, §8.5–§8.7):
//! `GET session` (who am I), `POST logout`, and `login`: with the `local`
//! provider the proxy's own form ([`local`]), with `oidc` the start of the
//! authorization code flow ([`oidc`], whose callback is `GET callback`),
//! with `upstream`, `form` and `none` a redirect to the app's own login
//! page; `GET jwks.json`, the keys that verify the identity assertion
//! (SPEC §8.6a). Anything else under the prefix is 404.
//!
//! [`form`] is the `form` provider's request side: the app's own login
//! form, read on its way to the app (SPEC §8.4a).

pub mod form;
pub mod local;
mod oidc;
mod page;

use std::net::IpAddr;

use http::{Method, Request, Response, StatusCode};

use crate::config::{Config, Provider};
use crate::identity::assertion::Assertion;
use crate::reply::{json, no_content, redirect, ProxyBody, ProxyError};
use crate::session::{Manager, SessionState};
use crate::state::{Shared, State};
use crate::wire::body::ClientBody;
use crate::wire::headers::accepts_html;
use crate::wire::percent::{percent_decode, percent_encode};

/// What the pipeline knows of a request to the reserved prefix.
pub struct OwnRequest<'a> {
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The validated host the client asked for.
    pub host: &'a str,
    /// The client: the peer, or behind `trusted_proxies` the address they
    /// forwarded for.
    pub client_ip: IpAddr,
    /// The running state (the OIDC relying party, the assertion keys).
    pub state: &'a State,
}

/// What the OIDC flow ([`oidc`]) reads of a request to the prefix.
pub(crate) struct Own<'a, S> {
    pub manager: &'a Manager<S>,
    pub state: &'a State,
    pub req: &'a Request<ClientBody>,
    pub query: Option<&'a str>,
    /// The validated host the client asked for.
    pub host: &'a str,
    pub client_ip: IpAddr,
}

pub async fn serve(
    shared: &Shared,
    config: &Config,
    req: Request<ClientBody>,
    own: OwnRequest<'_>,
    sess: &mut SessionState,
) -> Result<Response<ProxyBody>, ProxyError> {
    let method = req.method();
    let read = method == Method::GET || method == Method::HEAD;
    let local = config.auth.provider == Provider::Local;
    let state = own.state;
    let oidc_view = |req| Own {
        manager: &shared.sessions,
        state,
        req,
        query: own.query,
        host: own.host,
        client_ip: own.client_ip,
    };
    match own.path {
        "/.cloakroom/session" if read => Ok(session_info(config, sess)),
        "/.cloakroom/jwks.json" if read => match &state.assertion {
            Some(a) => Ok(jwks(a)),
            None => Err(ProxyError::NotFound),
        },
        "/.cloakroom/logout" if method == Method::POST => {
            sess.check_csrf(&config.csrf, method, req.headers(), own.host, None)
                .map_err(|_| ProxyError::CsrfRejected)?;
            sess.end(&shared.sessions, "logout", None).await?;
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
        "/.cloakroom/login" if read && local => Ok(local::form(shared, req.headers(), own.query)),
        "/.cloakroom/login" if method == Method::POST && local => {
            let attempt = local::Attempt {
                shared,
                config,
                host: own.host,
                client: own.client_ip,
            };
            attempt.submit(req, sess).await
        }
        "/.cloakroom/login" if read => match (config.auth.provider, &state.oidc) {
            (Provider::None | Provider::Upstream | Provider::Form, _) => {
                Ok(app_login(config, own.query))
            }
            (Provider::Oidc, Some(rp)) => oidc::start(&oidc_view(&req), rp, sess).await,
            _ => Err(ProxyError::NotFound),
        },
        "/.cloakroom/callback" if read => match &state.oidc {
            Some(rp) => oidc::callback(&oidc_view(&req), rp, sess).await,
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

/// The `rd` return path, when it is a same-origin relative path.
fn return_path(query: Option<&str>) -> Option<String> {
    local::query_value(query, "rd").filter(|rd| is_local_path(rd))
}

/// `rd` when it is a same-origin relative path, else `/`.
pub fn safe_return_path(rd: Option<&str>) -> String {
    match rd {
        Some(p) if is_local_path(p) => p.to_string(),
        _ => "/".to_string(),
    }
}

/// A same-origin relative path, safe as a redirect target (no open
/// redirect): starts with one `/`; printable ASCII only, so no space,
/// control character (a browser drops tabs and newlines, turning `/\t/x`
/// into `//x`) or non-ASCII text; no backslash anywhere (browsers read
/// `\` as `/`, so `/\host` is `//host`). Once more percent-decoded it
/// still may not start `//` or `/\` nor hold a control character, so a
/// server that decodes `%2F` or `%5C` before collapsing slashes cannot
/// turn `/%2Fhost` into `//host` either.
pub fn is_local_path(p: &str) -> bool {
    let raw = p.starts_with('/')
        && !p.starts_with("//")
        && p.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    let decoded = percent_decode(p);
    raw && !decoded.starts_with("//")
        && !decoded.starts_with("/\\")
        && !decoded.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s8_5_return_paths_are_local_only() {
        for good in ["/", "/dashboard?x=1", "/a/b#frag", "/a%20b", "/%E2%82%AC"] {
            assert!(is_local_path(good), "{good}");
        }
        for bad in [
            "",
            "dashboard",
            "//evil.test",
            "///evil.test",
            "/\\evil.test",
            "\\/evil.test",
            "/a\\b",
            "https://evil.test",
            "HTTPS://evil.test",
            "javascript:alert(1)",
            "%2F%2Fevil.test",
            "%2f%2fevil.test",
            "/%2F/evil.test",
            "/%2fevil.test",
            "/%5Cevil.test",
            "/%5cevil.test",
            "/%09/evil.test",
            "/\t/evil.test",
            "/a\nb",
            " /evil",
            "/ /evil",
            "/caf\u{e9}",
            "/\u{ff0f}evil.test",
        ] {
            assert!(!is_local_path(bad), "{bad:?}");
        }
        assert_eq!(safe_return_path(Some("//evil.test")), "/");
        assert_eq!(safe_return_path(None), "/");
        assert_eq!(safe_return_path(Some("/x?y=1")), "/x?y=1");
    }
}
