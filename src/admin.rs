//! The admin listener (`server.admin_listen`, SPEC §10): `GET /healthz`
//! (alive), `GET /readyz` (store reachable, certificates loaded) and
//! `GET /metrics` (Prometheus text) are open. Session listing, revocation
//! and `POST /reload` are not built yet; every other path answers 404.

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

use crate::reply::{plain, ProxyBody};
use crate::server::Drain;
use crate::state::Shared;
use crate::store::SessionStore;

pub async fn serve(tcp: TcpStream, shared: Arc<Shared>, drain: Drain) {
    let _guard = drain.track();
    let server = shared.state().config.server.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(answer(&shared, &req).await) }
    });
    crate::server::serve_plain(tcp, &server, svc, drain.subscribe()).await;
}

async fn answer(shared: &Shared, req: &Request<Incoming>) -> Response<ProxyBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::NOT_FOUND, "Not Found");
    }
    match req.uri().path() {
        "/healthz" => plain(StatusCode::OK, "ok"),
        "/readyz" => match shared.sessions.store.count().await {
            Ok(_) => plain(StatusCode::OK, "ready"),
            Err(_) => plain(StatusCode::SERVICE_UNAVAILABLE, "store unreachable"),
        },
        "/metrics" => {
            let mut resp = Response::new(ProxyBody::text(crate::metrics::render()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        _ => plain(StatusCode::NOT_FOUND, "Not Found"),
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
