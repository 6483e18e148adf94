//! The `Cookie` header on its way through the proxy (SPEC §4.3, §4.7, §5.2)
//! and the browser's session cookie (§4.2).
//!
//! A request's `Cookie` fields are scanned once ([`CookieScan`]): that one
//! pass finds the session cookie values to verify and counts what else the
//! browser sent. The upstream request's `Cookie` is then written from those
//! counts ([`upstream_cookie`]): left as sent when there is nothing to do,
//! the jar's shared joined value when the browser sent only the session
//! cookie, else rebuilt in one pass — the session cookie out, the jar's
//! matching cookies in (longer paths first), client cookies sharing a name
//! with a jar cookie dropped (the jar wins), HTTP/2's split fields joined.

use http::header::{self, HeaderMap, HeaderValue};

use super::jar::{push_pair, Jar};
use crate::config::Session as SessionConfig;

/// Session cookie values kept from the scan; a request with more (only a
/// forger sends that many) has the rest read again from the header.
const KEPT: usize = 4;

/// What one pass over a request's `Cookie` fields found.
#[derive(Debug)]
pub struct CookieScan<'h> {
    kept: [&'h [u8]; KEPT],
    /// Values with the session cookie's name, in order.
    pub sessions: usize,
    /// Other cookie-pairs the client sent.
    pub others: usize,
    /// `Cookie` fields (HTTP/2 clients send one per cookie).
    pub fields: usize,
    headers: &'h HeaderMap,
    name: &'h [u8],
}

impl<'h> CookieScan<'h> {
    pub fn new(headers: &'h HeaderMap, name: &'h str) -> Self {
        let name = name.as_bytes();
        let mut scan = CookieScan {
            kept: [&[]; KEPT],
            sessions: 0,
            others: 0,
            fields: 0,
            headers,
            name,
        };
        for field in headers.get_all(header::COOKIE) {
            scan.fields += 1;
            for (n, v) in Pairs::of(field.as_bytes()) {
                if n == name {
                    if let Some(slot) = scan.kept.get_mut(scan.sessions) {
                        *slot = v;
                    }
                    scan.sessions += 1;
                } else {
                    scan.others += 1;
                }
            }
        }
        scan
    }

    /// The session cookie's values, as bytes: a value with bytes outside
    /// base64url cannot verify, and counts as a bad cookie.
    pub fn session_values(&self) -> impl Iterator<Item = &'h [u8]> + '_ {
        let kept = self.sessions.min(KEPT);
        let rest = self.sessions.saturating_sub(KEPT);
        // `take(0)` never polls the re-read: it runs only past `KEPT`.
        self.kept[..kept].iter().copied().chain(
            cookie_pairs(self.headers)
                .filter(|(n, _)| *n == self.name)
                .map(|(_, v)| v)
                .skip(KEPT)
                .take(rest),
        )
    }

    /// The counts, without the borrow of the headers.
    pub fn counts(&self) -> CookieCounts {
        CookieCounts {
            sessions: self.sessions,
            others: self.others,
            fields: self.fields,
        }
    }
}

/// [`CookieScan`]'s counts, carried past the point where headers change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CookieCounts {
    pub sessions: usize,
    pub others: usize,
    pub fields: usize,
}

/// Every cookie-pair of every `Cookie` field, as bytes: values may hold
/// non-ASCII bytes, and a pair without `=` is a value with an empty name
/// (RFC 6265bis §5.6). Nothing is skipped, so nothing escapes the rewrite.
pub fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| Pairs::of(v.as_bytes()))
}

/// The `;`-separated pairs of one `Cookie` field, split with `memchr`;
/// empty pairs (`;;`) are skipped.
struct Pairs<'a>(Option<&'a [u8]>);

impl<'a> Pairs<'a> {
    fn of(field: &'a [u8]) -> Self {
        Pairs(Some(field))
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.0?;
            let (pair, tail) = match memchr::memchr(b';', rest) {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            self.0 = tail;
            let item = match memchr::memchr(b'=', pair) {
                Some(i) => (pair[..i].trim_ascii(), pair[i + 1..].trim_ascii()),
                None => (&pair[..0], pair.trim_ascii()),
            };
            if !(item.0.is_empty() && item.1.is_empty()) {
                return Some(item);
            }
        }
    }
}

/// Writes the upstream request's `Cookie` header. `counts` describe the
/// client's `Cookie` fields as they are now; `jar` is the route's jar of the
/// request's session, if it has one in jar mode.
pub fn upstream_cookie(
    headers: &mut HeaderMap,
    counts: CookieCounts,
    cookie_name: &str,
    jar: Option<&Jar>,
    path: &str,
    now: u64,
) {
    // The usual request with a session: the browser sent only the session
    // cookie, and the jar's cookies all apply: its joined value goes as is.
    if counts.others == 0 {
        if let Some(joined) = jar.and_then(|j| j.joined_if_all_match(path, now)) {
            headers.insert(header::COOKIE, joined);
            return;
        }
    }
    let jar_matches = || jar.into_iter().flat_map(move |j| j.matching(path, now));
    // Nothing to merge, no session cookie to remove, one field or none:
    // leave it as sent.
    if counts.sessions == 0 && counts.fields <= 1 && jar_matches().next().is_none() {
        return;
    }
    // One allocation: the jar's cookies plus what the client sent is an
    // upper bound of the merged header.
    let sent: usize = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.len() + 2)
        .sum();
    let jar_bytes: usize = jar_matches()
        .map(|c| c.name.len() + c.value.len() + 3)
        .sum();
    let mut out = Vec::with_capacity(sent + jar_bytes);
    for c in jar_matches() {
        push_pair(&mut out, c.name.as_bytes(), c.value.as_bytes());
    }
    let name = cookie_name.as_bytes();
    for (n, v) in cookie_pairs(headers) {
        if n != name && !jar_matches().any(|c| c.name.as_bytes() == n) {
            push_pair(&mut out, n, v);
        }
    }
    headers.remove(header::COOKIE);
    if !out.is_empty() {
        // Hands the buffer over without a copy; still validated.
        if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(out)) {
            headers.insert(header::COOKIE, v);
        }
    }
}

/// The browser's session cookie (SPEC §4.2), or a clearing one (`None`).
pub fn session_cookie(
    cfg: &SessionConfig,
    value: Option<&str>,
    max_age: Option<u64>,
) -> HeaderValue {
    let mut s = String::with_capacity(160);
    s.push_str(&cfg.cookie_name);
    s.push('=');
    s.push_str(value.unwrap_or(""));
    s.push_str("; Secure; HttpOnly; SameSite=");
    s.push_str(cfg.same_site.as_str());
    s.push_str("; Path=/");
    match (value, max_age) {
        (None, _) => s.push_str("; Max-Age=0"),
        (Some(_), Some(secs)) => s.push_str(&format!("; Max-Age={secs}")),
        (Some(_), None) => {}
    }
    HeaderValue::from_str(&s).expect("cookie names and base64url values are valid header text")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::setcookie::SetCookie;

    fn headers(fields: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for f in fields {
            h.append(
                header::COOKIE,
                HeaderValue::from_bytes(f.as_bytes()).unwrap(),
            );
        }
        h
    }

    fn jar(cookies: &[(&str, &str)]) -> Jar {
        let mut j = Jar::default();
        for (raw, path) in cookies {
            j.store(&SetCookie::parse(raw).unwrap(), path, 0, 65536);
        }
        j
    }

    fn rewritten(fields: &[&str], jar: Option<&Jar>, path: &str) -> Option<String> {
        let mut h = headers(fields);
        let counts = CookieScan::new(&h, "sid").counts();
        upstream_cookie(&mut h, counts, "sid", jar, path, 1);
        assert!(h.get_all(header::COOKIE).iter().count() <= 1);
        h.get(header::COOKIE)
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn cookie_pairs_are_bytes_and_keep_nameless_values() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes("a=1; flag; n=Jos\u{e9}".as_bytes()).unwrap(),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b = 2 ;;"));
        let pairs: Vec<_> = cookie_pairs(&h).collect();
        assert_eq!(
            pairs,
            [
                (&b"a"[..], &b"1"[..]),
                (&b""[..], &b"flag"[..]),
                (&b"n"[..], "Jos\u{e9}".as_bytes()),
                (&b"b"[..], &b"2"[..]),
            ]
        );
    }

    #[test]
    fn s4_3_every_session_value_is_offered_in_order_past_the_kept_ones() {
        let values: Vec<String> = (0..7).map(|i| format!("sid=v{i}")).collect();
        let h = headers(&[&values[..3].join("; "), "x=1", &values[3..].join(";")]);
        let scan = CookieScan::new(&h, "sid");
        assert_eq!((scan.sessions, scan.others, scan.fields), (7, 1, 3));
        let seen: Vec<&[u8]> = scan.session_values().collect();
        let want: Vec<String> = (0..7).map(|i| format!("v{i}")).collect();
        assert_eq!(seen, want.iter().map(|s| s.as_bytes()).collect::<Vec<_>>());
    }

    #[test]
    fn s4_7_s5_2_session_cookie_out_jar_in_jar_wins() {
        let j = jar(&[("a=jar; Path=/", "/"), ("deep=1; Path=/app", "/app/x")]);
        // Only the session cookie: the jar's value, longer paths first.
        assert_eq!(
            rewritten(&["sid=x"], Some(&j), "/app/y").as_deref(),
            Some("deep=1; a=jar")
        );
        // A client cookie named like a jar cookie is dropped; others stay.
        assert_eq!(
            rewritten(&["a=client; sid=x; b=2"], Some(&j), "/").as_deref(),
            Some("a=jar; b=2")
        );
        // No jar: the session cookie goes, the rest stays.
        assert_eq!(
            rewritten(&["b=2; sid=x"], None, "/").as_deref(),
            Some("b=2")
        );
        assert_eq!(rewritten(&["sid=x"], None, "/"), None);
    }

    #[test]
    fn s5_2_http2_fields_are_joined_and_a_lone_field_is_left_alone() {
        assert_eq!(
            rewritten(&["a=1", "b=2"], None, "/").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(
            rewritten(&["a=1;b=2"], None, "/").as_deref(),
            Some("a=1;b=2")
        );
        assert_eq!(rewritten(&[], None, "/"), None);
    }
}
