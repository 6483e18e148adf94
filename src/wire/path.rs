//! The one normalised request path (SPEC §3): routing, `public_paths`,
//! `passive_paths` and the reserved prefix all match it, and it is what the
//! upstream receives. Dot segments are resolved and `//` collapsed;
//! percent-encoded `/` and `.` are left encoded, never turned into separators.

use std::borrow::Cow;

/// Normalises a request path. `None` when it is not an origin-form path or
/// holds raw spaces or control characters (the request gets 400).
pub fn normalise(path: &str) -> Option<Cow<'_, str>> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || bytes.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return None;
    }
    if !needs_rewrite(bytes) {
        return Some(Cow::Borrowed(path));
    }
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for seg in path[1..].split('/') {
        trailing_slash = false;
        match seg {
            "" | "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Some(Cow::Owned(out))
}

/// True when `normalise` has work to do (`//`, or a `.`/`..` segment).
fn needs_rewrite(b: &[u8]) -> bool {
    b.windows(2).any(|w| w == b"//")
        || b.split(|&c| c == b'/')
            .skip(1)
            .any(|seg| seg == b"." || seg == b"..")
}

/// Normalises a configured prefix: a path, without a trailing `/` unless it
/// is the root.
pub fn normalise_prefix(prefix: &str) -> Option<String> {
    let p = normalise(prefix)?;
    let trimmed = p.trim_end_matches('/');
    Some(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

/// Segment-boundary prefix match: `/app` matches `/app` and `/app/x`, not
/// `/apple`. `prefix` is normalised by [`normalise_prefix`].
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'))
}

/// True when `path` falls under one of `prefixes` (segment boundaries),
/// each taken as written in the config (a trailing `/` is ignored).
pub fn under_any(prefixes: &[String], path: &str) -> bool {
    prefixes
        .iter()
        .any(|p| prefix_matches(p.trim_end_matches('/'), path))
}

/// Splits a request target into path and query, dropping any fragment.
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    let target = target.split('#').next().unwrap_or("");
    match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_and_double_slashes() {
        for (input, want) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a//b", "/a/b"),
            ("//a", "/a"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a/", "/a/"),
            ("/.cloakroom/../x", "/x"),
            ("/x/..%2f.cloakroom", "/x/..%2f.cloakroom"),
            ("/%2e%2e/a", "/%2e%2e/a"),
            ("/a%2fb", "/a%2fb"),
            ("/..", "/"),
        ] {
            assert_eq!(normalise(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn borrowed_when_clean() {
        assert!(matches!(normalise("/a/b.c/d"), Some(Cow::Borrowed(_))));
    }

    #[test]
    fn refuses_spaces_controls_and_relative() {
        for bad in ["/a b", "/a\tb", "/a\x7f", "a/b", "", "*"] {
            assert!(normalise(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn segment_boundary_prefixes() {
        assert!(prefix_matches("/app", "/app"));
        assert!(prefix_matches("/app", "/app/x"));
        assert!(!prefix_matches("/app", "/apple"));
        assert!(prefix_matches("/", "/anything"));
        assert_eq!(normalise_prefix("/app/").unwrap(), "/app");
        assert_eq!(normalise_prefix("/").unwrap(), "/");
    }

    #[test]
    fn target_split_drops_fragment() {
        assert_eq!(split_target("/a?b=1#frag"), ("/a", Some("b=1")));
        assert_eq!(split_target("/a#x?y"), ("/a", None));
    }
}
