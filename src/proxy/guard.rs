//! Phase 4, guard: admission before anything reaches the upstream. A route
//! with `auth = "required"` needs an identity (SPEC §8.3); an unsafe request
//! carrying a session must pass the CSRF origin check (§9.6).

use http::header::HeaderMap;
use http::{HeaderValue, Method};

use super::{Ctx, ProxyError};
use crate::config::{Route, RouteAuth};
use crate::wire::headers::is_navigation;
use crate::wire::path::under_any;
use crate::wire::percent::percent_encode;

/// Admits the request to `route`, or says why not.
pub fn admit(ctx: &Ctx<'_>, route: &Route, headers: &HeaderMap) -> Result<(), ProxyError> {
    let sess = &ctx.sess;
    require_identity(
        route,
        sess.identity().is_some(),
        &ctx.method,
        headers,
        &ctx.path,
        ctx.query,
    )?;
    let csrf = &ctx.state.config.csrf;
    sess.check_csrf(csrf, &ctx.method, headers, ctx.host(), Some(&route.name))
        .map_err(|_| ProxyError::CsrfRejected)
}

/// Refuses a request to an `auth = "required"` route without an identity,
/// unless its path is one of the route's `public_paths`: a browser
/// navigation is sent to the login page, anything else gets 401.
fn require_identity(
    route: &Route,
    has_identity: bool,
    method: &Method,
    headers: &HeaderMap,
    path: &str,
    query: Option<&str>,
) -> Result<(), ProxyError> {
    if route.auth != RouteAuth::Required || has_identity || under_any(&route.public_paths, path) {
        return Ok(());
    }
    if is_navigation(method, headers) {
        let mut target = String::from(path);
        if let Some(q) = query {
            target.push('?');
            target.push_str(q);
        }
        let location = format!("/.cloakroom/login?rd={}", percent_encode(&target));
        return Err(ProxyError::LoginRequired(
            HeaderValue::from_str(&location)
                .map_err(|_| ProxyError::BadRequest("invalid request target"))?,
        ));
    }
    Err(ProxyError::Unauthenticated)
}
