//! The plain-HTTP listener (`server.redirect_http`): every request gets 308 to
//! the same host, path and query over https, on the HTTPS listen port (left
//! out when it is 443).

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpStream;

use super::Drain;
use crate::reply::{plain, ProxyBody};
use crate::state::Shared;
use crate::wire::host::{client_host, strip_port, SeenHost};

pub(super) async fn serve(tcp: TcpStream, shared: Arc<Shared>, drain: Drain) {
    let _guard = drain.track();
    let server = shared.state().config.server.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(redirect(&shared, &req)) }
    });
    super::conn::serve_plain(tcp, &server, svc, drain.subscribe()).await;
}

fn redirect(shared: &Shared, req: &Request<Incoming>) -> Response<ProxyBody> {
    let port = shared.https_port();
    // Validated like the HTTPS side: the Location must not carry a foreign host.
    // One request per connection is typical here: nothing kept between them.
    let host_value = client_host(req.uri(), req.headers(), &SeenHost::default());
    let host = host_value
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .map(strip_port);
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = host.filter(|h| !h.is_empty()).and_then(|host| {
        let loc = if port == 443 {
            format!("https://{host}{target}")
        } else {
            format!("https://{host}:{port}{target}")
        };
        HeaderValue::from_str(&loc).ok()
    });
    let mut resp = match location {
        Some(loc) => {
            let mut r = plain(StatusCode::PERMANENT_REDIRECT, "Permanent Redirect");
            r.headers_mut().insert(header::LOCATION, loc);
            r
        }
        None => plain(StatusCode::BAD_REQUEST, "Bad Request: missing Host"),
    };
    if !req.body().is_end_stream() {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
