//! Phases 5 and 6: the upstream request, built in place in one order, and
//! sent on the pooled client.
//!
//! The order is the safety rule of SPEC §9.2: first everything that removes
//! headers the client sent (hop-by-hop headers and every header its
//! `Connection` names, the client's identity headers), then everything the
//! proxy sets (identity, the jar's `Cookie`, `X-Forwarded-*`, the
//! translated `Origin`/`Referer`, `Host`), so a `Connection` token can never
//! remove what the proxy set.

use std::future::Future;

use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, Version};

use super::{Ctx, ProxyError};
use crate::config::{CookieMode, Route};
use crate::session::cookies::{upstream_cookie, CookieCounts};
use crate::upstream::{RequestBody, UpstreamBody, UpstreamError};
use crate::wire::body::ClientBody;
use crate::wire::{headers, origin};

/// Rewrites the client's request into the upstream request, in place (a
/// request is a few hundred bytes: every move is a copy).
/// `target` is the client's request target, taken out of `req` before the
/// pipeline began.
pub fn build(
    ctx: &Ctx<'_>,
    route: &Route,
    target: &Uri,
    req: &mut Request<ClientBody>,
) -> Result<(), ProxyError> {
    let state = ctx.state;
    let h = req.headers_mut();
    // Removals: what the client sent that must not travel.
    headers::strip_hop_by_hop(h);
    // hyper re-derives framing from the body it decoded; a client's own
    // Content-Length must not travel next to a different framing.
    h.remove(header::CONTENT_LENGTH);
    state.identity.strip(h);

    // Additions: what the proxy sets.
    state.identity.inject(h, ctx.sess.identity());
    if let (Some(signer), Some(identity), Some(session)) =
        (&state.assertion, ctx.sess.identity(), ctx.sess.key())
    {
        // SPEC §8.6a: issued by the origin the client used, for this
        // route's upstream; the session's clock read is reused when there.
        let now = ctx.now.unwrap_or_else(crate::session::now_ms) / 1000;
        let cache = &ctx.conn.assertion;
        let token = signer
            .token_for(
                cache,
                session,
                identity,
                ctx.host(),
                &route.upstream_url,
                now,
            )
            .map_err(|e| ProxyError::Internal {
                what: "cannot sign the identity assertion",
                source: Box::new(e),
            })?;
        h.insert(&signer.header, token);
    }
    let jar = ctx
        .sess
        .live
        .as_ref()
        .filter(|_| route.cookies == CookieMode::Jar)
        .and_then(|f| f.session.jar(&route.name));
    // `Connection: cookie` took the client's cookies away with it.
    let counts = match h.contains_key(header::COOKIE) {
        true => ctx.cookies,
        false => CookieCounts::default(),
    };
    let cookie_name = &state.config.session.cookie_name;
    // Read only with a session, and `now` is there exactly then.
    upstream_cookie(
        h,
        counts,
        cookie_name,
        jar,
        &ctx.path,
        ctx.now.unwrap_or_default(),
    );
    let trusted_peer = state
        .config
        .server
        .trusted_proxies
        .iter()
        .any(|n| n.contains(&ctx.conn.peer.ip()));
    headers::set_forwarded(h, &ctx.conn.peer_header, trusted_peer, Some(&ctx.host));
    let host = match route.preserve_host {
        true => ctx.host.clone(),
        false => route.upstream_host.clone(),
    };
    // SPEC §9.6a: the guard phase has checked the client's own `Origin`
    // (CSRF); the app is sent the origin of the `Host` set next.
    if route.translate_origin {
        let seen = (!route.preserve_host).then(|| route.upstream_origin.origin());
        origin::translate_request(h, ctx.host(), seen);
    }
    h.insert(header::HOST, host);
    if ctx.websocket {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    *req.uri_mut() = upstream_uri(&ctx.path, ctx.query, target)?;
    *req.version_mut() = Version::HTTP_11;
    Ok(())
}

/// Origin-form (`/path?query`): the request goes to the upstream
/// connection as written here, and `Host` carries the authority. When
/// normalising changed nothing (`path` still points into the client's
/// target) and no fragment was dropped, that is the client's own target,
/// shared rather than written and parsed again.
fn upstream_uri(path: &str, query: Option<&str>, client: &Uri) -> Result<Uri, ProxyError> {
    if let Some(pq) = client.path_and_query() {
        let target = pq.as_str();
        if std::ptr::eq(target.as_ptr(), path.as_ptr())
            && target.len() == path.len() + query.map_or(0, |q| q.len() + 1)
        {
            return Ok(Uri::from(pq.clone()));
        }
    }
    let pq = match query {
        Some(q) => PathAndQuery::try_from(format!("{path}?{q}")),
        None => PathAndQuery::try_from(path),
    }
    .map_err(|_| ProxyError::BadRequest("invalid request target"))?;
    Ok(Uri::from(pq))
}

/// Sends the upstream request on the route's pool, recording how long the
/// upstream took to answer. The upstream's own future, not wrapped in
/// another: a wrapper would hold it twice in every request's state.
pub fn send<'a>(
    ctx: &'a Ctx<'_>,
    route: &'a Route,
    req: Request<RequestBody>,
) -> impl Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Send + 'a {
    let state = ctx.state;
    state.upstream.send(
        route.index,
        req,
        &ctx.conn.upstream_timer,
        &state.upstream_timers[route.index],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::path;

    /// What the upstream is sent for `target`, as the pipeline derives it.
    fn forwarded(target: &str) -> String {
        let uri: Uri = target.parse().unwrap();
        let (raw, query) = path::split_target(uri.path_and_query().unwrap().as_str());
        let p = path::normalise(raw).unwrap();
        upstream_uri(&p, query, &uri).unwrap().to_string()
    }

    #[test]
    fn the_upstream_target_is_the_normalised_path_and_the_query() {
        for (target, want) in [
            ("/a/b", "/a/b"),
            ("/a?x=1&y", "/a?x=1&y"),
            ("/a?", "/a?"),
            ("/a?b?c", "/a?b?c"),
            ("/a//b/../c?q", "/a/c?q"),
            ("/a/./b", "/a/b"),
            ("/a#frag", "/a"),
            ("/a?x#frag", "/a?x"),
        ] {
            assert_eq!(forwarded(target), want, "{target}");
        }
    }
}
