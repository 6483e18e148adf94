//! Origins and absolute URLs between the client's origin and the one the
//! upstream sees for itself (RFC 6454 origins; RFC 3986 §3 for the URL
//! parts, §6.2.2.1 and §6.2.3 for comparing them):
//!
//! - [`rewrite_locations`] (SPEC §9.7): a response's `Location` and
//!   `Content-Location` naming the upstream's address (over `http:`, or over
//!   `https:` when the app believes it is served over https, as apps that
//!   read `X-Forwarded-Proto` do), or the client's host over `http:`, are
//!   pointed back at `https://` + the client's host;
//! - [`translate_request`] (SPEC §9.6a): a request's same-origin `Origin`
//!   and `Referer` are sent as the origin the upstream sees for itself.
//!
//! Anything else — relative references, other hosts, userinfo, values that
//! do not parse — passes unchanged. A header is replaced only when its value
//! changes; nothing is allocated otherwise.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};

use super::headers::replace_each;

const HTTP: &[u8] = b"http://";
const HTTPS: &[u8] = b"https://";

/// A route's upstream address, made once at config load: what a URL must
/// name to be the upstream's, and the origin the upstream sees for itself.
#[derive(Debug, Clone)]
pub struct UpstreamOrigin {
    /// `http://` + the authority as configured (the `Host` it is sent).
    origin: HeaderValue,
    host: Box<str>,
    port: u16,
    /// The configured authority names its port.
    explicit_port: bool,
}

impl UpstreamOrigin {
    /// From an `http` upstream's `host[:port]`; `None` when it is not one
    /// (userinfo, empty host, bad port).
    pub fn new(authority: &str) -> Option<UpstreamOrigin> {
        let (host, port) = host_port(authority.as_bytes())?;
        let origin = HeaderValue::from_maybe_shared(join(HTTP, authority.as_bytes(), b"")).ok()?;
        Some(UpstreamOrigin {
            origin,
            host: String::from_utf8_lossy(host).into(),
            port: port.unwrap_or(80),
            explicit_port: port.is_some(),
        })
    }

    /// `http://host[:port]`: the `Origin` the upstream sees for itself when
    /// it is sent its own address as `Host`.
    pub fn origin(&self) -> &HeaderValue {
        &self.origin
    }

    /// Whether an `http` URL's authority is this upstream: the host
    /// compared ASCII case-insensitively, the port as a number, 80 when
    /// omitted or empty (RFC 3986 §6.2.2.1, §6.2.3).
    fn is(&self, authority: &[u8]) -> bool {
        http_host_port(authority)
            .is_some_and(|(h, p)| p == self.port && h.eq_ignore_ascii_case(self.host.as_bytes()))
    }

    /// Whether an `https` URL's authority is this upstream's: an app told
    /// it is served over https (`X-Forwarded-Proto`) builds such URLs from
    /// the `Host` it was sent, so the authority is the configured one — the
    /// same host, and the same port or, where the URL omits it, one the
    /// configuration also omitted (or 443, https' default).
    fn is_https(&self, authority: &[u8]) -> bool {
        host_port(authority).is_some_and(|(h, p)| {
            h.eq_ignore_ascii_case(self.host.as_bytes())
                && match p {
                    Some(p) => p == self.port,
                    None => !self.explicit_port || self.port == 443,
                }
        })
    }
}

/// SPEC §9.7 on a response's headers: each `Location` and
/// `Content-Location` value [`rewrite_location`] changes is replaced.
pub fn rewrite_locations(h: &mut HeaderMap, upstream: &UpstreamOrigin, own_host: &str) {
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        replace_each(h, &name, |v| {
            rewrite_location(v.as_bytes(), upstream, own_host)
        });
    }
}

/// SPEC §9.7: `Some(https://<own_host><rest>)` when `value` is an absolute
/// `http:` URL whose authority is the upstream or `own_host` (the client's
/// host as it sent it), or a scheme-relative `//authority…` naming the
/// upstream; path, query and fragment are kept byte for byte. `None` (pass
/// unchanged) for everything else.
pub fn rewrite_location(
    value: &[u8],
    upstream: &UpstreamOrigin,
    own_host: &str,
) -> Option<HeaderValue> {
    if let Some(after) = strip_prefix_ci(value, HTTPS) {
        let (authority, rest) = split_authority(after);
        return upstream
            .is_https(authority)
            .then(|| HeaderValue::from_maybe_shared(join(HTTPS, own_host.as_bytes(), rest)).ok())
            .flatten();
    }
    let (after, scheme_relative) = match strip_prefix_ci(value, HTTP) {
        Some(after) => (after, false),
        // A scheme-relative reference inherits the base's scheme: for the
        // app that is http, for the browser https, so only the upstream's
        // authority is wrong in it. `//own-host/…` already resolves right.
        None => (value.strip_prefix(b"//")?, true),
    };
    let (authority, rest) = split_authority(after);
    let ours = upstream.is(authority)
        || (!scheme_relative && same_http_authority(authority, own_host.as_bytes()));
    if !ours {
        return None;
    }
    HeaderValue::from_maybe_shared(join(HTTPS, own_host.as_bytes(), rest)).ok()
}

/// SPEC §8.4a: the path a response's `Location` sends the browser to on
/// this origin, resolved against `request_path` (RFC 3986 §5.2) and
/// normalised as request paths are; query and fragment dropped. An
/// absolute URL counts when §9.7 would point it back here (it names the
/// upstream, or the client's host over `http:`) or it already names
/// `https://` + the client's host. `None` for anything that leaves this
/// origin or does not parse.
pub fn location_path(
    value: &[u8],
    request_path: &str,
    upstream: &UpstreamOrigin,
    own_host: &str,
) -> Option<String> {
    let value = value.trim_ascii();
    let rewritten = rewrite_location(value, upstream, own_host);
    let (rest, absolute): (&[u8], bool) = if let Some(r) = rewritten.as_ref() {
        (r.as_bytes().get(HTTPS.len() + own_host.len()..)?, true)
    } else if let Some(after) = strip_prefix_ci(value, HTTPS).or(value.strip_prefix(b"//")) {
        let (authority, rest) = split_authority(after);
        if !authority.eq_ignore_ascii_case(own_host.as_bytes()) {
            return None;
        }
        (rest, true)
    } else if has_scheme(value) {
        return None;
    } else {
        (value, false)
    };
    let end = memchr::memchr2(b'?', b'#', rest).unwrap_or(rest.len());
    let path = std::str::from_utf8(&rest[..end]).ok()?;
    let joined = match path {
        "" if absolute => "/".to_string(),
        "" => request_path.to_string(),
        p if p.starts_with('/') => p.to_string(),
        // RFC 3986 §5.2.3: merge with the base path's directory.
        p => {
            let dir = request_path.rfind('/').map_or("/", |i| &request_path[..=i]);
            format!("{dir}{p}")
        }
    };
    super::path::normalise(&joined).map(std::borrow::Cow::into_owned)
}

/// Whether a URI reference starts with a scheme (RFC 3986 §3.1: a letter,
/// then letters, digits, `+`, `-` or `.`, then `:` before any `/`, `?`
/// or `#`).
fn has_scheme(value: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', value) else {
        return false;
    };
    let scheme = &value[..colon];
    scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// SPEC §9.6a on an upstream request's headers: a same-origin `Origin` or
/// `Referer` is sent as the upstream's own. `upstream_origin` is
/// `http://` + the `Host` the upstream is sent, made at load; `None` when
/// that host is the client's own (`preserve_host`), so the origin is
/// `http://` + `own_host`.
pub fn translate_request(h: &mut HeaderMap, own_host: &str, upstream_origin: Option<&HeaderValue>) {
    replace_each(h, &header::ORIGIN, |v| {
        translate_origin(v.as_bytes(), own_host, upstream_origin)
    });
    replace_each(h, &header::REFERER, |v| {
        translate_referer(v.as_bytes(), own_host, upstream_origin)
    });
}

/// Whether an `Origin` value is the request's own origin, `https://` +
/// `own_host`, ASCII case-insensitively: the comparison the CSRF check
/// makes (SPEC §9.6), so exactly the origins it admits as its own are
/// translated. An RFC 6454 origin has no path, so `https://host/` is not.
pub fn is_own_origin(value: &[u8], own_host: &str) -> bool {
    value.len() == HTTPS.len() + own_host.len()
        && value[..HTTPS.len()].eq_ignore_ascii_case(HTTPS)
        && value[HTTPS.len()..].eq_ignore_ascii_case(own_host.as_bytes())
}

/// SPEC §9.6a for `Origin`: the upstream's own origin when `value` is the
/// request's own; else `None` (sent unchanged: foreign, `null`, `http:`).
pub fn translate_origin(
    value: &[u8],
    own_host: &str,
    upstream_origin: Option<&HeaderValue>,
) -> Option<HeaderValue> {
    if !is_own_origin(value.trim_ascii(), own_host) {
        return None;
    }
    match upstream_origin {
        Some(o) => Some(o.clone()),
        None => HeaderValue::from_maybe_shared(join(HTTP, own_host.as_bytes(), b"")).ok(),
    }
}

/// SPEC §9.6a for `Referer`: when its scheme and authority are the
/// request's own origin, the upstream's own origin followed by the rest
/// (path and query) unchanged; else `None`.
pub fn translate_referer(
    value: &[u8],
    own_host: &str,
    upstream_origin: Option<&HeaderValue>,
) -> Option<HeaderValue> {
    let (authority, rest) = split_authority(strip_prefix_ci(value, HTTPS)?);
    if !authority.eq_ignore_ascii_case(own_host.as_bytes()) {
        return None;
    }
    let joined = match upstream_origin {
        Some(o) => join(o.as_bytes(), b"", rest),
        None => join(HTTP, own_host.as_bytes(), rest),
    };
    HeaderValue::from_maybe_shared(joined).ok()
}

/// An `http` authority as `(host, port)` for comparison: `None` with
/// userinfo (a URL carrying one never names a host we compare against), an
/// empty host or a port that is not a number up to 65535. The port is 80
/// when omitted or empty (RFC 3986 §6.2.3); an IPv6 literal keeps its
/// brackets and is compared as text.
fn http_host_port(authority: &[u8]) -> Option<(&[u8], u16)> {
    host_port(authority).map(|(h, p)| (h, p.unwrap_or(80)))
}

/// An authority as `(host, port)`, the port `None` when omitted or empty;
/// `None` on the same grounds as [`http_host_port`].
fn host_port(authority: &[u8]) -> Option<(&[u8], Option<u16>)> {
    if authority.contains(&b'@') {
        return None;
    }
    let host_end = match authority.first() {
        Some(b'[') => memchr::memchr(b']', authority)? + 1,
        _ => memchr::memchr(b':', authority).unwrap_or(authority.len()),
    };
    let (host, rest) = authority.split_at(host_end);
    let port = match rest {
        [] | [b':'] => None,
        [b':', digits @ ..] if digits.iter().all(u8::is_ascii_digit) => {
            Some(digits.iter().try_fold(0u16, |n, d| {
                n.checked_mul(10)?.checked_add(u16::from(d - b'0'))
            })?)
        }
        _ => return None,
    };
    (!host.is_empty()).then_some((host, port))
}

/// Two `http` authorities naming the same host and port.
fn same_http_authority(a: &[u8], b: &[u8]) -> bool {
    match (http_host_port(a), http_host_port(b)) {
        (Some((ha, pa)), Some((hb, pb))) => pa == pb && ha.eq_ignore_ascii_case(hb),
        _ => false,
    }
}

/// After `scheme://`: the authority, up to the first `/`, `?` or `#`
/// (RFC 3986 §3.2), and the rest (path, query, fragment).
fn split_authority(after: &[u8]) -> (&[u8], &[u8]) {
    let end = after
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(after.len());
    after.split_at(end)
}

/// `value` without `prefix`, matched ASCII case-insensitively (a scheme is
/// case-insensitive, RFC 3986 §3.1).
fn strip_prefix_ci<'v>(value: &'v [u8], prefix: &[u8]) -> Option<&'v [u8]> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// `a + b + c` in one allocation.
fn join(a: &[u8], b: &[u8], c: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(a.len() + b.len() + c.len());
    out.put_slice(a);
    out.put_slice(b);
    out.put_slice(c);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "app.test:8443";

    #[test]
    fn s8_4a_location_paths_on_this_origin() {
        let u = up("127.0.0.1:5000");
        let path = |v: &str| location_path(v.as_bytes(), "/auth/login", &u, OWN);
        assert_eq!(path("/dashboard").as_deref(), Some("/dashboard"));
        assert_eq!(path("/dashboard?x=1#y").as_deref(), Some("/dashboard"));
        assert_eq!(path("home").as_deref(), Some("/auth/home"));
        assert_eq!(path("../dashboard").as_deref(), Some("/dashboard"));
        assert_eq!(path("/dashboard/../login").as_deref(), Some("/login"));
        assert_eq!(path("?error=1").as_deref(), Some("/auth/login"));
        assert_eq!(
            path("http://127.0.0.1:5000/dashboard").as_deref(),
            Some("/dashboard")
        );
        assert_eq!(
            path("HTTP://app.test:8443/dashboard/x").as_deref(),
            Some("/dashboard/x")
        );
        assert_eq!(
            path("https://APP.test:8443/dashboard").as_deref(),
            Some("/dashboard")
        );
        assert_eq!(path("//app.test:8443/d").as_deref(), Some("/d"));
        assert_eq!(path("https://app.test:8443").as_deref(), Some("/"));
        for away in [
            "https://evil.test/dashboard",
            "http://evil.test/dashboard",
            "//evil.test/dashboard",
            "https://app.test:9999/dashboard",
            "javascript:alert(1)",
            "mailto:x@y",
            "/a b",
        ] {
            assert_eq!(path(away), None, "{away}");
        }
    }

    fn up(authority: &str) -> UpstreamOrigin {
        UpstreamOrigin::new(authority).unwrap()
    }

    fn location(value: &str, upstream: &str) -> Option<String> {
        rewrite_location(value.as_bytes(), &up(upstream), OWN)
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn s9_7_urls_naming_the_upstream_are_rewritten_keeping_path_query_fragment() {
        let u = "127.0.0.1:5000";
        for (value, want) in [
            (
                "http://127.0.0.1:5000/a/b?c=d#e",
                "https://app.test:8443/a/b?c=d#e",
            ),
            ("http://127.0.0.1:5000", "https://app.test:8443"),
            ("http://127.0.0.1:5000?q", "https://app.test:8443?q"),
            ("http://127.0.0.1:5000#f", "https://app.test:8443#f"),
            // Scheme case-insensitive (RFC 3986 §3.1); port compared as a
            // number (what browsers do with leading zeros).
            ("HTTP://127.0.0.1:5000/x", "https://app.test:8443/x"),
            ("http://127.0.0.1:05000/x", "https://app.test:8443/x"),
            // Scheme-relative, naming the upstream.
            ("//127.0.0.1:5000/x", "https://app.test:8443/x"),
        ] {
            assert_eq!(location(value, u).as_deref(), Some(want), "{value}");
        }
    }

    #[test]
    fn s9_7_hosts_compare_case_insensitively_and_default_ports_are_equal() {
        // RFC 3986 §6.2.2.1 and §6.2.3: an omitted, empty or explicit :80
        // is the same http authority.
        for (value, upstream) in [
            ("http://App.Internal/x", "app.internal"),
            ("http://app.internal:80/x", "APP.internal"),
            ("http://app.internal/x", "app.internal:80"),
            ("http://app.internal:/x", "app.internal"),
            ("//app.internal:80/x", "app.internal"),
        ] {
            assert_eq!(
                location(value, upstream).as_deref(),
                Some("https://app.test:8443/x"),
                "{value} vs {upstream}"
            );
        }
        assert_eq!(location("http://app.internal:8080/x", "app.internal"), None);
        assert_eq!(location("http://app.internal/x", "app.internal:8080"), None);
    }

    #[test]
    fn s9_7_ipv6_literals() {
        let u = "[::1]:5000";
        assert_eq!(
            location("http://[::1]:5000/x", u).as_deref(),
            Some("https://app.test:8443/x")
        );
        assert_eq!(
            location("http://[::A]:5000/x", "[::a]:5000").as_deref(),
            Some("https://app.test:8443/x")
        );
        assert_eq!(location("http://[::1]/x", u), None);
        assert_eq!(location("http://[::2]:5000/x", u), None);
        assert_eq!(location("http://[::1:5000/x", u), None);
        let own = rewrite_location(b"http://[::1]:8443/x", &up("h:1"), "[::1]:8443");
        assert_eq!(own.unwrap(), "https://[::1]:8443/x");
    }

    #[test]
    fn s9_7_http_urls_naming_the_clients_host_are_rewritten() {
        let u = "127.0.0.1:5000";
        for value in ["http://app.test:8443/x", "http://APP.TEST:8443/x"] {
            assert_eq!(
                location(value, u).as_deref(),
                Some("https://app.test:8443/x"),
                "{value}"
            );
        }
        // The host as the client sent it: with its port, or without one
        // (an http URL without a port is port 80).
        assert_eq!(location("http://app.test/x", u), None);
        let bare = |v: &str| rewrite_location(v.as_bytes(), &up(u), "app.test");
        assert_eq!(bare("http://app.test/x").unwrap(), "https://app.test/x");
        assert_eq!(bare("http://app.test:80/x").unwrap(), "https://app.test/x");
        assert_eq!(bare("http://app.test:8443/x"), None);
        // Already right, or resolved right by the browser.
        assert_eq!(location("https://app.test:8443/x", u), None);
        assert_eq!(location("//app.test:8443/x", u), None);
    }

    #[test]
    fn s9_7_https_urls_naming_the_upstream_are_rewritten() {
        // An app that reads `X-Forwarded-Proto: https` (Trac) builds its
        // absolute URLs as https + the `Host` it was sent.
        for (value, upstream) in [
            ("https://127.0.0.1:5000/login", "127.0.0.1:5000"),
            ("HTTPS://App.Internal:5000/login", "app.internal:5000"),
            ("https://app.internal/login", "app.internal"),
            ("https://app.internal:80/login", "app.internal"),
            ("https://app.internal/login", "app.internal:443"),
        ] {
            assert_eq!(
                location(value, upstream).as_deref(),
                Some("https://app.test:8443/login"),
                "{value} via {upstream}"
            );
        }
        for (value, upstream) in [
            ("https://app.internal/x", "app.internal:8080"),
            ("https://app.internal:8080/x", "app.internal"),
            ("https://user@app.internal/x", "app.internal"),
        ] {
            assert_eq!(location(value, upstream), None, "{value} via {upstream}");
        }
    }

    #[test]
    fn s9_7_relative_foreign_and_malformed_values_pass() {
        let u = "127.0.0.1:5000";
        for value in [
            "/x",
            "x",
            "?q",
            "#f",
            "",
            "//other.test/x",
            "http://other.test/x",
            "https://other.test/x",
            "https://127.0.0.1/x",
            "https://127.0.0.1:443/x",
            "https://app.test:8443/x",
            "ftp://127.0.0.1:5000/x",
            "http:127.0.0.1:5000/x",
            "http:/127.0.0.1:5000/x",
            "http://",
            "http:///x",
            "http://127.0.0.1:5001/x",
            "http://127.0.0.1:5000.evil.test/x",
            "http://127.0.0.1:99999/x",
            "http://127.0.0.1:5000x/x",
            // Userinfo never matches (RFC 3986 §3.2.1; §7.6 on its abuse).
            "http://user@127.0.0.1:5000/x",
            "http://127.0.0.1:5000@evil.test/x",
            "http://user:pw@app.test:8443/x",
        ] {
            assert_eq!(location(value, u), None, "{value:?}");
        }
    }

    #[test]
    fn s9_7_upstream_origin_is_made_once_from_the_configured_authority() {
        let u = up("Backend.Internal:8000");
        assert_eq!(u.origin(), "http://Backend.Internal:8000");
        assert!(u.is(b"backend.internal:8000"));
        assert!(UpstreamOrigin::new("user@h:1").is_none());
        assert!(UpstreamOrigin::new(":1").is_none());
        assert!(UpstreamOrigin::new("h:x").is_none());
    }

    #[test]
    fn s9_7_rewrite_locations_replaces_only_changed_values() {
        let mut h = HeaderMap::new();
        h.insert(
            header::LOCATION,
            HeaderValue::from_static("http://127.0.0.1:5000/a"),
        );
        h.append(header::CONTENT_LOCATION, HeaderValue::from_static("/b"));
        h.append(
            header::CONTENT_LOCATION,
            HeaderValue::from_static("http://127.0.0.1:5000/c"),
        );
        rewrite_locations(&mut h, &up("127.0.0.1:5000"), OWN);
        assert_eq!(h[header::LOCATION], "https://app.test:8443/a");
        let cl: Vec<_> = h.get_all(header::CONTENT_LOCATION).iter().collect();
        assert_eq!(cl, ["/b", "https://app.test:8443/c"]);
    }

    fn translated(
        f: fn(&[u8], &str, Option<&HeaderValue>) -> Option<HeaderValue>,
        value: &str,
        preserve_host: bool,
    ) -> Option<String> {
        let configured = up("127.0.0.1:5000");
        let origin = (!preserve_host).then(|| configured.origin());
        f(value.as_bytes(), OWN, origin).map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn s9_6a_own_origin_becomes_the_upstreams_own() {
        for value in [
            "https://app.test:8443",
            "HTTPS://App.Test:8443",
            " https://app.test:8443 ",
        ] {
            assert_eq!(
                translated(translate_origin, value, false).as_deref(),
                Some("http://127.0.0.1:5000"),
                "{value:?}"
            );
            assert_eq!(
                translated(translate_origin, value, true).as_deref(),
                Some("http://app.test:8443"),
                "{value:?}"
            );
        }
    }

    #[test]
    fn s9_6a_foreign_origins_are_sent_unchanged() {
        for value in [
            "https://evil.test",
            "null",
            "",
            "http://app.test:8443",
            "https://app.test",
            "https://app.test:443",
            "https://app.test:8443/",
            "https://app.test:84430",
            "https://user@app.test:8443",
            "https://app.test:8443.evil.test",
        ] {
            assert_eq!(
                translated(translate_origin, value, false),
                None,
                "{value:?}"
            );
        }
    }

    #[test]
    fn s9_6a_own_referer_keeps_path_and_query() {
        for (value, configured, preserved) in [
            (
                "https://app.test:8443/a/b?c=d",
                "http://127.0.0.1:5000/a/b?c=d",
                "http://app.test:8443/a/b?c=d",
            ),
            (
                "HTTPS://APP.test:8443/",
                "http://127.0.0.1:5000/",
                "http://app.test:8443/",
            ),
            (
                "https://app.test:8443",
                "http://127.0.0.1:5000",
                "http://app.test:8443",
            ),
            (
                "https://app.test:8443?q=1",
                "http://127.0.0.1:5000?q=1",
                "http://app.test:8443?q=1",
            ),
        ] {
            assert_eq!(
                translated(translate_referer, value, false).as_deref(),
                Some(configured)
            );
            assert_eq!(
                translated(translate_referer, value, true).as_deref(),
                Some(preserved)
            );
        }
    }

    #[test]
    fn s9_6a_foreign_referers_are_sent_unchanged() {
        for value in [
            "https://evil.test/x",
            "http://app.test:8443/x",
            "https://app.test/x",
            "https://app.test:8443.evil.test/x",
            "https://user@app.test:8443/x",
            "https://evil.test/https://app.test:8443/",
            "/relative",
            "about:blank",
            "",
        ] {
            assert_eq!(
                translated(translate_referer, value, false),
                None,
                "{value:?}"
            );
        }
    }

    #[test]
    fn s9_6a_translate_request_touches_only_origin_and_referer() {
        let configured = up("127.0.0.1:5000");
        let mut h = HeaderMap::new();
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.test:8443"),
        );
        h.insert(
            header::REFERER,
            HeaderValue::from_static("https://evil.test/x"),
        );
        h.insert(
            header::LOCATION,
            HeaderValue::from_static("https://app.test:8443/x"),
        );
        translate_request(&mut h, OWN, Some(configured.origin()));
        assert_eq!(h[header::ORIGIN], "http://127.0.0.1:5000");
        assert_eq!(h[header::REFERER], "https://evil.test/x");
        assert_eq!(h[header::LOCATION], "https://app.test:8443/x");
        let mut none = HeaderMap::new();
        translate_request(&mut none, OWN, None);
        assert!(none.is_empty());
    }
}
