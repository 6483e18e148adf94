//! The relying party's HTTP client: one request per connection to the
//! issuer (discovery, JWKS, token), over rustls with the webpki roots for
//! `https`, plain for a loopback `http` issuer (validated at load). hyper
//! parses the responses; bodies are capped and every step has a deadline.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::OidcError;

/// The largest discovery, JWKS or token response read.
const MAX_BODY: usize = 256 * 1024;
/// Connect, send and read, each request as a whole.
const DEADLINE: Duration = Duration::from_secs(10);

/// TLS for issuers: the webpki roots, ring, TLS 1.2 and 1.3.
pub fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// One request; the status and the body (at most [`MAX_BODY`] bytes).
pub async fn send(
    tls: &Arc<rustls::ClientConfig>,
    method: Method,
    url: &str,
    headers: &[(header::HeaderName, HeaderValue)],
    body: Option<String>,
) -> Result<(StatusCode, Bytes), OidcError> {
    let what = url.to_string();
    tokio::time::timeout(DEADLINE, send_inner(tls, method, url, headers, body))
        .await
        .map_err(|_| OidcError::Http {
            url: what,
            detail: "no answer within 10 s".into(),
        })?
}

async fn send_inner(
    tls: &Arc<rustls::ClientConfig>,
    method: Method,
    url: &str,
    headers: &[(header::HeaderName, HeaderValue)],
    body: Option<String>,
) -> Result<(StatusCode, Bytes), OidcError> {
    let fail = |detail: String| OidcError::Http {
        url: url.to_string(),
        detail,
    };
    let uri: Uri = url.parse().map_err(|_| fail("not a URL".into()))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(fail("not an http(s) URL".into())),
    };
    let authority = uri.authority().ok_or_else(|| fail("no host".into()))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| fail(format!("connect: {e}")))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority.as_str())
        .header(header::ACCEPT, "application/json")
        .header(header::USER_AGENT, "cloakroom");
    for (n, v) in headers {
        req = req.header(n, v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| fail(e.to_string()))?;
    let resp = if https {
        let name = ServerName::try_from(host.to_string()).map_err(|e| fail(e.to_string()))?;
        let io = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| fail(format!("TLS: {e}")))?;
        exchange(TokioIo::new(io), req).await
    } else {
        exchange(TokioIo::new(tcp), req).await
    }
    .map_err(fail)?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| fail(format!("reading the body: {e}")))?
        .to_bytes();
    Ok((status, body))
}

async fn exchange<I>(
    io: I,
    req: Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))
}
