//! The request's host (RFC 9112 §3.2, RFC 3986 §3.2.2): which one the
//! client asked for, whether it is well formed, and its name without a port.

use std::fmt;
use std::sync::Mutex;

use http::header::{self, HeaderValue};
use http::uri::Uri;

/// The host the client asked for: the URI authority (HTTP/2, absolute-form)
/// or the `Host` header. `None` (answered 400) unless it is exactly one
/// `host[:port]` (RFC 9112 §3.2): routing, `X-Forwarded-Host` and redirects
/// are built from it. An authority is looked up in `seen`, the connection's
/// last one, before it is copied.
pub fn client_host(uri: &Uri, headers: &http::HeaderMap, seen: &SeenHost) -> Option<HeaderValue> {
    let value = match uri.authority() {
        Some(a) => return seen.value(a.as_str()),
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

/// The last valid authority a connection's requests named, as a header
/// value. An HTTP/2 authority is a string inside the request's URI, so its
/// header value is a copy; the streams of a connection usually name the
/// same host, and with this they share one copy (a reference count)
/// instead of allocating one per request, and another when it is first
/// cloned for `X-Forwarded-Host` or `Host`. One value per connection; an
/// HTTP/1.1 `Host` field is shared with the request already and does not
/// use it (only an absolute-form target's authority does).
#[derive(Default)]
pub struct SeenHost(Mutex<Option<HeaderValue>>);

impl SeenHost {
    /// `authority` as a validated header value: the kept one when it is
    /// the same text, else a new one, kept for the next request.
    fn value(&self, authority: &str) -> Option<HeaderValue> {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(kept) = last
            .as_ref()
            .filter(|v| v.as_bytes() == authority.as_bytes())
        {
            return Some(kept.clone());
        }
        let value = HeaderValue::from_str(authority)
            .ok()
            .filter(|v| host_and_port(v.as_bytes()))?;
        *last = Some(value.clone());
        Some(value)
    }
}

impl fmt::Debug for SeenHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeenHost(..)")
    }
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

/// `example.com:8443` → `example.com`; `[::1]:8443` → `[::1]`.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map(|i| &host[..=i]).unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn authority(uri: &str) -> Uri {
        uri.parse().unwrap()
    }

    #[test]
    fn a_connection_shares_its_last_authority_and_checks_a_new_one() {
        let seen = SeenHost::default();
        let none = http::HeaderMap::new();
        let a = client_host(&authority("https://app.example:8443/x"), &none, &seen).unwrap();
        let b = client_host(&authority("https://app.example:8443/y"), &none, &seen).unwrap();
        assert_eq!(a, "app.example:8443");
        // The second request's value is the first one's bytes, not a copy.
        assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr());
        let c = client_host(&authority("https://other.example/"), &none, &seen).unwrap();
        assert_eq!(c, "other.example");
        // A host RFC 3986 refuses is refused whatever was kept, and the
        // kept one stays.
        assert!(client_host(&authority("https://user@other.example/"), &none, &seen).is_none());
        let d = client_host(&authority("https://other.example/z"), &none, &seen).unwrap();
        assert_eq!(c.as_bytes().as_ptr(), d.as_bytes().as_ptr());
        // Without an authority, the one `Host` field, as before.
        let mut host = http::HeaderMap::new();
        host.insert(header::HOST, HeaderValue::from_static("h1.example"));
        assert_eq!(
            client_host(&authority("/p"), &host, &seen).unwrap(),
            "h1.example"
        );
        host.append(header::HOST, HeaderValue::from_static("h2.example"));
        assert!(client_host(&authority("/p"), &host, &seen).is_none());
    }

    #[test]
    fn strip_port_keeps_ipv6_brackets() {
        assert_eq!(strip_port("a:1"), "a");
        assert_eq!(strip_port("[::1]:8443"), "[::1]");
        assert_eq!(strip_port("a"), "a");
    }
}
