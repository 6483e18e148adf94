//! The admin API's bearer token (SPEC §10): read once from
//! `CLOAKROOM_ADMIN_TOKEN` at start, never logged, and compared in constant
//! time. Only an HMAC of it under a random per-process key is kept, and a
//! presented token is checked with `ring::hmac::verify`: the time taken says
//! nothing about where, or whether in length, a guess differs.

use std::fmt;

use http::header::{HeaderMap, AUTHORIZATION};
use ring::hmac;
use ring::rand::SystemRandom;

/// The environment variable holding the token.
pub const TOKEN_ENV: &str = "CLOAKROOM_ADMIN_TOKEN";

/// Tokens shorter than this are accepted with a warning.
const SHORT: usize = 16;

/// A configured admin token; `Debug` prints nothing of it.
pub struct Token {
    key: hmac::Key,
    tag: hmac::Tag,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// The token from [`TOKEN_ENV`]; `None` (the session API answers 404)
    /// when the variable is unset or blank.
    pub fn from_env() -> Option<Token> {
        let Ok(value) = std::env::var(TOKEN_ENV) else {
            tracing::info!(
                env = TOKEN_ENV,
                "admin session API off: the variable is not set"
            );
            return None;
        };
        let value = value.trim();
        if value.is_empty() {
            tracing::warn!(
                env = TOKEN_ENV,
                "admin session API off: the variable is blank"
            );
            return None;
        }
        if value.len() < SHORT {
            tracing::warn!(
                env = TOKEN_ENV,
                "admin token is shorter than 16 bytes; `cloakroom gen-secret` makes a good one"
            );
        }
        let token = Token::new(value);
        match token {
            Some(_) => tracing::info!(env = TOKEN_ENV, "admin session API on"),
            None => tracing::error!("admin session API off: the system random generator failed"),
        }
        token
    }

    /// `None` for a blank secret or when the system random generator fails.
    pub fn new(secret: &str) -> Option<Token> {
        if secret.is_empty() {
            return None;
        }
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).ok()?;
        let tag = hmac::sign(&key, secret.as_bytes());
        Some(Token { key, tag })
    }

    /// True when `headers` carry `Authorization: Bearer <this token>`.
    pub fn authorizes(&self, headers: &HeaderMap) -> bool {
        headers
            .get(AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()))
            .is_some_and(|t| hmac::verify(&self.key, t, self.tag.as_ref()).is_ok())
    }
}

/// The credentials of a `Bearer` authorization (RFC 6750 §2.1; the scheme
/// is case-insensitive, RFC 9110 §11.1).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let start = rest.iter().position(|b| *b != b' ')?;
    Some(rest[start..].trim_ascii_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn s10_bearer_token_must_match_exactly() {
        let t = Token::new("s3cret-token-value").unwrap();
        assert!(t.authorizes(&with("Bearer s3cret-token-value")));
        assert!(t.authorizes(&with("bearer   s3cret-token-value")));
        for bad in [
            "Bearer s3cret-token-valu",
            "Bearer s3cret-token-value2",
            "Bearer ",
            "Basic s3cret-token-value",
            "s3cret-token-value",
            "Bearers3cret-token-value",
        ] {
            assert!(!t.authorizes(&with(bad)), "{bad}");
        }
        assert!(!t.authorizes(&HeaderMap::new()));
    }

    #[test]
    fn blank_token_is_no_token_and_debug_hides_it() {
        assert!(Token::new("").is_none());
        let t = Token::new("hunter2hunter2hunter2").unwrap();
        assert_eq!(format!("{t:?}"), "Token(..)");
    }
}
