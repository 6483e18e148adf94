//! Admission checks before anything reaches the upstream: `auth = "required"`
//! (SPEC §8.3) and the Origin / Sec-Fetch-Site CSRF check (SPEC §9.6).

use http::header::{self, HeaderMap};
use http::{HeaderValue, Method};

use super::path::under_any;
use super::ProxyError;
use crate::config::{Csrf, CsrfMode, Route, RouteAuth};

/// Refuses a request to an `auth = "required"` route without an identity,
/// unless its path is one of the route's `public_paths`.
pub fn require_identity(
    route: &Route,
    has_identity: bool,
    method: &Method,
    headers: &HeaderMap,
    path: &str,
    query: Option<&str>,
) -> Result<(), ProxyError> {
    if route.auth != RouteAuth::Required || has_identity || under_any(&route.public_paths, path) {
        return Ok(());
    }
    if is_navigation(method, headers) {
        let mut target = String::from(path);
        if let Some(q) = query {
            target.push('?');
            target.push_str(q);
        }
        let location = format!("/.cloakroom/login?rd={}", percent_encode(&target));
        return Err(ProxyError::LoginRequired(
            HeaderValue::from_str(&location)
                .map_err(|_| ProxyError::BadRequest("invalid request target"))?,
        ));
    }
    Err(ProxyError::Unauthenticated)
}

/// A browser navigation: GET or HEAD accepting `text/html`.
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    (method == Method::GET || method == Method::HEAD) && accepts_html(headers)
}

pub fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/html"))
}

/// The CSRF rule: an unsafe request carrying a valid session is refused when
/// its `Origin` is foreign (or `null`), or, without `Origin`, when
/// `Sec-Fetch-Site` says `cross-site`.
pub fn csrf(
    cfg: &Csrf,
    method: &Method,
    headers: &HeaderMap,
    host: &str,
) -> Result<(), ProxyError> {
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
            let own = origin.len() == "https://".len() + host.len()
                && origin[..8].eq_ignore_ascii_case("https://")
                && origin[8..].eq_ignore_ascii_case(host);
            if own
                || cfg
                    .allowed_origins
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(origin))
            {
                Ok(())
            } else {
                Err(ProxyError::CsrfRejected)
            }
        }
        None => match headers.get("sec-fetch-site") {
            Some(v) if v.as_bytes().eq_ignore_ascii_case(b"cross-site") => {
                Err(ProxyError::CsrfRejected)
            }
            _ => Ok(()),
        },
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
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

    #[test]
    fn rd_is_percent_encoded() {
        assert_eq!(percent_encode("/a b?x=1&y=/"), "/a%20b%3Fx%3D1%26y%3D/");
    }
}
