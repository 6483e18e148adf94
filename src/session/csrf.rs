//! Cross-site requests riding on the session cookie (SPEC §9.6): an unsafe
//! method carrying a valid session is refused when its `Origin` is foreign.
//! `SameSite=Lax` alone lets a cross-site top-level POST through on older
//! browsers and same-site subdomains; this check does not depend on it.

use http::header::{self, HeaderMap};
use http::Method;

use crate::config::{Csrf, CsrfMode};
use crate::wire::origin::is_own_origin;

/// Refused: the request must not reach the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrossSite;

/// The CSRF rule: an unsafe request carrying a valid session is refused when
/// its `Origin` is foreign (or `null`), or, without `Origin`, when
/// `Sec-Fetch-Site` says `cross-site`.
pub fn csrf(cfg: &Csrf, method: &Method, headers: &HeaderMap, host: &str) -> Result<(), CrossSite> {
    if cfg.mode == CsrfMode::Off
        || !matches!(
            *method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
    {
        return Ok(());
    }
    match headers.get(header::ORIGIN) {
        Some(origin) => {
            let origin = origin.to_str().unwrap_or("null").trim();
            if is_own_origin(origin.as_bytes(), host)
                || cfg
                    .allowed_origins
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(origin))
            {
                Ok(())
            } else {
                Err(CrossSite)
            }
        }
        None => match headers.get("sec-fetch-site") {
            Some(v) if v.as_bytes().eq_ignore_ascii_case(b"cross-site") => Err(CrossSite),
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use http::HeaderValue;
    use std::path::Path;

    fn csrf_cfg(extra: &str) -> Csrf {
        let text = format!("[csrf]\n{extra}\n[[route]]\nupstream = \"http://127.0.0.1:1\"\n");
        Config::parse(Path::new("/x/p.toml"), &text).unwrap().csrf
    }

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn s9_6_origin_rules() {
        let c = csrf_cfg("allowed_origins = [\"https://partner.test\"]");
        let post = Method::POST;
        assert!(csrf(
            &c,
            &post,
            &h(&[("origin", "https://app.test:8443")]),
            "app.test:8443"
        )
        .is_ok());
        assert!(csrf(
            &c,
            &post,
            &h(&[("origin", "https://partner.test")]),
            "app.test"
        )
        .is_ok());
        assert!(csrf(
            &c,
            &post,
            &h(&[("origin", "https://evil.test")]),
            "app.test"
        )
        .is_err());
        assert!(csrf(&c, &post, &h(&[("origin", "null")]), "app.test").is_err());
        assert!(csrf(&c, &post, &h(&[("origin", "http://app.test")]), "app.test").is_err());
        assert!(csrf(
            &c,
            &post,
            &h(&[("sec-fetch-site", "cross-site")]),
            "app.test"
        )
        .is_err());
        assert!(csrf(
            &c,
            &post,
            &h(&[("sec-fetch-site", "same-origin")]),
            "app.test"
        )
        .is_ok());
        assert!(csrf(
            &c,
            &Method::GET,
            &h(&[("origin", "https://evil.test")]),
            "app.test"
        )
        .is_ok());
        assert!(csrf(
            &csrf_cfg("mode = \"off\""),
            &post,
            &h(&[("origin", "null")]),
            "app.test"
        )
        .is_ok());
    }
}
