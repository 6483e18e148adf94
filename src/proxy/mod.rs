//! The request pipeline. Each request runs these phases in order:
//!
//! 1. **inspect** — refuse `CONNECT` and non-websocket upgrades, oversized
//!    headers and targets that are not a clean origin-form path.
//! 2. **route** — normalise the path once ([`path`]); the reserved
//!    `/.cloakroom/` prefix is the proxy's; pick the route ([`route`]).
//! 3. **forward** — build the upstream request ([`forward`]) and send it on
//!    the pooled client ([`crate::upstream`]); failures become 502/504.
//! 4. **respond** — rewrite the upstream response ([`respond`]), start a
//!    websocket tunnel for a `101` ([`upgrade`]).
//! 5. **finish** — headers every response gets (HSTS), closing the
//!    connection when the proxy answered without reading a request body
//!    (SPEC §9.5a), and one access-log line.
//!
//! A phase that cannot go on returns a [`ProxyError`]; [`error`] turns it
//! into the client's response.

pub mod body;
pub mod error;
pub mod forward;
pub mod headers;
pub mod path;
pub mod respond;
pub mod route;
pub mod upgrade;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use hyper::body::Incoming;

use crate::app::{Shared, State};
use crate::telemetry;
pub use body::ProxyBody;
pub use error::ProxyError;

/// What the accept loop knows about a client connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// Canonical (IPv4-mapped addresses unmapped).
    pub peer: SocketAddr,
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
struct Access {
    route: Option<usize>,
    path: Option<String>,
}

/// Serves one client request; never fails (errors become responses).
pub async fn handle(shared: &Shared, conn: &ConnInfo, req: Request<Incoming>) -> Response<ProxyBody> {
    let started = Instant::now();
    let state = shared.state();
    let method = req.method().clone();
    let version = req.version();
    let body_pending = !req.body().is_end_stream();
    let uri = req.uri().clone();
    let mut access = Access::default();
    let route_name = |a: &Access| a.route.map(|i| state.config.routes[i].name.as_str());
    let mut resp = match serve(shared, &state, conn, req, &uri, &mut access).await {
        Ok(resp) => resp,
        Err(e) => e.respond(route_name(&access)),
    };
    finish(&state, &mut resp, version, body_pending);
    telemetry::access(telemetry::AccessLine {
        route: route_name(&access),
        method: method.as_str(),
        path: access.path.as_deref().unwrap_or_else(|| uri.path()),
        status: resp.status().as_u16(),
        duration: started.elapsed(),
        session: None,
        user: None,
    });
    resp
}

async fn serve(
    shared: &Shared,
    state: &State,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    uri: &Uri,
    access: &mut Access,
) -> Result<Response<ProxyBody>, ProxyError> {
    // 1. inspect
    let websocket = upgrade::classify(&req)?;
    if headers::size(req.headers()) > state.config.server.max_request_header_bytes {
        return Err(ProxyError::HeadersTooLarge);
    }
    let (raw_path, query) = path::split_target(uri.path_and_query().map_or("/", |pq| pq.as_str()));
    let path = path::normalise(raw_path).ok_or(ProxyError::BadRequest("invalid request target"))?;
    access.path = Some(path.to_string());

    // 2. route
    if path::prefix_matches("/.cloakroom", &path) {
        return Err(ProxyError::NotFound);
    }
    let host = forward::client_host(uri, req.headers()).ok_or(ProxyError::BadRequest("missing Host"))?;
    let host = host.to_str().map_err(|_| ProxyError::BadRequest("invalid Host"))?;
    let route = state.routes.select(host, &path).ok_or(ProxyError::NoRoute)?;
    access.route = Some(route.index);

    // 3. forward
    let target = Target { path, query };
    let trusted_peer = state.config.server.trusted_proxies.iter().any(|n| n.contains(&conn.peer.ip()));
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let forward = forward::Forward { route, target: &target, conn, trusted_peer, websocket };
    let upstream_req = forward.build(req)?;
    let mut resp = state.upstream.send(upstream_req).await?;

    // 4. respond
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        let client = client_upgrade.ok_or(ProxyError::UnexpectedUpgrade)?;
        upgrade::tunnel(client, hyper::upgrade::on(&mut resp), shared.closing());
    }
    Ok(respond::rewrite(resp, switching))
}

/// Headers every response gets, and closing for unread request bodies.
fn finish(state: &State, resp: &mut Response<ProxyBody>, version: Version, body_pending: bool) {
    if let Some(hsts) = &state.config.server.hsts {
        resp.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    // A response the proxy made itself has not read the request body; on
    // HTTP/1 that body must never be parsed as a next request (SPEC §9.5a).
    let own = matches!(resp.body(), ProxyBody::Full(_));
    if own && body_pending && version <= Version::HTTP_11 {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}
