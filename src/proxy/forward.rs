//! Builds the upstream request: hop-by-hop headers out, `X-Forwarded-*` and
//! `Host` in, the normalised path and the query as the target, HTTP/1.1.

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Uri};
use http::{Request, Version};
use hyper::body::Incoming;

use super::headers;
use super::{ConnInfo, ProxyError, Target};
use crate::config::Route;

pub struct Forward<'a> {
    pub route: &'a Route,
    pub target: &'a Target<'a>,
    pub conn: &'a ConnInfo,
    /// The validated host the client asked for ([`client_host`]).
    pub client_host: &'a HeaderValue,
    pub trusted_peer: bool,
    pub websocket: bool,
}

impl Forward<'_> {
    pub fn build(&self, req: Request<Incoming>) -> Result<Request<Incoming>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        let h = &mut parts.headers;
        headers::strip_hop_by_hop(h);
        // hyper re-derives framing from the body it decoded; a client's own
        // Content-Length must not travel next to a different framing.
        h.remove(header::CONTENT_LENGTH);
        headers::join_cookie_fields(h);
        headers::set_forwarded(
            h,
            &self.conn.peer_header,
            self.trusted_peer,
            Some(self.client_host),
        );
        let host = match self.route.preserve_host {
            true => self.client_host.clone(),
            false => self.route.upstream_host.clone(),
        };
        h.insert(header::HOST, host);
        if self.websocket {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        parts.uri = self.upstream_uri()?;
        parts.version = Version::HTTP_11;
        Ok(Request::from_parts(parts, body))
    }

    /// Origin-form (`/path?query`): the request goes to the upstream
    /// connection as written here, and `Host` carries the authority.
    fn upstream_uri(&self) -> Result<Uri, ProxyError> {
        let pq = match self.target.query {
            Some(q) => PathAndQuery::try_from(format!("{}?{}", self.target.path, q)),
            None => PathAndQuery::try_from(self.target.path.as_ref()),
        }
        .map_err(|_| ProxyError::BadRequest("invalid request target"))?;
        Ok(Uri::from(pq))
    }
}

/// The host the client asked for: the URI authority (HTTP/2, absolute-form)
/// or the `Host` header. `None` (answered 400) unless it is exactly one
/// `host[:port]` (RFC 9112 §3.2): routing, `X-Forwarded-Host` and redirects
/// are built from it.
pub fn client_host(uri: &Uri, headers: &http::HeaderMap) -> Option<HeaderValue> {
    let value = match uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok()?,
        None => {
            let mut fields = headers.get_all(header::HOST).iter();
            let (first, more) = (fields.next()?, fields.next());
            if more.is_some() {
                return None;
            }
            first.clone()
        }
    };
    let authority: Authority = value.to_str().ok()?.parse().ok()?;
    let text = authority.as_str();
    let port = text[text.rfind(']').unwrap_or(0)..]
        .split_once(':')
        .map(|(_, p)| p);
    let port_ok = !matches!(port, Some(p) if !p.is_empty() && p.parse::<u16>().is_err());
    (!text.contains('@') && port_ok).then_some(value)
}
