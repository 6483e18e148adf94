//! Header operations as small pure functions, applied in both directions:
//! hop-by-hop removal (RFC 9110 §7.6.1), list tokens, `X-Forwarded-*`,
//! replacing values in place, head size, and what a request accepts.

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
use http::Method;

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the common non-standard ones).
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers, including every header a `Connection` value
/// names (RFC 9110 §7.6.1). Call it before the proxy adds its own headers, so
/// a `Connection` token can never remove one of those.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names present says which hop-by-hop headers are
    // there; usually none is, and nothing else happens.
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // Headers a `Connection` token names, gathered first (the tokens borrow
    // the map) and removed once each: linear in what the peer sent. Tokens
    // naming a hop-by-hop header need no name of their own.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| {
            !t.is_empty()
                && !HOP_BY_HOP
                    .iter()
                    .any(|h| t.eq_ignore_ascii_case(h.as_str().as_bytes()))
        })
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// Lengths of the `HOP_BY_HOP` names, as bits: most names are ruled out by
/// their length before any comparison.
const HOP_BY_HOP_LENGTHS: u32 = 1 << 2 | 1 << 7 | 1 << 10 | 1 << 16 | 1 << 17 | 1 << 19;

/// Where `name` is in `HOP_BY_HOP`, if it is there.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    let len = name.as_str().len();
    if len >= 32 || HOP_BY_HOP_LENGTHS & (1 << len) == 0 {
        return None;
    }
    HOP_BY_HOP.iter().position(|h| h == name)
}

/// What is wrong with a message's `Content-Length` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentLengthError {
    /// A value (or a list element) that is not a plain decimal.
    Malformed,
    /// Values that disagree.
    Conflicting,
}

/// The one length every `Content-Length` field states, if any (RFC 9110
/// §8.6: a list of equal values, in one field or several, is that value).
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ContentLengthError> {
    let mut found = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            let n = parse_decimal(part).ok_or(ContentLengthError::Malformed)?;
            if found.is_some_and(|f| f != n) {
                return Err(ContentLengthError::Conflicting);
            }
            found = Some(n);
        }
    }
    Ok(found)
}

fn parse_decimal(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    b.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// True when a comma-separated header holds `token` (ASCII case-insensitive).
pub fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    has_any_token(headers, name, &[token])
}

/// True when a comma-separated header holds any of `tokens` (ASCII
/// case-insensitive), in one pass over its fields.
pub fn has_any_token(headers: &HeaderMap, name: &HeaderName, tokens: &[&str]) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            tokens.iter().any(|want| t.eq_ignore_ascii_case(want))
        })
}

/// The client a request came from: `peer`, or when `peer` is one of the
/// `trusted` proxies, the right-most `X-Forwarded-For` address that is not
/// itself trusted (the left part of the list is the client's to write, so
/// it is never believed past the first untrusted hop). An address that
/// does not parse ends the walk at the last trusted hop.
pub fn forwarded_client(
    headers: &HeaderMap,
    peer: std::net::IpAddr,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for field in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(text) = field.to_str() else {
            return client;
        };
        for hop in text.rsplit(',') {
            match hop
                .trim()
                .parse::<std::net::IpAddr>()
                .map(|ip| ip.to_canonical())
            {
                Ok(ip) if is_trusted(&ip) => client = ip,
                Ok(ip) => return ip,
                Err(_) => return client,
            }
        }
    }
    client
}

/// Sets `X-Forwarded-For/-Proto/-Host` (SPEC §9.2). From a trusted peer the
/// client's `X-Forwarded-For` is appended to and `-Proto`/`-Host` are kept
/// when present; from any other peer all three are replaced.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: &HeaderValue,
    trusted: bool,
    host: Option<&HeaderValue>,
) {
    let peer_text = peer.as_bytes();
    let prev = match trusted {
        true => headers.get(&X_FORWARDED_FOR),
        false => None,
    };
    let xff = match prev {
        Some(prev) if !prev.is_empty() => {
            let mut v = Vec::with_capacity(prev.len() + 2 + peer_text.len());
            // Several XFF fields are one list: join them in order.
            for (i, part) in headers.get_all(&X_FORWARDED_FOR).iter().enumerate() {
                if i > 0 {
                    v.extend_from_slice(b", ");
                }
                v.extend_from_slice(part.as_bytes());
            }
            v.extend_from_slice(b", ");
            v.extend_from_slice(peer_text);
            HeaderValue::from_bytes(&v).ok()
        }
        _ => None,
    };
    let xff = xff.unwrap_or_else(|| peer.clone());
    headers.insert(&X_FORWARDED_FOR, xff);
    if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(h) => headers.insert(&X_FORWARDED_HOST, h.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
}

/// Replaces each value of `name` that `f` maps to a new one, in place and
/// in order. The lookup is `get_all`/`get_mut`, not `entry` (which may grow
/// the map), until a field repeats: nothing is allocated here when no value
/// changes.
pub fn replace_each(
    headers: &mut HeaderMap,
    name: &HeaderName,
    mut f: impl FnMut(&HeaderValue) -> Option<HeaderValue>,
) {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else { return };
    if all.next().is_none() {
        if let Some(new) = f(first) {
            if let Some(v) = headers.get_mut(name) {
                *v = new;
            }
        }
        return;
    }
    if let Entry::Occupied(mut e) = headers.entry(name) {
        for v in e.iter_mut() {
            if let Some(new) = f(v) {
                *v = new;
            }
        }
    }
}

/// Total bytes of header names and values, for `max_request_header_bytes`.
pub fn size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}

/// A browser navigation: GET or HEAD accepting `text/html`.
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    (method == Method::GET || method == Method::HEAD) && accepts_html(headers)
}

/// Whether any `Accept` field names `text/html` (media types are
/// case-insensitive, RFC 9110 §8.3.1); no allocation.
pub fn accepts_html(headers: &HeaderMap) -> bool {
    const HTML: &[u8] = b"text/html";
    headers.get_all(header::ACCEPT).iter().any(|v| {
        v.as_bytes()
            .windows(HTML.len())
            .any(|w| w.eq_ignore_ascii_case(HTML))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn forwarded_client_trusts_only_trusted_hops() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let with = |xff: &[&str]| {
            let mut h = HeaderMap::new();
            for v in xff {
                h.append(&X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        // An untrusted peer: its header is ignored.
        let h = with(&["203.0.113.9"]);
        assert_eq!(
            forwarded_client(&h, ip("198.51.100.1"), &trusted),
            ip("198.51.100.1")
        );
        // Through a trusted proxy: the right-most untrusted address.
        let h = with(&["1.2.3.4, 203.0.113.9, 10.0.0.2"]);
        assert_eq!(
            forwarded_client(&h, ip("10.0.0.1"), &trusted),
            ip("203.0.113.9")
        );
        // Split over two fields, read as one list.
        let h = with(&["1.2.3.4", "203.0.113.7"]);
        assert_eq!(
            forwarded_client(&h, ip("10.0.0.1"), &trusted),
            ip("203.0.113.7")
        );
        // Garbage stops the walk at the last trusted hop; no header: the peer.
        let h = with(&["1.2.3.4, bogus, 10.0.0.3"]);
        assert_eq!(
            forwarded_client(&h, ip("10.0.0.1"), &trusted),
            ip("10.0.0.3")
        );
        assert_eq!(
            forwarded_client(&HeaderMap::new(), ip("10.0.0.1"), &trusted),
            ip("10.0.0.1")
        );
    }

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn navigation_is_get_or_head_accepting_html_in_any_case() {
        let browser = map(&[("accept", "Text/HTML,application/xhtml+xml;q=0.9")]);
        let api = map(&[("accept", "application/json")]);
        assert!(is_navigation(&Method::GET, &browser));
        assert!(is_navigation(&Method::HEAD, &browser));
        assert!(!is_navigation(&Method::POST, &browser));
        assert!(!is_navigation(&Method::GET, &api));
        assert!(!is_navigation(&Method::GET, &HeaderMap::new()));
        let split = map(&[("accept", "application/json"), ("accept", "text/html")]);
        assert!(accepts_html(&split));
    }

    #[test]
    fn replace_each_changes_only_what_f_maps() {
        let upper = |v: &HeaderValue| {
            (v.as_bytes() != b"keep")
                .then(|| HeaderValue::from_str(&v.to_str().unwrap().to_uppercase()).unwrap())
        };
        let mut h = map(&[
            ("x-a", "one"),
            ("x-b", "keep"),
            ("x-b", "two"),
            ("x-b", "keep"),
        ]);
        replace_each(&mut h, &HeaderName::from_static("x-a"), upper);
        replace_each(&mut h, &HeaderName::from_static("x-b"), upper);
        replace_each(&mut h, &HeaderName::from_static("x-absent"), upper);
        assert_eq!(h["x-a"], "ONE");
        let b: Vec<_> = h.get_all("x-b").iter().collect();
        assert_eq!(b, ["keep", "TWO", "keep"]);
        assert_eq!(h.len(), 4);
    }

    #[test]
    fn hop_by_hop_length_filter_covers_every_name() {
        for name in &HOP_BY_HOP {
            assert_ne!(HOP_BY_HOP_LENGTHS & (1 << name.as_str().len()), 0, "{name}");
        }
    }

    #[test]
    fn every_header_many_connection_tokens_name_goes() {
        // A peer's whole header block spent on `Connection` tokens and the
        // headers they name: all of them go (each is looked up once).
        let mut h = HeaderMap::new();
        let tokens: Vec<String> = (0..2000).map(|i| format!("x-{i}")).collect();
        for t in &tokens {
            h.append(
                HeaderName::from_bytes(t.as_bytes()).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        h.append(
            header::CONNECTION,
            HeaderValue::from_str(&tokens.join(",")).unwrap(),
        );
        h.append("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "close, X-Secret, x-forwarded-for"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("x-keep", "yes"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
        // The proxy's own headers are set afterwards, so the token cannot remove them.
        set_forwarded(&mut h, &HeaderValue::from_static("10.0.0.1"), false, None);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
    }

    #[test]
    fn untrusted_peer_replaces_all_three() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil"),
        ]);
        let host = HeaderValue::from_static("app.test");
        set_forwarded(
            &mut h,
            &HeaderValue::from_static("127.0.0.1"),
            false,
            Some(&host),
        );
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app.test");
    }

    #[test]
    fn trusted_peer_appends_and_keeps() {
        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("x-forwarded-proto", "http"),
        ]);
        let host = HeaderValue::from_static("app.test");
        set_forwarded(
            &mut h,
            &HeaderValue::from_static("127.0.0.1"),
            true,
            Some(&host),
        );
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "app.test");
    }

    #[test]
    fn tokens() {
        let h = map(&[("connection", "keep-alive, Upgrade")]);
        assert!(has_token(&h, &header::CONNECTION, "upgrade"));
        assert!(!has_token(&h, &header::CONNECTION, "close"));
    }
}
