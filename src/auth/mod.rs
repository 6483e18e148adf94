//! The proxy's own endpoints under `/.cloakroom/` (SPEC §8.3, §8.7):
//! `GET session` (who am I), `POST logout`, and `GET login`, which with the
//! `upstream` and `none` providers sends the browser to the app's own login
//! page; `GET jwks.json`, the keys that verify the identity assertion
//! (SPEC §8.6a). Anything else under the prefix is 404.

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::config::{Config, Provider};
use crate::identity::assertion::Assertion;
use crate::reply::{json, no_content, redirect, ProxyBody, ProxyError};
use crate::session::{Manager, SessionState, SessionStore};
use crate::wire::headers::accepts_html;
use crate::wire::percent::{percent_decode, percent_encode};

#[allow(clippy::too_many_arguments)]
pub async fn serve<S: SessionStore + 'static>(
    manager: &Manager<S>,
    config: &Config,
    assertion: Option<&Assertion>,
    req: &Request<Incoming>,
    path: &str,
    query: Option<&str>,
    host: &str,
    sess: &mut SessionState,
) -> Result<Response<ProxyBody>, ProxyError> {
    let method = req.method();
    let read = method == Method::GET || method == Method::HEAD;
    match path {
        "/.cloakroom/session" if read => Ok(session_info(config, sess)),
        "/.cloakroom/jwks.json" if read => match assertion {
            Some(a) => Ok(jwks(a)),
            None => Err(ProxyError::NotFound),
        },
        "/.cloakroom/logout" if method == Method::POST => {
            sess.check_csrf(&config.csrf, method, req.headers(), host, None)
                .map_err(|_| ProxyError::CsrfRejected)?;
            sess.end(manager, "logout", None).await?;
            Ok(if accepts_html(req.headers()) {
                redirect(StatusCode::SEE_OTHER, "/")
            } else {
                no_content()
            })
        }
        "/.cloakroom/login" if read => match config.auth.provider {
            Provider::None | Provider::Upstream => Ok(app_login(config, query)),
            Provider::Local | Provider::Oidc => Err(ProxyError::NotFound),
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
    let rd = query
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("rd=")))
        .map(percent_decode)
        .filter(|rd| is_local_path(rd));
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
