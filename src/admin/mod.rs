//! The admin listener (`server.admin_listen`, SPEC §10). `GET /healthz`
//! (alive), `GET /readyz` (store reachable, certificates loaded, and no
//! shutdown begun: 503 once the drain starts) and `GET /metrics`
//! (Prometheus text) are open. Everything else needs
//! `Authorization: Bearer <token>` ([`token`]); without a configured token
//! it answers 404, with one a missing or wrong token gets 401 before the
//! path is even looked at. The calls ([`route`]): the session listing and
//! revocation ([`sessions`]) and `POST /reload`, the same reload as SIGHUP.
//!
//! The listener outlives the proxy's drain, so that a load balancer sees
//! `/readyz` fail while in-flight requests finish; its connections are not
//! counted by that drain and close when it ends.

mod route;
mod sessions;
mod token;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::reply::{json, plain, ProxyBody};
use crate::server::Drain;
use crate::state::Shared;
use crate::store::SessionStore;

use route::{Call, Refused};
use sessions::error;
pub use token::{Token, TOKEN_ENV};

/// What every admin connection shares.
pub struct Admin {
    shared: Arc<Shared>,
    /// `None`: the authenticated calls answer 404.
    token: Option<Token>,
    /// The proxy's drain: `/readyz` fails once it has begun.
    proxy: Drain,
}

impl Admin {
    pub fn new(shared: Arc<Shared>, token: Option<Token>, proxy: Drain) -> Arc<Admin> {
        Arc::new(Admin {
            shared,
            token,
            proxy,
        })
    }
}

/// Serves one admin connection until it closes or `life` ends.
pub async fn serve(tcp: TcpStream, admin: Arc<Admin>, life: Drain) {
    let _guard = life.track();
    let server = admin.shared.state().config.server.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let admin = admin.clone();
        async move { Ok::<_, Infallible>(answer(&admin, &req).await) }
    });
    crate::server::serve_plain(tcp, &server, svc, life.subscribe()).await;
}

async fn answer(admin: &Admin, req: &Request<Incoming>) -> Response<ProxyBody> {
    let path = req.uri().path();
    if let "/healthz" | "/readyz" | "/metrics" = path {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return refused(Refused::Method("GET, HEAD"));
        }
        return open(admin, path).await;
    }
    let Some(token) = &admin.token else {
        return plain(StatusCode::NOT_FOUND, "Not Found");
    };
    if !token.authorizes(req.headers()) {
        tracing::debug!("admin API: missing or wrong bearer token");
        let mut resp = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    match route::parse(req.method(), path, req.uri().query()) {
        Ok(call) => authorized(admin, call).await,
        Err(why) => refused(why),
    }
}

async fn open(admin: &Admin, path: &str) -> Response<ProxyBody> {
    match path {
        "/healthz" => plain(StatusCode::OK, "ok"),
        // Certificates: a `State` exists only with its certificates loaded.
        "/readyz" if admin.proxy.draining() => {
            plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
        }
        "/readyz" => match admin.shared.sessions.store.count().await {
            Ok(_) => plain(StatusCode::OK, "ready"),
            Err(_) => plain(StatusCode::SERVICE_UNAVAILABLE, "store unreachable"),
        },
        _ => {
            let mut resp = Response::new(ProxyBody::text(crate::metrics::render()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
    }
}

async fn authorized(admin: &Admin, call: Call) -> Response<ProxyBody> {
    let state = admin.shared.state();
    let (sessions, cfg) = (&admin.shared.sessions, &state.config.session);
    match call {
        Call::List { user } => sessions::list(sessions, &user, cfg).await,
        Call::Revoke { handle } => sessions::revoke(sessions, &handle, cfg).await,
        Call::RevokeUser { user } => sessions::revoke_user(sessions, &user, cfg).await,
        Call::Reload => reload(&admin.shared).await,
    }
}

/// `POST /reload`: 200 `{"restart_required": [keys]}` (the changed keys
/// that wait for a restart), or 422 `{"errors": [{file, line, key,
/// message}]}` with the running config kept.
async fn reload(shared: &Arc<Shared>) -> Response<ProxyBody> {
    tracing::info!("reload requested on the admin API");
    let shared = shared.clone();
    match tokio::task::spawn_blocking(move || shared.reload()).await {
        Ok(Ok(kept)) => json(
            StatusCode::OK,
            serde_json::json!({ "restart_required": kept }).to_string(),
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reload rejected; the running configuration is kept");
            json(
                StatusCode::UNPROCESSABLE_ENTITY,
                serde_json::json!({ "errors": e.errors() }).to_string(),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "reload failed; the running configuration is kept");
            error(StatusCode::INTERNAL_SERVER_ERROR, "reload failed")
        }
    }
}

fn refused(why: Refused) -> Response<ProxyBody> {
    match why {
        Refused::NotFound => error(StatusCode::NOT_FOUND, "not found"),
        Refused::BadRequest(msg) => error(StatusCode::BAD_REQUEST, msg),
        Refused::TooLong => error(StatusCode::URI_TOO_LONG, "request target too long"),
        Refused::Method(allow) => {
            let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            resp
        }
    }
}

/// `cloakroom healthcheck`: true when `/readyz` on `addr` answers 200.
pub async fn healthcheck(addr: SocketAddr) -> bool {
    let probe = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let req = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), probe).await,
        Ok(Some(true))
    )
}
