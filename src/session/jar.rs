//! The server-side jar of one route's upstream cookies (SPEC §5), with
//! RFC 6265 storage semantics: keyed by (name, path), default-path for a
//! missing `Path`, deletion by `Max-Age<=0` or a past `Expires`.

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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jar {
    cookies: Vec<JarCookie>,
}

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
        let before = self.cookies.len();
        self.cookies
            .retain(|c| c.expires.is_none_or(|t| t > now_ms));
        before != self.cookies.len()
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
