//! `provider = "form"` (SPEC §8.4a), the request side: the app's own login
//! form is looked into on its way to the app, which is not changed.
//!
//! A POST under one of `auth.login_paths` whose body is
//! `application/x-www-form-urlencoded` or `multipart/form-data` is read
//! into a bounded buffer, at most [`CAPTURE_LIMIT`] bytes, and then sent on
//! as the very frames that were read ([`RequestBody::replay`]): the app
//! gets the client's bytes unchanged. A body that grows past the limit, is
//! not all there within `server.request_header_timeout` of the read's
//! start, or fails, streams on with the rest unread and binds nothing; so
//! does one arriving while [`MAX_CAPTURES`] others are being read (the
//! buffers an attacker can make the proxy hold are capped at
//! `MAX_CAPTURES × CAPTURE_LIMIT`, 16 MiB, each for a bounded time).
//!
//! Of a complete body only the value of `auth.form_user_field` is kept,
//! and only as a candidate: [`crate::session::capture`] binds it when the
//! app's answer is a redirect under `auth.form_success_paths`. The field
//! must appear exactly once, since apps disagree on which of two wins (PHP
//! takes the last, Flask the first): with two, an attacker could log in as
//! themselves and be bound as someone else. The password and every other
//! field are never decoded into values the proxy keeps, and never logged.
//! The contiguous copy a urlencoded body is parsed from is wiped when
//! parsing ends; the frames themselves (shared with the upstream request)
//! and multer's working buffer are freed, not wiped.
//!
//! urlencoded bodies are split on `&` and the first `=` (the WHATWG
//! `application/x-www-form-urlencoded` parser) and only the field names and
//! the user field's value are decoded, strictly
//! ([`percent_decode_exact`]: a malformed escape or non-UTF-8 binds
//! nothing). multipart bodies go through `multer` (RFC 7578).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use http::{header, HeaderMap, Method, Request};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::config::{Auth, Provider};
use crate::upstream::RequestBody;
use crate::wire::body::ClientBody;
use crate::wire::path::under_any;
use crate::wire::percent::percent_decode_exact;

/// The most of a login form's body that is read before forwarding it.
pub const CAPTURE_LIMIT: usize = 64 * 1024;
/// Login bodies read at once, process-wide.
pub const MAX_CAPTURES: usize = 256;

static CAPTURES: Semaphore = Semaphore::const_new(MAX_CAPTURES);

/// The two form encodings a browser submits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormKind {
    UrlEncoded,
    /// With its boundary.
    Multipart(String),
}

/// Why a body bound nothing; logged, never with a value.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    #[error("the user field is missing")]
    Missing,
    #[error("the user field appears more than once")]
    Repeated,
    #[error("the user field is not valid percent-encoded UTF-8")]
    Encoding,
    #[error("the multipart body does not parse")]
    Multipart(#[source] multer::Error),
}

/// The request on its way upstream, and the user its form names, when the
/// request is a login form submission under `provider = "form"`.
/// `cross_site`: the form came from another site (the CSRF rule of SPEC
/// §9.6 refuses its `Origin`); binding its user would log this browser in
/// as whoever that site chose (login CSRF), so it is forwarded unread.
///
/// Any other request is answered at once, without a future of its own: a
/// login form's read is boxed, so its state does not grow every request's.
pub fn read_login<'a>(
    auth: &'a Auth,
    method: &Method,
    path: &'a str,
    cross_site: bool,
    read_limit: Duration,
    req: Request<ClientBody>,
) -> LoginRead<'a> {
    let kind = (auth.provider == Provider::Form
        && method == Method::POST
        && under_any(&auth.login_paths, path))
    .then(|| form_kind(req.headers()))
    .flatten();
    match kind {
        None => Either::Left(std::future::ready((req.map(RequestBody::Client), None))),
        Some(kind) => Either::Right(Box::pin(read_form(
            auth, path, cross_site, read_limit, kind, req,
        ))),
    }
}

/// What [`read_login`] gives: the request on its way upstream, and the user.
pub type LoginRead<'a> = Either<
    std::future::Ready<(Request<RequestBody>, Option<String>)>,
    Pin<Box<dyn Future<Output = (Request<RequestBody>, Option<String>)> + Send + 'a>>,
>;

async fn read_form(
    auth: &Auth,
    path: &str,
    cross_site: bool,
    read_limit: Duration,
    kind: FormKind,
    req: Request<ClientBody>,
) -> (Request<RequestBody>, Option<String>) {
    if cross_site {
        unread("cross_site");
        tracing::info!(
            path,
            "login form from another site; forwarded unread, nothing will be bound"
        );
        return (req.map(RequestBody::Client), None);
    }
    // A declared length past the limit is not worth a buffer.
    if req.body().size_hint().lower() > CAPTURE_LIMIT as u64 {
        unread("too_large");
        tracing::debug!(path, "login form over the capture limit; forwarded unread");
        return (req.map(RequestBody::Client), None);
    }
    let Ok(_permit) = CAPTURES.try_acquire() else {
        unread("busy");
        tracing::warn!(
            path,
            limit = MAX_CAPTURES,
            "too many login forms being read at once; this one is forwarded unread and binds nothing"
        );
        return (req.map(RequestBody::Client), None);
    };
    let (parts, body) = req.into_parts();
    let read = read_bounded(body, CAPTURE_LIMIT, read_limit).await;
    let user = user_of(&read, &kind, &auth.form_user_field, path).await;
    let body = match read.end {
        End::Complete => RequestBody::replay(read.data, read.trailers, None, None),
        End::Failed(e) => RequestBody::replay(read.data, None, Some(e), None),
        End::OverLimit | End::TimedOut => {
            RequestBody::replay(read.data, None, None, Some(read.rest))
        }
    };
    (Request::from_parts(parts, body), user)
}

/// The user field of a body read whole; `None` (logged without values)
/// for one that was not, or that names no user.
async fn user_of(read: &Read, kind: &FormKind, field: &str, path: &str) -> Option<String> {
    match &read.end {
        End::Complete => {}
        End::OverLimit => {
            unread("too_large");
            tracing::debug!(
                path,
                "login form over the capture limit; streamed on unread"
            );
            return None;
        }
        End::TimedOut => {
            unread("too_slow");
            tracing::info!(path, "login form body too slow; streamed on unread");
            return None;
        }
        End::Failed(_) => return None,
    }
    let parsed = match kind {
        FormKind::UrlEncoded => {
            let mut flat = Zeroizing::new(Vec::with_capacity(read.len));
            for chunk in &read.data {
                flat.extend_from_slice(chunk);
            }
            urlencoded_value(&flat, field)
        }
        FormKind::Multipart(boundary) => {
            multipart_value(read.data.iter().cloned(), boundary, field).await
        }
    };
    parsed
        .inspect_err(|e| {
            tracing::info!(path, reason = %e, "login form names no user; nothing will be bound");
        })
        .ok()
}

fn unread(reason: &str) {
    crate::metrics::get()
        .login_forms_unread
        .with_label_values(&[reason])
        .inc();
}

/// The form encoding a `Content-Type` names, if one of the two.
pub fn form_kind(headers: &HeaderMap) -> Option<FormKind> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Some(FormKind::UrlEncoded)
    } else if essence.eq_ignore_ascii_case("multipart/form-data") {
        multer::parse_boundary(ct).ok().map(FormKind::Multipart)
    } else {
        None
    }
}

/// How reading a body ahead ended.
enum End {
    /// The whole body is in `data` (and `trailers`), within the limit.
    Complete,
    OverLimit,
    TimedOut,
    Failed(crate::wire::body::ClientBodyError),
}

struct Read {
    data: Vec<Bytes>,
    len: usize,
    trailers: Option<http::HeaderMap>,
    rest: ClientBody,
    end: End,
}

/// Reads frames until the body ends, passes `limit` bytes, fails, or
/// `time_limit` has passed.
async fn read_bounded(mut body: ClientBody, limit: usize, time_limit: Duration) -> Read {
    let deadline = tokio::time::Instant::now() + time_limit;
    let mut data = Vec::new();
    let mut len = 0usize;
    let mut trailers = None;
    let end = loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => break End::TimedOut,
            Ok(None) => break End::Complete,
            Ok(Some(Err(e))) => break End::Failed(e),
            Ok(Some(Ok(frame))) => frame,
        };
        match frame.into_data() {
            Ok(chunk) => {
                len += chunk.len();
                data.push(chunk);
                if len > limit {
                    break End::OverLimit;
                }
            }
            Err(frame) => {
                // Trailers come last: the body has ended.
                trailers = frame.into_trailers().ok();
                break End::Complete;
            }
        }
    };
    Read {
        data,
        len,
        trailers,
        rest: body,
        end,
    }
}

/// The value of the field named `field`, which must appear exactly once.
pub async fn field_value(kind: &FormKind, body: &[u8], field: &str) -> Result<String, FormError> {
    match kind {
        FormKind::UrlEncoded => urlencoded_value(body, field),
        FormKind::Multipart(boundary) => {
            let chunk = Bytes::copy_from_slice(body);
            multipart_value(std::iter::once(chunk), boundary, field).await
        }
    }
}

/// `application/x-www-form-urlencoded`: `&`-separated `name=value` pairs,
/// `+` for space and `%XX` escapes. Only names, and the one value asked
/// for, are decoded.
fn urlencoded_value(body: &[u8], field: &str) -> Result<String, FormError> {
    let mut found = None;
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match memchr::memchr(b'=', pair) {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        let name = std::str::from_utf8(name)
            .ok()
            .and_then(|n| percent_decode_exact(n, true));
        if name.as_deref() != Some(field) {
            continue;
        }
        if found.is_some() {
            return Err(FormError::Repeated);
        }
        let value = std::str::from_utf8(value)
            .ok()
            .and_then(|v| percent_decode_exact(v, true))
            .ok_or(FormError::Encoding)?;
        found = Some(value);
    }
    found.ok_or(FormError::Missing)
}

/// `multipart/form-data` (RFC 7578): each part's `Content-Disposition`
/// name; the user field's bytes must be UTF-8 (the charset browsers send
/// for a UTF-8 page, and the one RFC 7578 §5.1 recommends).
async fn multipart_value(
    body: impl Iterator<Item = Bytes> + Send,
    boundary: &str,
    field: &str,
) -> Result<String, FormError> {
    let stream = futures_util::stream::iter(body.map(Ok::<_, std::convert::Infallible>));
    let mut parts = multer::Multipart::new(stream, boundary);
    let mut found = None;
    while let Some(part) = parts.next_field().await.map_err(FormError::Multipart)? {
        if part.name() != Some(field) {
            continue;
        }
        if found.is_some() {
            return Err(FormError::Repeated);
        }
        let bytes = part.bytes().await.map_err(FormError::Multipart)?;
        found = Some(String::from_utf8(bytes.to_vec()).map_err(|_| FormError::Encoding)?);
    }
    found.ok_or(FormError::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn url(body: &str) -> Result<String, FormError> {
        urlencoded_value(body.as_bytes(), "username")
    }

    #[test]
    fn s8_4a_urlencoded_takes_the_one_user_field() {
        assert_eq!(url("username=alice&password=wonderland").unwrap(), "alice");
        assert_eq!(url("password=x&username=a+b%40c").unwrap(), "a b@c");
        assert_eq!(url("user%6eame=alice&password=").unwrap(), "alice");
        assert_eq!(url("&&username=&password=x").unwrap(), "");
        assert_eq!(url("username=caf%C3%A9").unwrap(), "café");
        assert!(matches!(url("user=alice"), Err(FormError::Missing)));
        assert!(matches!(url("username"), Ok(v) if v.is_empty()));
        assert!(matches!(
            url("username=alice&username=mallory"),
            Err(FormError::Repeated)
        ));
        assert!(matches!(url("username=%ZZ"), Err(FormError::Encoding)));
        assert!(matches!(url("username=%FF"), Err(FormError::Encoding)));
    }

    #[test]
    fn s8_4a_form_kinds() {
        let kind = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            form_kind(&h)
        };
        assert_eq!(
            kind("application/x-www-form-urlencoded; charset=UTF-8"),
            Some(FormKind::UrlEncoded)
        );
        assert_eq!(
            kind("Multipart/Form-Data; boundary=AaB03x"),
            Some(FormKind::Multipart("AaB03x".into()))
        );
        assert_eq!(kind("multipart/form-data"), None);
        assert_eq!(kind("application/json"), None);
        assert_eq!(kind("text/plain"), None);
    }

    /// RFC 7578 §4.2's example, with a password part and a file part.
    const RFC7578: &str = "--AaB03x\r\n\
        content-disposition: form-data; name=\"field1\"\r\n\
        content-type: text/plain;charset=UTF-8\r\n\
        content-transfer-encoding: quoted-printable\r\n\r\n\
        Joe owes =E2=82=AC100.\r\n\
        --AaB03x\r\n\
        Content-Disposition: form-data; name=\"username\"\r\n\r\n\
        alice\r\n\
        --AaB03x\r\n\
        Content-Disposition: form-data; name=\"password\"\r\n\r\n\
        wonderland\r\n\
        --AaB03x\r\n\
        Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\
        Content-Type: text/plain\r\n\r\n\
        username=mallory\r\n\
        --AaB03x--\r\n";

    #[test]
    fn s8_4a_multipart_takes_the_one_user_field() {
        let mp = |body: &str, field: &str| {
            run(field_value(
                &FormKind::Multipart("AaB03x".into()),
                body.as_bytes(),
                field,
            ))
        };
        assert_eq!(mp(RFC7578, "username").unwrap(), "alice");
        assert_eq!(mp(RFC7578, "field1").unwrap(), "Joe owes =E2=82=AC100.");
        assert!(matches!(mp(RFC7578, "email"), Err(FormError::Missing)));
        let twice = RFC7578.replace("name=\"password\"", "name=\"username\"");
        assert!(matches!(mp(&twice, "username"), Err(FormError::Repeated)));
        let truncated = &RFC7578[..RFC7578.len() / 2];
        assert!(mp(truncated, "password").is_err());
        assert!(mp("not multipart at all", "username").is_err());
    }
}
