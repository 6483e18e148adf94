//! `Set-Cookie` from the upstream: parsed for the jar (RFC 6265 §5.2), or
//! rewritten for the browser (SPEC §6) without disturbing what it keeps.

use crate::config::SameSite;

/// Largest name plus value accepted (SPEC §5.1).
pub const MAX_COOKIE_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    ControlCharacters,
    TooLarge,
    Malformed,
}

impl Reject {
    pub fn reason(self) -> &'static str {
        match self {
            Reject::ControlCharacters => "control_characters",
            Reject::TooLarge => "too_large",
            Reject::Malformed => "malformed",
        }
    }
}

/// A parsed `Set-Cookie`, borrowing from the header value.
#[derive(Debug, PartialEq, Eq)]
pub struct SetCookie<'a> {
    pub name: &'a str,
    pub value: &'a str,
    pub path: Option<&'a str>,
    /// Seconds; takes precedence over `expires`.
    pub max_age: Option<i64>,
    /// Unix milliseconds; 0 for any date before 1970.
    pub expires: Option<u64>,
}

impl<'a> SetCookie<'a> {
    pub fn parse(raw: &'a str) -> Result<Self, Reject> {
        if raw.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(Reject::ControlCharacters);
        }
        let mut parts = raw.split(';');
        let (name, value) = parts
            .next()
            .and_then(|nv| nv.split_once('='))
            .ok_or(Reject::Malformed)?;
        let (name, value) = (name.trim(), value.trim());
        if !crate::config::is_cookie_name(name) {
            return Err(Reject::Malformed);
        }
        if name.len() + value.len() > MAX_COOKIE_BYTES {
            return Err(Reject::TooLarge);
        }
        let mut c = SetCookie {
            name,
            value,
            path: None,
            max_age: None,
            expires: None,
        };
        // Later attributes of the same name win (RFC 6265 §5.3).
        for attr in parts {
            let (k, v) = attr
                .split_once('=')
                .map_or((attr.trim(), ""), |(k, v)| (k.trim(), v.trim()));
            if k.eq_ignore_ascii_case("path") {
                c.path = (v.starts_with('/')).then_some(v);
            } else if k.eq_ignore_ascii_case("max-age") {
                if let Ok(n) = v.parse::<i64>() {
                    c.max_age = Some(n);
                }
            } else if k.eq_ignore_ascii_case("expires") {
                // Read as browsers do (RFC 6265 §5.1.1), not only as an
                // HTTP-date; one that fails to parse is ignored (§5.2.1).
                if let Some(t) = super::cookie_date::parse(v) {
                    c.expires = Some(t.unix_ms());
                }
            }
        }
        Ok(c)
    }

    /// When the cookie expires (unix ms): `Some(0)`-like past values delete.
    /// `None` is a session cookie, kept for the life of the session.
    pub fn expiry(&self, now_ms: u64) -> Option<u64> {
        match (self.max_age, self.expires) {
            (Some(n), _) if n <= 0 => Some(0),
            (Some(n), _) => Some(now_ms.saturating_add((n as u64).saturating_mul(1000))),
            (None, Some(t)) => Some(t),
            (None, None) => None,
        }
    }

    pub fn deletes(&self, now_ms: u64) -> bool {
        self.expiry(now_ms).is_some_and(|t| t <= now_ms)
    }
}

/// Rewrites a `Set-Cookie` bound for the browser (SPEC §6): `Secure` added,
/// `HttpOnly` added unless `script_readable`, `SameSite` added when absent,
/// `Domain` removed. Name, value, path and expiry are kept as written.
pub fn rewrite_for_browser(raw: &str, same_site: SameSite, script_readable: bool) -> String {
    let mut parts = raw.split(';');
    let mut out = String::with_capacity(raw.len() + 40);
    out.push_str(parts.next().unwrap_or("").trim());
    let (mut secure, mut http_only, mut has_same_site) = (false, false, false);
    for attr in parts {
        let attr = attr.trim();
        if attr.is_empty() {
            continue;
        }
        let key = attr.split('=').next().unwrap_or("").trim();
        if key.eq_ignore_ascii_case("domain") {
            continue;
        }
        if key.eq_ignore_ascii_case("secure") {
            if secure {
                continue;
            }
            secure = true;
        } else if key.eq_ignore_ascii_case("httponly") {
            if http_only {
                continue;
            }
            http_only = true;
        } else if key.eq_ignore_ascii_case("samesite") {
            if has_same_site {
                continue;
            }
            has_same_site = true;
        }
        out.push_str("; ");
        out.push_str(attr);
    }
    if !secure {
        out.push_str("; Secure");
    }
    if !http_only && !script_readable {
        out.push_str("; HttpOnly");
    }
    if !has_same_site {
        out.push_str("; SameSite=");
        out.push_str(same_site.as_str());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_value_and_attributes_in_any_case() {
        let c = SetCookie::parse("sid=\"a b\"; PATH=/app; max-AGE=60; HttpOnly").unwrap();
        assert_eq!(
            (c.name, c.value, c.path, c.max_age),
            ("sid", "\"a b\"", Some("/app"), Some(60))
        );
    }

    #[test]
    fn expires_with_commas_and_duplicates() {
        let c = SetCookie::parse("a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Path=/x; Path=/y")
            .unwrap();
        assert_eq!(c.expires, Some(1_445_412_480_000));
        assert_eq!(c.path, Some("/y"));
        assert!(c.deletes(crate::session::now_ms()));
    }

    #[test]
    fn expires_in_cookie_date_spellings_deletes() {
        for expires in [
            "Thu, 01-Jan-1970 00:00:01 GMT",
            "Thu, 01-Jan-70 00:00:01 GMT",
            "Thursday, 01-Jan-70 00:00:01",
            "Thu Jan  1 00:00:01 1970",
            "Mon, 01 Jan 1601 00:00:00 GMT",
        ] {
            let raw = format!("a=; Path=/; Expires={expires}");
            let c = SetCookie::parse(&raw).unwrap();
            assert!(c.deletes(crate::session::now_ms()), "{expires}");
        }
        let c = SetCookie::parse("a=1; Expires=Fri, 31-Dec-99 23:59:59").unwrap();
        assert_eq!(c.expires, Some(946_684_799_000));
        let c = SetCookie::parse("a=1; Expires=Sat, 31-Dec-44 23:59:59 GMT").unwrap();
        assert!(!c.deletes(crate::session::now_ms()));
        // One that does not parse is ignored: a session cookie.
        let c = SetCookie::parse("a=1; Expires=Wed, 09 Jun 1600 10:18:14 GMT").unwrap();
        assert_eq!(c.expiry(crate::session::now_ms()), None);
    }

    #[test]
    fn max_age_wins_over_expires_and_zero_deletes() {
        let c = SetCookie::parse("a=1; Max-Age=0; Expires=Wed, 21 Oct 2099 07:28:00 GMT").unwrap();
        assert!(c.deletes(1000));
        let c = SetCookie::parse("a=1; Max-Age=10; Expires=Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(c.expiry(1000), Some(11_000));
        assert!(!c.deletes(1000));
    }

    #[test]
    fn rejects_controls_oversize_and_nameless() {
        assert_eq!(
            SetCookie::parse("a=1\r\nX: y"),
            Err(Reject::ControlCharacters)
        );
        assert_eq!(
            SetCookie::parse(&format!("a={}", "x".repeat(4096))),
            Err(Reject::TooLarge)
        );
        assert_eq!(SetCookie::parse("novalue"), Err(Reject::Malformed));
        assert_eq!(SetCookie::parse("=1"), Err(Reject::Malformed));
    }

    #[test]
    fn rewrite_adds_flags_and_drops_domain() {
        let r = rewrite_for_browser(
            "t=1; Domain=.example.com; Path=/; Expires=Wed, 21 Oct 2099 07:28:00 GMT",
            SameSite::Lax,
            false,
        );
        assert_eq!(
            r,
            "t=1; Path=/; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Secure; HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn rewrite_keeps_existing_flags_once_and_script_readable() {
        let r = rewrite_for_browser(
            "csrf=x; secure; SAMESITE=Strict; secure",
            SameSite::Lax,
            true,
        );
        assert_eq!(r, "csrf=x; secure; SAMESITE=Strict");
        let r = rewrite_for_browser("a=1;httponly", SameSite::None, false);
        assert_eq!(r, "a=1; httponly; Secure; SameSite=None");
    }
}
