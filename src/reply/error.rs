//! Request errors and the one place that turns them into client responses:
//! a status, a short body, no internals; logged once here. A browser
//! navigation that meets an upstream failure gets a small HTML page
//! ([`super::pages`]) instead of the plain text.

use http::{header, HeaderValue, Response, StatusCode};

use super::body::ProxyBody;
use super::{html, json, pages, plain};
use crate::session::limit::RetryAfter;
use crate::session::request::CommitError;
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
    /// A bounded pool (password checks) had no room in time: 503.
    #[error("busy")]
    Busy,
    /// A blocking task of the proxy's own died (a panic): 500, logged.
    #[error("a blocking task failed")]
    TaskFailed(#[source] tokio::task::JoinError),
    /// The session store failed (503, the cookie kept: SPEC §4.3) or is at
    /// `max_sessions` with nothing to evict (503, SPEC §7.3).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A login at the proxy's own endpoints was refused (an unknown or
    /// used OIDC state, an ID token that does not verify): 403.
    #[error("login refused: {0}")]
    LoginRefused(&'static str),
    /// The identity provider could not be reached or answered nonsense.
    #[error("the identity provider is unavailable")]
    IssuerUnavailable,
    /// The proxy could not do its own part (sign an identity assertion,
    /// say): 500, logged with its cause, never forwarded half-done.
    #[error("{what}")]
    Internal {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `session.max_new_sessions_per_client`: retry after this many seconds.
    #[error("too many new sessions from this client")]
    TooManyNewSessions(u64),
}

impl From<CommitError> for ProxyError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Store(e) => ProxyError::Store(e),
            CommitError::TooManyNewSessions(RetryAfter(secs)) => {
                ProxyError::TooManyNewSessions(secs)
            }
        }
    }
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::UpgradeRefused => StatusCode::BAD_REQUEST,
            ProxyError::NotFound | ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::Upstream(e) if e.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream(e) if e.is_client_body() => StatusCode::BAD_REQUEST,
            ProxyError::Upstream(_) | ProxyError::UnexpectedUpgrade => StatusCode::BAD_GATEWAY,
            ProxyError::LoginRequired(_) => StatusCode::FOUND,
            ProxyError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ProxyError::CsrfRejected | ProxyError::LoginRefused(_) => StatusCode::FORBIDDEN,
            ProxyError::IssuerUnavailable => StatusCode::BAD_GATEWAY,
            ProxyError::Store(_) | ProxyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::TaskFailed(_) | ProxyError::Internal { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ProxyError::TooManyNewSessions(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The client's response; `navigation` says the request was a browser
    /// navigation ([`crate::wire::headers::is_navigation`]). Logs upstream
    /// failures (the only errors an operator acts on) with their cause;
    /// client mistakes and store outages (logged once by the store) at
    /// debug.
    pub fn respond(&self, route: Option<&str>, navigation: bool) -> Response<ProxyBody> {
        let status = self.status();
        match self {
            ProxyError::Upstream(e) if e.is_client_body() => {
                tracing::debug!(route, error = %e, cause = ?std::error::Error::source(e), "request body failed")
            }
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
            ProxyError::TaskFailed(e) => {
                tracing::error!(route, error = %self, cause = %e, "request failed")
            }
            ProxyError::Busy => tracing::warn!(route, error = %self, "request refused"),
            ProxyError::Internal { what, source } => {
                tracing::error!(route, error = %what, cause = %source, "request failed in the proxy")
            }
            other => tracing::debug!(route, error = %other, "request refused"),
        }
        let mut resp = match self {
            ProxyError::Unauthenticated => json(
                status,
                r#"{"error":"authentication required","login":"/.cloakroom/login"}"#,
            ),
            ProxyError::Upstream(e) if navigation && !e.is_client_body() => match e.is_timeout() {
                true => html(status, pages::UPSTREAM_SLOW),
                false => html(status, pages::UPSTREAM_DOWN),
            },
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
            ProxyError::Store(_) | ProxyError::Busy => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ProxyError::TooManyNewSessions(secs) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
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
        let resp = e.respond(None, true);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        // The error response itself never clears the session cookie; only a
        // lookup that found no live session does.
        assert!(!resp.headers().contains_key(header::SET_COOKIE));
        assert_eq!(
            ProxyError::from(StoreError::Full).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    fn upstream(e: UpstreamError) -> ProxyError {
        ProxyError::Upstream(e)
    }

    #[test]
    fn s9_4_s9_5a_upstream_failure_is_a_page_for_a_navigation_only() {
        let refused = || {
            upstream(UpstreamError::Connect(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            )))
        };
        let page = refused().respond(Some("*/"), true);
        assert_eq!(page.status(), StatusCode::BAD_GATEWAY);
        let h = page.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], "frame-ancestors 'none'");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");

        let text = refused().respond(Some("*/"), false);
        assert_eq!(text.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            text.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );

        let slow = upstream(UpstreamError::ResponseTimeout(
            std::time::Duration::from_secs(1),
        ))
        .respond(None, true);
        assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            slow.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(pages::UPSTREAM_SLOW.contains("in time"));

        // Other errors keep their bodies for a navigation too.
        let nf = ProxyError::NotFound.respond(None, true);
        assert_eq!(
            nf.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
    }
}
