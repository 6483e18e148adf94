//! The proxy's own endpoints under `/.cloakroom/` (SPEC §8.3, §8.7):
//! `GET session` (who am I), `POST logout`, and `GET login`, which with the
//! `upstream` and `none` providers sends the browser to the app's own login
//! page. Anything else under the prefix is 404.

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::State;
use crate::config::Provider;
use crate::proxy::error::json;
use crate::proxy::guard::{accepts_html, csrf, percent_encode};
use crate::proxy::session::{store_error, SessionState};
use crate::proxy::{ProxyBody, ProxyError};
use crate::session::Manager;

pub async fn serve(
    manager: &Manager,
    state: &State,
    req: &Request<Incoming>,
    path: &str,
    query: Option<&str>,
    host: &str,
    sess: &mut SessionState,
) -> Result<Response<ProxyBody>, ProxyError> {
    let method = req.method();
    let read = method == Method::GET || method == Method::HEAD;
    match path {
        "/.cloakroom/session" if read => Ok(session_info(state, sess)),
        "/.cloakroom/logout" if method == Method::POST => {
            if sess.live.is_some() {
                csrf(&state.config.csrf, method, req.headers(), host)?;
            }
            logout(manager, sess).await?;
            Ok(if accepts_html(req.headers()) {
                redirect(StatusCode::SEE_OTHER, "/")
            } else {
                no_content()
            })
        }
        "/.cloakroom/login" if read => match state.config.auth.provider {
            Provider::None | Provider::Upstream => Ok(app_login(state, query)),
            Provider::Local | Provider::Oidc => Err(ProxyError::NotFound),
        },
        _ => Err(ProxyError::NotFound),
    }
}

/// `{authenticated, user, email, groups, expires_at}`; never the id.
fn session_info(state: &State, sess: &SessionState) -> Response<ProxyBody> {
    let identity = sess.identity();
    let expires_at = sess.live.as_ref().map(|f| {
        let t = std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(f.session.deadline(&state.config.session));
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

async fn logout(manager: &Manager, sess: &mut SessionState) -> Result<(), ProxyError> {
    if let Some(found) = sess.live.take() {
        manager
            .end(&found.key, found.session.user(), "logout", None)
            .await
            .map_err(store_error)?;
        sess.clear = true;
        sess.issue = None;
    }
    Ok(())
}

/// Sends the browser to the app's own login page, keeping `rd` as `next`
/// when it is a same-origin relative path.
fn app_login(state: &State, query: Option<&str>) -> Response<ProxyBody> {
    let login = state
        .config
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

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn redirect(status: StatusCode, location: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn no_content() -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
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
        assert_eq!(percent_decode("%2Fa%20b+c"), "/a b c");
    }
}
