//! The request pipeline: the phase order over one per-request context
//! ([`Ctx`]), and nothing else. Each phase is one file:
//!
//! 1. **inspect** ([`inspect`]) — refuse `CONNECT` and non-websocket
//!    upgrades, oversized heads, targets that are not a clean origin-form
//!    path and a missing or malformed host; normalise the path once.
//! 2. **route** ([`crate::route`]) — the reserved `/.cloakroom/` prefix is
//!    the proxy's own ([`crate::auth`]); else pick the route.
//! 3. **session** ([`crate::session::SessionState::begin`]) — the one scan
//!    of `Cookie` and the session behind it.
//! 4. **guard** ([`guard`]) — an identity where the route requires one,
//!    the CSRF origin check; an admitted request touches the idle clock.
//! 5. **upstream request** ([`forward::build`]) — built in place, in the one
//!    safe order (SPEC §9.2); with `provider = "form"`, a login form's body
//!    is read ahead for its user field ([`crate::auth::form`]).
//! 6. **send** ([`forward::send`]) — the pooled client; failures are 502/504
//!    (a small HTML page when the request was a browser navigation).
//! 7. **respond** ([`respond`]) — the session decision on the response, the
//!    response rewrite, a websocket tunnel for a `101`; then, for every
//!    response, the session cookie and cache headers ([`respond::finish`]).
//!
//! A phase that cannot go on returns a [`ProxyError`]; [`crate::reply`]
//! turns it into the client's response. One access line ends the request.

pub mod forward;
pub mod guard;
pub mod inspect;
pub mod respond;
pub mod upgrade;

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::HeaderValue;
use http::{Method, Request, Response, Uri, Version};
use http_body::Body;

use crate::config::{Provider, Route};
use crate::identity::assertion::ConnCache;
use crate::reply::{ProxyBody, ProxyError};
use crate::session::cookies::{CookieCounts, CookieScan};
use crate::session::csrf::csrf;
use crate::session::{now_ms, SessionState, VerifyCache};
use crate::state::{Shared, State};
use crate::telemetry;
use crate::upstream::TimerSlot;
use crate::wire::body::ClientBody;
use crate::wire::host::SeenHost;
use crate::wire::{headers, path};

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
    /// The last identity assertion made for it (SPEC §8.6a).
    pub assertion: ConnCache,
    /// The last host its requests named (HTTP/2's `:authority`).
    pub host: SeenHost,
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
            assertion: ConnCache::default(),
            host: SeenHost::default(),
        }
    }
}

/// One request's context. It starts with what the request line says and
/// each phase adds what it found; the access line and [`respond::finish`]
/// read it whatever phase stopped the request.
pub struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub state: &'a State,
    pub conn: &'a ConnInfo,
    pub method: Method,
    pub version: Version,
    /// The request has a body still unread.
    pub body_pending: bool,
    /// The raw path until inspection, then the normalised one: what is
    /// checked is what the upstream sees.
    pub path: Cow<'a, str>,
    pub query: Option<&'a str>,
    /// The validated host the client asked for (empty until inspected).
    pub host: HeaderValue,
    pub websocket: bool,
    pub route: Option<&'a Route>,
    pub sess: SessionState,
    /// The one scan of the request's `Cookie` fields.
    pub cookies: CookieCounts,
    /// The clock, read once for a live session or a capture.
    pub now: Option<u64>,
    pub user_agent: Option<HeaderValue>,
    /// A POST, or a request carrying `Authorization`: on a login path, a
    /// login submission (SPEC §8.4).
    pub login_submission: bool,
    /// A browser navigation, noted before the request goes upstream: an
    /// upstream failure then gets an HTML page, not plain text.
    pub navigation: bool,
    /// The client: the peer, or behind `trusted_proxies` the address they
    /// forwarded for (set once the request is inspected).
    pub client_ip: std::net::IpAddr,
    /// `provider = "form"`: the user a login form submitted names, bound
    /// if the app answers with a success redirect (SPEC §8.4a).
    pub form_user: Option<String>,
}

impl<'a> Ctx<'a> {
    fn new(
        shared: &'a Arc<Shared>,
        state: &'a State,
        conn: &'a ConnInfo,
        req: &Request<ClientBody>,
        uri: &'a Uri,
    ) -> Self {
        Ctx {
            shared,
            state,
            conn,
            method: req.method().clone(),
            version: req.version(),
            body_pending: !req.body().is_end_stream(),
            path: Cow::Borrowed(uri.path()),
            query: None,
            host: HeaderValue::from_static(""),
            websocket: false,
            route: None,
            sess: SessionState::default(),
            cookies: CookieCounts::default(),
            now: None,
            user_agent: None,
            login_submission: false,
            navigation: false,
            client_ip: conn.peer.ip(),
            form_user: None,
        }
    }

    /// The client's host as text (validated ASCII by [`inspect`]).
    pub fn host(&self) -> &str {
        self.host.to_str().unwrap_or("")
    }

    fn route_name(&self) -> Option<&'a str> {
        self.route.map(|r| r.name.as_str())
    }
}

/// Serves one client request; never fails (errors become responses).
///
/// This and [`serve`] are plain functions returning `async move` blocks:
/// an `async fn` keeps its arguments twice in its state (as received and
/// as locals), and the request is a few hundred bytes of every request's
/// future (see `docs/performance.md`).
#[allow(clippy::manual_async_fn)]
pub fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    mut req: Request<ClientBody>,
) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
    async move {
        let (shared, conn) = (&shared, &*conn);
        // The clock is read for the access line only when it is written.
        let started = telemetry::access_enabled().then(Instant::now);
        let state = shared.state();
        // Taken, not cloned: the upstream request gets its own target.
        let uri = std::mem::take(req.uri_mut());
        let mut ctx = Ctx::new(shared, &state, conn, &req, &uri);
        let mut resp = match serve(&mut ctx, req, &uri).await {
            Ok(resp) => resp,
            Err(e) => e.respond(ctx.route_name(), ctx.navigation),
        };
        respond::finish(&ctx, &mut resp);
        let handle = telemetry::access_enabled()
            .then(|| ctx.sess.handle())
            .flatten();
        let counters =
            &state.request_counters[ctx.route.map_or(state.config.routes.len(), |r| r.index)];
        telemetry::access(
            telemetry::AccessLine {
                route: ctx.route_name(),
                method: ctx.method.as_str(),
                path: &ctx.path,
                status: resp.status(),
                duration: started.map(|t| t.elapsed()),
                session: handle.as_ref().map(|h| h.as_str()),
                user: ctx.sess.user(),
            },
            counters,
        );
        resp
    }
}

#[allow(clippy::manual_async_fn)]
fn serve<'a, 'c>(
    ctx: &'c mut Ctx<'a>,
    mut req: Request<ClientBody>,
    uri: &'a Uri,
) -> impl Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send + use<'a, 'c>
where
    'a: 'c,
{
    async move {
        let state = ctx.state;
        let cfg = &state.config;
        // 1. inspect
        inspect::request(ctx, &req, uri)?;
        // Behind a trusted proxy, the client it forwarded for (one comparison
        // per trusted network otherwise); read once, by every phase after.
        let trusted = &cfg.server.trusted_proxies;
        ctx.client_ip = headers::forwarded_client(req.headers(), ctx.conn.peer.ip(), trusted);

        // 2. route
        let reserved = path::prefix_matches("/.cloakroom", &ctx.path);
        let route = match reserved {
            true => None,
            false => Some(
                state
                    .routes
                    .select(ctx.host(), &ctx.path)
                    .ok_or(ProxyError::NoRoute)?,
            ),
        };
        ctx.route = route;

        // 3. session
        let manager = &ctx.shared.sessions;
        let scan = CookieScan::new(req.headers(), &cfg.session.cookie_name);
        ctx.cookies = scan.counts();
        let route_name = ctx.route_name();
        // Boxed when there is a session cookie to look up: the lookup's
        // state (a store read, ~0.9 KB) would otherwise be part of every
        // request's future, cookie or not.
        ctx.sess = match scan.sessions {
            0 => SessionState::default(),
            _ => {
                Box::pin(SessionState::begin(
                    manager,
                    &cfg.session,
                    &scan,
                    route_name,
                    &ctx.conn.verified,
                ))
                .await?
            }
        };
        if reserved {
            // Boxed: the proxy's own pages are rare, and their future would
            // otherwise enlarge every proxied request's.
            let host = ctx.host.to_str().unwrap_or("");
            let own = crate::auth::OwnRequest {
                path: &ctx.path,
                query: ctx.query,
                host,
                client_ip: ctx.client_ip,
                state,
            };
            let own = crate::auth::serve(ctx.shared, cfg, req, own, &mut ctx.sess);
            return Box::pin(own).await;
        }
        let route = route.expect("a request outside the reserved prefix has a route");

        // 4. guard; an admitted request is activity of its session (a refused
        // one, a forged cross-site POST say, must not keep a session alive).
        guard::admit(ctx, route, req.headers())?;
        if ctx.sess.live.is_some() {
            let now = now_ms();
            ctx.now = Some(now);
            let passive = path::under_any(&cfg.session.passive_paths, &ctx.path);
            ctx.sess.touch(manager, &cfg.session, now, passive).await?;
        }

        // 5. upstream request
        ctx.user_agent = req.headers().get(http::header::USER_AGENT).cloned();
        ctx.login_submission =
            ctx.method == Method::POST || req.headers().contains_key(http::header::AUTHORIZATION);
        // Only an upstream failure reads it, but the request is gone by then;
        // a method compare and an `Accept` scan, no allocation.
        ctx.navigation = headers::is_navigation(&ctx.method, req.headers());
        let client_upgrade = ctx.websocket.then(|| hyper::upgrade::on(&mut req));
        // Judged on the client's own `Origin`, before it is translated: a login
        // form posted from another site binds nothing (login CSRF).
        let cross_site = cfg.auth.provider == Provider::Form
            && ctx.method == Method::POST
            && csrf(&cfg.csrf, &ctx.method, req.headers(), ctx.host()).is_err();
        forward::build(ctx, route, uri, &mut req)?;
        // The app's own login form is looked into on its way (SPEC §8.4a).
        let (req, form_user) = crate::auth::form::read_login(
            &cfg.auth,
            &ctx.method,
            &ctx.path,
            cross_site,
            cfg.server.request_header_timeout,
            req,
        )
        .await;
        ctx.form_user = form_user;

        // 6. send
        let resp = forward::send(ctx, route, req).await?;

        // 7. respond
        respond::upstream(ctx, route, client_upgrade, resp).await
    }
}
