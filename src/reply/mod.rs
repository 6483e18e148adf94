//! What every listener answers with: the response body type ([`body`]),
//! the request error and the one place it becomes a response ([`error`]),
//! the proxy's own HTML pages ([`pages`]), and the small responses the
//! proxy makes itself.

pub mod body;
pub mod error;
pub mod pages;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

pub use body::ProxyBody;
pub use error::ProxyError;

/// A JSON response made by the proxy itself.
pub fn json(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<ProxyBody> {
    own(status, "application/json", body.into())
}

/// A short plain-text response made by the proxy itself.
pub fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut body = String::with_capacity(text.len() + 1);
    body.push_str(text);
    body.push('\n');
    own(status, "text/plain; charset=utf-8", body.into())
}

/// An HTML page of the proxy's own, with the headers SPEC §9.5a asks of
/// them: never framed, cached, sniffed or sent on as a referrer.
pub fn html(status: StatusCode, page: &'static str) -> Response<ProxyBody> {
    html_page(
        status,
        bytes::Bytes::from_static(page.as_bytes()),
        HeaderValue::from_static("frame-ancestors 'none'"),
    )
}

/// [`html`] for a page made per request, with its own
/// `Content-Security-Policy` (which must keep `frame-ancestors 'none'`).
pub fn html_page(
    status: StatusCode,
    page: impl Into<bytes::Bytes>,
    csp: HeaderValue,
) -> Response<ProxyBody> {
    let mut resp = own(status, "text/html; charset=utf-8", page.into());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// A body of the proxy's own: never cached, never sniffed.
fn own(status: StatusCode, content_type: &'static str, body: bytes::Bytes) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// A redirect made by the proxy itself; never cached.
pub fn redirect(status: StatusCode, location: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `204 No Content`.
pub fn no_content() -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}
