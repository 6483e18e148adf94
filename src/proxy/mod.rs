//! The request pipeline. Each request runs these phases in order:
//!
//! 1. **inspect** — refuse `CONNECT` and non-websocket upgrades, oversized
//!    headers and targets that are not a clean origin-form path.
//! 2. **route** — normalise the path once ([`path`]); the reserved
//!    `/.cloakroom/` prefix is the proxy's ([`crate::auth`]); pick the
//!    route ([`route`]).
//! 3. **session** — find the session behind the cookie ([`session`]),
//!    refuse what needs a login or fails CSRF ([`guard`]), touch the idle
//!    clock, strip and inject identity headers ([`crate::identity`]), merge
//!    the jar into `Cookie`.
//! 4. **forward** — build the upstream request ([`forward`]) and send it on
//!    the pooled client ([`crate::upstream`]); failures become 502/504.
//! 5. **respond** — capture `Set-Cookie` and login/logout headers into the
//!    session ([`session::Exchange`]), rewrite the upstream response
//!    ([`respond`]), start a websocket tunnel for a `101` ([`upgrade`]).
//! 6. **finish** — the session cookie, `Vary`/`Cache-Control`, HSTS, closing the
//!    connection when the proxy answered without reading a request body
//!    (SPEC §9.5a), and one access-log line.
//!
//! A phase that cannot go on returns a [`ProxyError`]; [`error`] turns it
//! into the client's response.

pub mod body;
pub mod error;
pub mod forward;
pub mod guard;
pub mod headers;
pub mod path;
pub mod respond;
pub mod route;
pub mod session;
pub mod upgrade;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use hyper::body::Incoming;

use crate::app::{Shared, State};
use crate::session::setcookie::now_ms;
use crate::session::VerifyCache;
use crate::telemetry;
use crate::upstream::TimerSlot;
pub use body::ProxyBody;
pub use error::ProxyError;
use session::SessionState;

/// What the accept loop knows about a client connection.
#[derive(Debug)]
pub struct ConnInfo {
    /// Canonical (IPv4-mapped addresses unmapped).
    pub peer: SocketAddr,
    /// The peer's address as an `X-Forwarded-For` entry, made once.
    pub peer_header: HeaderValue,
    /// The upstream response timer its requests reuse.
    pub upstream_timer: TimerSlot,
    /// The last session cookie it presented that verified.
    pub verified: VerifyCache,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr) -> Self {
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let peer_header = HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value");
        ConnInfo {
            peer,
            peer_header,
            upstream_timer: TimerSlot::default(),
            verified: VerifyCache::default(),
        }
    }
}

/// The request target after normalisation: what is checked is what the
/// upstream sees.
#[derive(Debug)]
pub struct Target<'a> {
    pub path: Cow<'a, str>,
    pub query: Option<&'a str>,
}

/// Per-request facts gathered for the access log.
#[derive(Default)]
struct Access<'u> {
    route: Option<usize>,
    /// Borrowed from the request target unless normalising changed it.
    path: Option<Cow<'u, str>>,
}

/// Serves one client request; never fails (errors become responses).
pub async fn handle(
    shared: &Arc<Shared>,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    // The clock is read for the access line only when it is written.
    let started = telemetry::access_enabled().then(Instant::now);
    let state = shared.state();
    let method = req.method().clone();
    let version = req.version();
    let body_pending = !req.body().is_end_stream();
    // Taken, not cloned: the upstream request gets its own target.
    let uri = std::mem::take(req.uri_mut());
    let mut access = Access::default();
    let mut sess = SessionState::default();
    let route_name = |a: &Access| a.route.map(|i| state.config.routes[i].name.as_str());
    let mut resp = match serve(shared, &state, conn, req, &uri, &mut access, &mut sess).await {
        Ok(resp) => resp,
        Err(e) => e.respond(route_name(&access)),
    };
    finish(shared, &state, &mut resp, &sess, version, body_pending);
    let handle = telemetry::access_enabled().then(|| sess.handle()).flatten();
    let counters = &state.request_counters[access.route.unwrap_or(state.config.routes.len())];
    telemetry::access(
        telemetry::AccessLine {
            route: route_name(&access),
            method: method.as_str(),
            path: access.path.as_deref().unwrap_or_else(|| uri.path()),
            status: resp.status(),
            duration: started.map(|t| t.elapsed()),
            session: handle.as_ref().map(|h| h.as_str()),
            user: sess.user(),
        },
        counters,
    );
    resp
}

async fn serve<'u>(
    shared: &Arc<Shared>,
    state: &State,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    uri: &'u Uri,
    access: &mut Access<'u>,
    sess: &mut SessionState,
) -> Result<Response<ProxyBody>, ProxyError> {
    let cfg = &state.config;
    // 1. inspect
    let websocket = upgrade::classify(&req)?;
    if headers::size(req.headers()) > cfg.server.max_request_header_bytes {
        return Err(ProxyError::HeadersTooLarge);
    }
    let (raw_path, query) = path::split_target(uri.path_and_query().map_or("/", |pq| pq.as_str()));
    let path = path::normalise(raw_path).ok_or(ProxyError::BadRequest("invalid request target"))?;
    access.path = Some(path.clone());
    let host_value =
        forward::client_host(uri, req.headers()).ok_or(ProxyError::BadRequest("missing Host"))?;
    let host = host_value
        .to_str()
        .map_err(|_| ProxyError::BadRequest("invalid Host"))?;

    // 2. route
    let manager = &shared.sessions;
    if path::prefix_matches("/.cloakroom", &path) {
        *sess = session::begin(manager, state, req.headers(), None, &conn.verified).await?;
        // Boxed: the proxy's own pages are rare, and their future would
        // otherwise enlarge every proxied request's.
        return Box::pin(crate::auth::serve(
            manager, state, &req, &path, query, host, sess,
        ))
        .await;
    }
    let route = state
        .routes
        .select(host, &path)
        .ok_or(ProxyError::NoRoute)?;
    access.route = Some(route.index);

    // 3. session, identity
    *sess = session::begin(
        manager,
        state,
        req.headers(),
        Some(&route.name),
        &conn.verified,
    )
    .await?;
    guard::require_identity(
        route,
        sess.identity().is_some(),
        req.method(),
        req.headers(),
        &path,
        query,
    )?;
    if sess.live.is_some() {
        guard::csrf(&cfg.csrf, req.method(), req.headers(), host).inspect_err(|_| {
            telemetry::audit("csrf_rejected", sess.key(), sess.user(), Some(&route.name))
        })?;
    }
    // The clock is read for a live session, or later for a capture.
    let now = sess.live.is_some().then(now_ms);
    if let (Some(now), Some(found)) = (now, sess.live.as_mut()) {
        if found.touch_due(&cfg.session, now) && !path::under_any(&cfg.session.passive_paths, &path)
        {
            manager
                .touch_if_due(found, &cfg.session, now)
                .await
                .map_err(session::store_error)?;
        }
    }
    state.identity.strip(req.headers_mut());
    state.identity.inject(req.headers_mut(), sess.identity());
    session::prepare_request(
        req.headers_mut(),
        &cfg.session.cookie_name,
        route,
        sess.live.as_ref().map(|f| &*f.session),
        &path,
        // Read only with a session, and `now` is there exactly then.
        now.unwrap_or_default(),
    );
    let user_agent = req.headers().get(header::USER_AGENT).cloned();
    let is_post = req.method() == Method::POST;

    // 4. forward
    let target = Target { path, query };
    let trusted_peer = cfg
        .server
        .trusted_proxies
        .iter()
        .any(|n| n.contains(&conn.peer.ip()));
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let forward = forward::Forward {
        route,
        target: &target,
        conn,
        client_host: &host_value,
        trusted_peer,
        websocket,
    };
    forward.build(&mut req)?;
    let sent = Instant::now();
    let resp = state
        .upstream
        .send(route.index, req, sent, &conn.upstream_timer)
        .await;
    state.upstream_timers[route.index].observe(sent.elapsed().as_secs_f64());
    let mut resp = resp?;

    // 5. respond
    if session::has_effects(state, resp.headers()) {
        let exchange = session::Exchange {
            manager,
            state,
            route,
            path: &target.path,
            is_post,
            client_ip: conn.peer.ip(),
            user_agent: user_agent.as_ref(),
            now: now.unwrap_or_else(now_ms),
        };
        exchange.capture(sess, resp.headers_mut()).await?;
    }
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        let client = client_upgrade.ok_or(ProxyError::UnexpectedUpgrade)?;
        let watch = sess.key().map(|k| upgrade::SessionWatch {
            shared: shared.clone(),
            key: *k,
        });
        upgrade::tunnel(
            client,
            hyper::upgrade::on(&mut resp),
            shared.closing(),
            watch,
        );
    }
    Ok(respond::rewrite(resp, switching))
}

/// Headers every response gets: the session cookie, cache rules for
/// session responses (SPEC §9.5), HSTS, and closing for unread bodies.
fn finish(
    shared: &Shared,
    state: &State,
    resp: &mut Response<ProxyBody>,
    sess: &SessionState,
    version: Version,
    body_pending: bool,
) {
    let h = resp.headers_mut();
    let cookie = match (&sess.issue, sess.clear) {
        (Some(id), _) => {
            let value = shared.sessions.keys.encode(id);
            let cfg = &state.config.session;
            let max_age = cfg.persistent.then(|| {
                let deadline = sess
                    .live
                    .as_ref()
                    .map_or(0, |f| f.session.absolute_deadline(cfg));
                deadline.saturating_sub(now_ms()) / 1000
            });
            Some(session::session_cookie(state, Some(&value), max_age))
        }
        (None, true) => Some(session::session_cookie(state, None, None)),
        (None, false) => None,
    };
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
    if own && body_pending && version <= Version::HTTP_11 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}
