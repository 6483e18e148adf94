//! Builds the upstream request: hop-by-hop headers out, `X-Forwarded-*` and
//! `Host` in, the normalised path and the query as the target, HTTP/1.1.

use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
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
    /// Rewrites the client's request into the upstream request, in place
    /// (a request is a few hundred bytes: every move is a copy).
    pub fn build(&self, req: &mut Request<Incoming>) -> Result<(), ProxyError> {
        let h = req.headers_mut();
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
        *req.uri_mut() = self.upstream_uri()?;
        *req.version_mut() = Version::HTTP_11;
        Ok(())
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
    host_and_port(value.as_bytes()).then_some(value)
}

/// The bytes of an RFC 3986 reg-name: unreserved, sub-delims and `%`.
static REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric();
        c += 1;
    }
    let extra = b"-._~!$&'()*+,;=%";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
};

/// RFC 3986 `host [ ":" port ]`: a non-empty reg-name (unreserved,
/// sub-delims and `%`) or a bracketed IPv6 literal, then an optional port of
/// at most 65535 (an empty port is allowed, as RFC 3986 does). No userinfo.
/// Checked byte by byte, without building an `Authority`.
fn host_and_port(b: &[u8]) -> bool {
    let (host_ok, rest) = if b.first() == Some(&b'[') {
        match memchr::memchr(b']', b) {
            Some(end) => (
                end > 1
                    && b[1..end]
                        .iter()
                        .all(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.')),
                &b[end + 1..],
            ),
            None => return false,
        }
    } else {
        let end = memchr::memchr(b':', b).unwrap_or(b.len());
        let reg_name = |c: &u8| REG_NAME[usize::from(*c)];
        (end > 0 && b[..end].iter().all(reg_name), &b[end..])
    };
    let port_ok = match rest {
        [] | [b':'] => true,
        [b':', digits @ ..] => {
            digits.len() <= 5
                && digits.iter().all(u8::is_ascii_digit)
                && digits
                    .iter()
                    .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
                    <= 65535
        }
        _ => false,
    };
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::host_and_port;

    #[test]
    fn host_and_port_follows_rfc_3986() {
        for good in [
            "localhost",
            "app.example.com",
            "app.example.com:8443",
            "127.0.0.1:443",
            "[::1]",
            "[::1]:8443",
            "[2001:db8::1]:",
            "host:",
            "a_b-c~d%41",
            "host:65535",
        ] {
            assert!(host_and_port(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            ":80",
            "user@host",
            "host:port",
            "host:65536",
            "host:123456",
            "host:80:80",
            "[::1",
            "[]",
            "[::1]x",
            "[::1]:x",
            "exa mple",
            "host/path",
            "host?",
            "h\u{e9}te",
        ] {
            assert!(!host_and_port(bad.as_bytes()), "{bad}");
        }
    }
}
