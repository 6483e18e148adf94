//! Request errors and the one place that turns them into client responses:
//! a status, a short body, no internals; logged once here.

use http::{header, HeaderValue, Response, StatusCode};

use super::body::ProxyBody;
use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("not found")]
    NotFound,
    #[error("no route for this host and path")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("upgrade refused: only websocket is proxied")]
    UpgradeRefused,
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("upstream switched protocols without being asked to")]
    UnexpectedUpgrade,
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("login required")]
    LoginRequired(HeaderValue),
    #[error("authentication required")]
    Unauthenticated,
    #[error("cross-site request refused")]
    CsrfRejected,
    #[error("session store unavailable")]
    StoreUnavailable,
    #[error("session capacity reached")]
    SessionsFull,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::UpgradeRefused => StatusCode::BAD_REQUEST,
            ProxyError::NotFound | ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::Upstream(e) if e.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream(_) | ProxyError::UnexpectedUpgrade => StatusCode::BAD_GATEWAY,
            ProxyError::LoginRequired(_) => StatusCode::FOUND,
            ProxyError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ProxyError::CsrfRejected => StatusCode::FORBIDDEN,
            ProxyError::StoreUnavailable | ProxyError::SessionsFull => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The client's response. Logs upstream failures (the only errors an
    /// operator acts on) with their cause; client mistakes at debug.
    pub fn respond(&self, route: Option<&str>) -> Response<ProxyBody> {
        let status = self.status();
        match self {
            ProxyError::Upstream(e) => {
                tracing::warn!(route, error = %e, cause = ?std::error::Error::source(e), "upstream request failed")
            }
            other => tracing::debug!(route, error = %other, "request refused"),
        }
        let mut resp = match self {
            ProxyError::Unauthenticated => json(
                status,
                r#"{"error":"authentication required","login":"/.cloakroom/login"}"#,
            ),
            _ => plain(status, status.canonical_reason().unwrap_or("error")),
        };
        let h = resp.headers_mut();
        match self {
            ProxyError::MethodNotAllowed => {
                h.insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
                );
            }
            ProxyError::LoginRequired(location) => {
                h.insert(header::LOCATION, location.clone());
            }
            ProxyError::StoreUnavailable | ProxyError::SessionsFull => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

/// A JSON response made by the proxy itself.
pub fn json(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// A short plain-text response made by the proxy itself.
pub fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut body = String::with_capacity(text.len() + 1);
    body.push_str(text);
    body.push('\n');
    let mut resp = Response::new(ProxyBody::text(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}
