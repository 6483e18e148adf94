//! Phase 7, respond: the upstream's response on its way back — the session
//! decision it carries ([`crate::session::capture`]), hop-by-hop headers
//! out, `Location`s naming the upstream pointed back at the client (SPEC
//! §9.7), a websocket tunnel for a `101` — and [`finish`], which every
//! response passes, the proxy's own included.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;

use super::{upgrade, Ctx, ProxyError};
use crate::config::Route;
use crate::reply::ProxyBody;
use crate::session::capture::{has_effects, Exchange};
use crate::session::now_ms;
use crate::upstream::UpstreamBody;
use crate::wire::{headers, origin};

/// Applies the response's session effects, then rewrites it for the client.
pub async fn upstream(
    ctx: &mut Ctx<'_>,
    route: &Route,
    client_upgrade: Option<OnUpgrade>,
    mut resp: Response<UpstreamBody>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let cfg = &ctx.state.config;
    let status = resp.status();
    if ctx.form_user.is_some() || has_effects(&cfg.auth, &ctx.path, status, resp.headers()) {
        let exchange = Exchange {
            manager: &ctx.shared.sessions,
            config: cfg,
            route,
            path: &ctx.path,
            login_submission: ctx.login_submission,
            status,
            form_user: ctx.form_user.as_deref(),
            host: ctx.host.to_str().unwrap_or(""),
            client_ip: ctx.client_ip,
            user_agent: ctx.user_agent.as_ref(),
            now: ctx.now.unwrap_or_else(now_ms),
        };
        // Boxed: most responses carry no session effect, and the capture's
        // state would otherwise grow every request's future.
        Box::pin(exchange.capture(&mut ctx.sess, resp.headers_mut())).await?;
    }
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        let client = client_upgrade.ok_or(ProxyError::UnexpectedUpgrade)?;
        let watch = ctx.sess.key().map(|k| upgrade::SessionWatch {
            shared: ctx.shared.clone(),
            key: *k,
        });
        upgrade::tunnel(
            client,
            hyper::upgrade::on(&mut resp),
            ctx.shared.closing(),
            watch,
        );
    }
    Ok(rewrite(ctx, route, resp, switching))
}

/// Hop-by-hop headers out (framing is re-derived by hyper), `Location` and
/// `Content-Location` back through the proxy, the upgrade headers back in
/// for a websocket `101`.
fn rewrite(
    ctx: &Ctx<'_>,
    route: &Route,
    resp: Response<UpstreamBody>,
    websocket_101: bool,
) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    let h = &mut parts.headers;
    if h.contains_key(header::TRANSFER_ENCODING) {
        h.remove(header::CONTENT_LENGTH);
    }
    headers::strip_hop_by_hop(h);
    if route.rewrite_location {
        origin::rewrite_locations(h, &route.upstream_origin, ctx.host());
    }
    if websocket_101 {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    Response::from_parts(parts, ProxyBody::Upstream(body))
}

/// Headers every response gets: the session cookie, cache rules for
/// session responses (SPEC §9.5), HSTS, and closing for unread bodies.
pub fn finish(ctx: &Ctx<'_>, resp: &mut Response<ProxyBody>) {
    let state = ctx.state;
    let sess = &ctx.sess;
    let cookie = sess.response_cookie(&ctx.shared.sessions.keys, &state.config.session);
    let h = resp.headers_mut();
    if sess.carried {
        if !headers::has_any_token(h, &header::VARY, &["cookie", "*"]) {
            h.append(header::VARY, HeaderValue::from_static("Cookie"));
        }
        if !h.contains_key(header::CACHE_CONTROL) {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
        }
    }
    if let Some(c) = cookie {
        h.append(header::SET_COOKIE, c);
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(hsts) = &state.config.server.hsts {
        h.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    // A response the proxy made itself has not read the request body; on
    // HTTP/1 that body must never be parsed as a next request (SPEC §9.5a).
    let own = matches!(resp.body(), ProxyBody::Full(_));
    if own && ctx.body_pending && ctx.version <= Version::HTTP_11 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}
