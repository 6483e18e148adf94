//! Identity headers (SPEC §8.1–§8.2): strip every spelling a client could
//! use to spoof them, then inject the session's identity. Stripping always
//! happens first, so a client value can never survive next to ours. The
//! signed assertion of the identity (SPEC §8.6a) is [`assertion`].

pub mod assertion;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::Config;
use crate::session::Identity;

#[derive(Debug)]
pub struct IdentityHeaders {
    user: HeaderName,
    email: HeaderName,
    groups: HeaderName,
    /// Lower-case names, `-`-separated, removed from client requests in any
    /// spelling that maps `_` and `.` to `-`.
    strip: Vec<String>,
}

impl IdentityHeaders {
    pub fn new(cfg: &Config) -> Self {
        let id = &cfg.identity;
        let mut strip: Vec<String> = [
            &id.user_header,
            &id.email_header,
            &id.groups_header,
            &cfg.auth.upstream_login_header,
            &cfg.auth.upstream_logout_header,
        ]
        .into_iter()
        .chain(id.assertion_header.iter())
        .chain(id.strip_from_client.iter())
        .map(|h| h.as_str().replace(['_', '.'], "-"))
        .collect();
        strip.sort();
        strip.dedup();
        IdentityHeaders {
            user: id.user_header.clone(),
            email: id.email_header.clone(),
            groups: id.groups_header.clone(),
            strip,
        }
    }

    /// Removes identity headers a client sent; returns how many went.
    pub fn strip(&self, headers: &mut HeaderMap) -> usize {
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|n| self.strip.iter().any(|s| same_name(n.as_str(), s)))
            .cloned()
            .collect();
        for name in &doomed {
            headers.remove(name);
        }
        if !doomed.is_empty() {
            tracing::debug!(
                count = doomed.len(),
                "stripped identity headers sent by the client"
            );
        }
        doomed.len()
    }

    /// Sets the identity headers for a session that has one.
    pub fn inject(&self, headers: &mut HeaderMap, identity: Option<&Identity>) {
        let Some(id) = identity else { return };
        let value = |s: &str| HeaderValue::from_bytes(s.as_bytes()).ok();
        if let Some(v) = value(&id.user) {
            headers.insert(&self.user, v);
        }
        if let Some(v) = id.email.as_deref().and_then(value) {
            headers.insert(&self.email, v);
        }
        if !id.groups.is_empty() {
            if let Some(v) = value(&id.groups.join(",")) {
                headers.insert(&self.groups, v);
            }
        }
    }
}

/// Equal once `_` and `.` in the client's (lower-case) name read as `-`.
fn same_name(client: &str, canonical: &str) -> bool {
    client.len() == canonical.len()
        && client.bytes().zip(canonical.bytes()).all(|(a, b)| {
            let a = if a == b'_' || a == b'.' { b'-' } else { a };
            a == b
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn headers() -> IdentityHeaders {
        let text = "[identity]\nstrip_from_client = [\"X-Internal-Role\"]\n[[route]]\nupstream = \"http://127.0.0.1:1\"\n";
        IdentityHeaders::new(&Config::parse(Path::new("/x/p.toml"), text).unwrap())
    }

    #[test]
    fn s8_1_every_spelling_is_stripped() {
        let mut h = HeaderMap::new();
        for name in [
            "x-forwarded-user",
            "X_Forwarded_User",
            "x.forwarded.email",
            "x-forwarded_groups",
            "x-internal-role",
            "x-cloakroom-login",
            "x-other",
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("evil"),
            );
        }
        assert_eq!(headers().strip(&mut h), 6);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["x-other"]
        );
    }

    #[test]
    fn s8_2_identity_is_injected_groups_comma_separated() {
        let mut h = HeaderMap::new();
        let id = Identity {
            user: "alice".into(),
            email: Some("a@example.com".into()),
            groups: vec!["admin".into(), "dev".into()],
        };
        headers().inject(&mut h, Some(&id));
        assert_eq!(h["x-forwarded-user"], "alice");
        assert_eq!(h["x-forwarded-email"], "a@example.com");
        assert_eq!(h["x-forwarded-groups"], "admin,dev");
    }
}
