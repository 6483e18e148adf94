//! The server-side jar of one route's upstream cookies (SPEC §5), with
//! RFC 6265 storage semantics: keyed by (name, path), default-path for a
//! missing `Path`, deletion by `Max-Age<=0` or a past `Expires`.

use std::sync::OnceLock;

use http::HeaderValue;
use serde::{Deserialize, Serialize};

use super::setcookie::SetCookie;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JarCookie {
    pub name: String,
    pub value: String,
    pub path: String,
    /// Unix ms; `None` lives as long as the session.
    pub expires: Option<u64>,
}

impl JarCookie {
    pub fn bytes(&self) -> usize {
        self.name.len() + self.value.len()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Jar {
    cookies: Vec<JarCookie>,
    /// Every cookie joined into one `Cookie` value, in send order: made on
    /// the first request after a change and shared by every request after
    /// it (the session is behind an `Arc`), so the usual request — all
    /// cookies match, the browser sends only the session cookie — copies
    /// nothing. Reset by every change.
    #[serde(skip)]
    joined: OnceLock<Joined>,
}

/// What [`Jar::joined_if_all_match`] keeps between changes of the jar.
#[derive(Debug, Clone)]
struct Joined {
    /// `None` when the joined text is not a valid header value.
    value: Option<HeaderValue>,
    /// The earliest expiry of any cookie: all are live before it.
    soonest_expiry: Option<u64>,
    /// Every cookie is on `Path=/`, so all match every request path.
    all_root: bool,
}

impl Joined {
    fn of(cookies: &[JarCookie]) -> Joined {
        let mut text = Vec::with_capacity(cookies.iter().map(|c| c.bytes() + 3).sum());
        for c in cookies {
            push_pair(&mut text, c.name.as_bytes(), c.value.as_bytes());
        }
        Joined {
            value: HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).ok(),
            soonest_expiry: cookies.iter().filter_map(|c| c.expires).min(),
            all_root: cookies.iter().all(|c| c.path == "/"),
        }
    }
}

/// Equal when the cookies are; the cache follows from them.
impl PartialEq for Jar {
    fn eq(&self, other: &Self) -> bool {
        self.cookies == other.cookies
    }
}

impl Eq for Jar {}

/// What storing one `Set-Cookie` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Added,
    Replaced,
    /// Same name, path, value and expiry as before.
    Unchanged,
    Deleted,
    /// A deletion of something the jar did not hold.
    Nothing,
    /// Would push the jar past `max_jar_bytes`.
    OverCap,
}

impl Stored {
    pub fn changed(self) -> bool {
        matches!(self, Stored::Added | Stored::Replaced | Stored::Deleted)
    }
}

impl Jar {
    pub fn cookies(&self) -> &[JarCookie] {
        &self.cookies
    }

    pub fn is_empty(&self) -> bool {
        self.cookies.is_empty()
    }

    /// Bytes held: names plus values.
    pub fn bytes(&self) -> usize {
        self.cookies.iter().map(JarCookie::bytes).sum()
    }

    /// Stores one parsed `Set-Cookie` received for `request_path`.
    pub fn store(
        &mut self,
        sc: &SetCookie<'_>,
        request_path: &str,
        now_ms: u64,
        max_bytes: usize,
    ) -> Stored {
        self.joined = OnceLock::new();
        self.prune(now_ms);
        let path = sc
            .path
            .map_or_else(|| default_path(request_path), str::to_string);
        let at = self
            .cookies
            .iter()
            .position(|c| c.name == sc.name && c.path == path);
        if sc.deletes(now_ms) {
            return match at {
                Some(i) => {
                    self.cookies.remove(i);
                    Stored::Deleted
                }
                None => Stored::Nothing,
            };
        }
        let new = JarCookie {
            name: sc.name.to_string(),
            value: sc.value.to_string(),
            path,
            expires: sc.expiry(now_ms),
        };
        let old_bytes = at.map_or(0, |i| self.cookies[i].bytes());
        if self.bytes() - old_bytes + new.bytes() > max_bytes {
            return Stored::OverCap;
        }
        match at {
            Some(i) if self.cookies[i] == new => Stored::Unchanged,
            Some(i) => {
                self.cookies[i] = new;
                Stored::Replaced
            }
            None => {
                // After every cookie with an equal or longer path.
                let at = self
                    .cookies
                    .partition_point(|c| c.path.len() >= new.path.len());
                self.cookies.insert(at, new);
                Stored::Added
            }
        }
    }

    /// Drops expired entries; true when any went.
    pub fn prune(&mut self, now_ms: u64) -> bool {
        self.joined = OnceLock::new();
        let before = self.cookies.len();
        self.cookies
            .retain(|c| c.expires.is_none_or(|t| t > now_ms));
        before != self.cookies.len()
    }

    /// The whole jar as one `Cookie` value, when every cookie is live and
    /// matches `request_path` (always so for `Path=/` cookies); `None` means
    /// use [`Jar::matching`].
    pub fn joined_if_all_match(&self, request_path: &str, now_ms: u64) -> Option<HeaderValue> {
        if self.cookies.is_empty() {
            return None;
        }
        let joined = self.joined.get_or_init(|| Joined::of(&self.cookies));
        let live = joined.soonest_expiry.is_none_or(|t| t > now_ms);
        let matching = (joined.all_root && request_path.starts_with('/'))
            || self
                .cookies
                .iter()
                .all(|c| path_matches(&c.path, request_path));
        if live && matching {
            joined.value.clone()
        } else {
            None
        }
    }

    /// Live cookies whose path matches, longer paths first, then in the
    /// order they were stored (RFC 6265 §5.4). The jar is kept in that order
    /// as cookies are stored, so sending needs no sort.
    pub fn matching<'a>(
        &'a self,
        request_path: &'a str,
        now_ms: u64,
    ) -> impl Iterator<Item = &'a JarCookie> + 'a {
        self.cookies.iter().filter(move |c| {
            c.expires.is_none_or(|t| t > now_ms) && path_matches(&c.path, request_path)
        })
    }
}

/// Appends one cookie-pair to a `Cookie` value being built: `; ` between
/// pairs, and a nameless pair as its value alone (RFC 6265bis §5.6).
pub fn push_pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    if !out.is_empty() {
        out.extend_from_slice(b"; ");
    }
    if !name.is_empty() {
        out.extend_from_slice(name);
        out.push(b'=');
    }
    out.extend_from_slice(value);
}

/// RFC 6265 §5.1.4 default-path of a request path.
pub fn default_path(request_path: &str) -> String {
    match request_path.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => request_path[..i].to_string(),
    }
}

/// RFC 6265 §5.1.4 path-match.
pub fn path_matches(cookie_path: &str, request_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/')
                || request_path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = 65536;

    fn put(jar: &mut Jar, raw: &str, path: &str, now: u64) -> Stored {
        jar.store(&SetCookie::parse(raw).unwrap(), path, now, CAP)
    }

    fn sent(jar: &Jar, path: &str, now: u64) -> Vec<String> {
        jar.matching(path, now)
            .map(|c| format!("{}={}", c.name, c.value))
            .collect()
    }

    #[test]
    fn path_match_and_default_path() {
        assert_eq!(default_path("/a/b/c"), "/a/b");
        assert_eq!(default_path("/a"), "/");
        assert!(path_matches("/a", "/a/b"));
        assert!(path_matches("/a/", "/a/b"));
        assert!(!path_matches("/a", "/ab"));
        let mut jar = Jar::default();
        put(&mut jar, "x=1", "/docs/page", 0);
        assert_eq!(sent(&jar, "/docs/other", 0), ["x=1"]);
        assert!(sent(&jar, "/", 0).is_empty());
    }

    #[test]
    fn joined_value_matches_the_cookies_sent_and_follows_changes() {
        let joined = |jar: &Jar, path: &str, now: u64| {
            jar.joined_if_all_match(path, now)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let mut jar = Jar::default();
        assert_eq!(
            joined(&jar, "/", 0),
            None,
            "an empty jar has nothing to join"
        );
        put(&mut jar, "a=1; Path=/", "/", 0);
        put(&mut jar, "b=2; Path=/app", "/", 0);
        assert_eq!(joined(&jar, "/app/x", 0).as_deref(), Some("b=2; a=1"));
        assert_eq!(sent(&jar, "/app/x", 0).join("; "), "b=2; a=1");
        assert_eq!(joined(&jar, "/other", 0), None, "b does not apply there");
        // A change after the value was made is seen by the next request.
        put(&mut jar, "a=9; Path=/", "/", 0);
        assert_eq!(joined(&jar, "/app/x", 0).as_deref(), Some("b=2; a=9"));
        let copy = jar.clone();
        put(&mut jar, "c=3; Path=/; Max-Age=10", "/", 1_000);
        assert_eq!(
            joined(&jar, "/app", 1_000).as_deref(),
            Some("b=2; a=9; c=3")
        );
        assert_eq!(joined(&copy, "/app", 1_000).as_deref(), Some("b=2; a=9"));
        // An expired cookie is left out, so the whole value cannot be used.
        assert_eq!(joined(&jar, "/app", 11_000), None);
        assert_eq!(sent(&jar, "/app", 11_000), ["b=2", "a=9"]);

        // All on `Path=/`: every request path takes the whole value, until
        // the first cookie expires.
        let mut root = Jar::default();
        put(&mut root, "a=1; Path=/", "/", 0);
        put(&mut root, "b=2; Path=/; Max-Age=5", "/", 0);
        put(&mut root, "c=3; Path=/; Max-Age=9", "/", 0);
        for path in ["/", "/x/y", "/app"] {
            assert_eq!(
                joined(&root, path, 4_999).as_deref(),
                Some("a=1; b=2; c=3"),
                "{path}"
            );
        }
        assert_eq!(joined(&root, "/", 5_000), None);
        assert_eq!(sent(&root, "/", 5_000), ["a=1", "c=3"]);
    }

    #[test]
    fn replace_by_name_and_path_longer_paths_first() {
        let mut jar = Jar::default();
        assert_eq!(put(&mut jar, "a=1; Path=/", "/", 0), Stored::Added);
        assert_eq!(put(&mut jar, "a=2; Path=/app", "/", 0), Stored::Added);
        assert_eq!(put(&mut jar, "a=3; Path=/", "/", 0), Stored::Replaced);
        assert_eq!(put(&mut jar, "a=3; Path=/", "/", 0), Stored::Unchanged);
        assert_eq!(sent(&jar, "/app/x", 0), ["a=2", "a=3"]);
    }

    #[test]
    fn max_age_zero_and_past_expires_delete() {
        let mut jar = Jar::default();
        put(&mut jar, "a=1; Path=/", "/", 0);
        put(&mut jar, "b=1; Path=/", "/", 0);
        assert_eq!(
            put(&mut jar, "a=; Max-Age=0; Path=/", "/", 0),
            Stored::Deleted
        );
        assert_eq!(
            put(
                &mut jar,
                "b=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/",
                "/",
                1
            ),
            Stored::Deleted
        );
        assert_eq!(put(&mut jar, "c=; Max-Age=-1", "/", 0), Stored::Nothing);
        assert!(jar.is_empty());
    }

    #[test]
    fn entries_expire_over_time() {
        let mut jar = Jar::default();
        put(&mut jar, "a=1; Max-Age=10; Path=/", "/", 1_000);
        assert_eq!(sent(&jar, "/", 10_999), ["a=1"]);
        assert!(sent(&jar, "/", 11_000).is_empty());
        assert!(jar.prune(11_000));
    }

    #[test]
    fn byte_cap_drops_the_cookie_that_would_exceed_it() {
        let mut jar = Jar::default();
        let big = format!("a={}; Path=/", "x".repeat(60));
        assert_eq!(
            jar.store(&SetCookie::parse(&big).unwrap(), "/", 0, 100),
            Stored::Added
        );
        let more = format!("b={}; Path=/", "y".repeat(60));
        assert_eq!(
            jar.store(&SetCookie::parse(&more).unwrap(), "/", 0, 100),
            Stored::OverCap
        );
        // Replacing an entry counts only the difference.
        let again = format!("a={}; Path=/", "z".repeat(90));
        assert_eq!(
            jar.store(&SetCookie::parse(&again).unwrap(), "/", 0, 100),
            Stored::Replaced
        );
        assert_eq!(jar.bytes(), 91);
    }
}
