//! Request errors and the one place that turns them into client responses:
//! a status, a short body, no internals; logged once here.

use http::{header, HeaderValue, Response, StatusCode};

use super::body::ProxyBody;
use super::{json, plain};
use crate::session::StoreError;
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
    /// The session store failed (503, the cookie kept: SPEC §4.3) or is at
    /// `max_sessions` with nothing to evict (503, SPEC §7.3).
    #[error(transparent)]
    Store(#[from] StoreError),
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
            ProxyError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The client's response. Logs upstream failures (the only errors an
    /// operator acts on) with their cause; client mistakes and store
    /// outages (logged once by the store) at debug.
    pub fn respond(&self, route: Option<&str>) -> Response<ProxyBody> {
        let status = self.status();
        match self {
            ProxyError::Upstream(e) => {
                tracing::warn!(route, error = %e, cause = ?std::error::Error::source(e), "upstream request failed")
            }
            ProxyError::Store(e @ StoreError::Full) => {
                tracing::warn!(route, error = %e, "session refused")
            }
            // The store logs an outage once, when it begins and when it
            // ends (`store::outage`); the requests meeting it are counted.
            ProxyError::Store(e) => {
                tracing::debug!(route, error = %e, cause = ?std::error::Error::source(e), "session store error")
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
            ProxyError::Store(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s4_3_store_error_is_503_and_keeps_the_cookie() {
        let e = ProxyError::from(StoreError::unavailable("load", "connection refused"));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        let resp = e.respond(None);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        // The error response itself never clears the session cookie; only a
        // lookup that found no live session does.
        assert!(!resp.headers().contains_key(header::SET_COOKIE));
        assert_eq!(
            ProxyError::from(StoreError::Full).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
