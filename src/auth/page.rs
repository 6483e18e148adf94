//! The local login page (SPEC §8.5): one small HTML form that works
//! without JavaScript and loads nothing else — the style is inline and
//! allowed by its hash, the CSP forbids every other source, and the form
//! may post only to this origin. Labelled fields with `autocomplete`
//! hints, so password managers and screen readers know what they are; a
//! message is announced (`role="alert"`) and tied to the fields.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use http::header::HeaderValue;
use http::{Response, StatusCode};

use crate::reply::{html_page, ProxyBody};

pub const WRONG: &str = "Wrong user name or password.";
pub const LOCKED: &str = "Too many failed sign-in attempts. Wait a while, then try again.";
pub const EXPIRED: &str = "The sign-in form had expired. Please sign in again.";
pub const ENDED: &str = "Your session ended while you signed in. Please sign in again.";

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem;line-height:1.4}\
label{display:block;margin-top:1rem;font-weight:600}\
input{display:block;width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}\
button{margin-top:1.5rem;padding:.5rem 1.25rem;font-size:1rem}\
.message{border-left:4px solid #b00020;padding:.25rem .75rem;color:#b00020}";

/// What one rendering of the form shows.
pub struct Form<'a> {
    /// The CSRF token (base64url: nothing to escape, escaped anyway).
    pub token: &'a str,
    /// The validated return path.
    pub rd: &'a str,
    /// The name typed last time, kept in the field.
    pub user: &'a str,
    pub message: Option<&'a str>,
}

pub fn render(status: StatusCode, form: &Form<'_>) -> Response<ProxyBody> {
    let (message, described) = match form.message {
        Some(m) => (
            format!(
                "<p class=\"message\" id=\"login-message\" role=\"alert\">{}</p>\n",
                escape(m)
            ),
            " aria-describedby=\"login-message\"",
        ),
        None => (String::new(), ""),
    };
    let body = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<h1>Sign in</h1>
{message}<form method="post" action="/.cloakroom/login">
<input type="hidden" name="csrf" value="{token}">
<input type="hidden" name="rd" value="{rd}">
<label for="username">User name</label>
<input id="username" name="username" type="text" value="{user}" autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus{described}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required{described}>
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>
"#,
        token = escape(form.token),
        rd = escape(form.rd),
        user = escape(form.user),
    );
    html_page(status, body, csp())
}

/// Nothing but the inline style, posting only to this origin, never framed.
fn csp() -> HeaderValue {
    static CSP: OnceLock<HeaderValue> = OnceLock::new();
    CSP.get_or_init(|| {
        let digest = ring::digest::digest(&ring::digest::SHA256, STYLE.as_bytes());
        let policy = format!(
            "default-src 'none'; style-src 'sha256-{}'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            B64.encode(digest.as_ref())
        );
        HeaderValue::from_str(&policy).expect("base64 and ASCII are header-safe")
    })
    .clone()
}

/// HTML text and attribute escaping.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        assert_eq!(
            escape(r#""><script>x</script>&'"#),
            "&quot;&gt;&lt;script&gt;x&lt;/script&gt;&amp;&#39;"
        );
    }

    #[test]
    fn s9_5a_the_page_has_the_own_page_headers_and_no_external_source() {
        let form = Form {
            token: "t",
            rd: "/a?b=1&c=<2>",
            user: "\"bob",
            message: Some(WRONG),
        };
        let resp = render(StatusCode::UNAUTHORIZED, &form);
        let h = resp.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
    }
}
