//! A TLS client (rustls, ring) that trusts the certificates a test names,
//! with HTTP/1.1 and HTTP/2 senders over it and a raw stream for
//! hand-written bytes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::body::Body;

pub type Tls = TlsStream<TcpStream>;

/// Fails the test if `fut` does not finish within `secs`.
pub async fn within<T>(secs: u64, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {secs} s"),
    }
}

/// A client config trusting exactly the certificates in these PEM files.
pub fn client_config(roots: &[&Path], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for path in roots {
        for cert in CertificateDer::pem_file_iter(path).unwrap() {
            store.add(cert.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// TCP connect plus TLS handshake to `addr`, sending `sni` as server name.
pub async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

/// [`tls_connect`] from the loopback address `src` (127.0.0.2, .3 …), for
/// tests of limits per client address.
pub async fn tls_connect_from(
    src: [u8; 4],
    addr: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<Tls> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((std::net::Ipv4Addr::from(src), 0).into())?;
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

/// The DER of the certificate the server presented.
pub fn peer_cert(tls: &Tls) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec()
}

pub type H1 = http1::SendRequest<Body>;
pub type H2 = http2::SendRequest<Body>;

/// HTTP/1.1 over an established TLS stream; the connection task supports
/// upgrades.
pub async fn h1_over(tls: Tls) -> H1 {
    let (sender, conn) = http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender
}

/// HTTP/2 over an established TLS stream (ALPN must have chosen h2).
pub async fn h2_over(tls: Tls) -> H2 {
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN did not choose h2"
    );
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// A response with its body read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub async fn read(resp: http::Response<Incoming>) -> Resp {
        let (parts, body) = resp.into_parts();
        let body = within(30, "reading a response body", body.collect())
            .await
            .unwrap()
            .to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn echo(&self) -> super::Echo {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not an echo ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// Sends on HTTP/1.1 and reads the whole response.
pub async fn send1(sender: &mut H1, req: Request<Body>) -> Resp {
    within(30, "HTTP/1.1 request", sender.ready())
        .await
        .unwrap();
    let resp = within(30, "HTTP/1.1 response", sender.send_request(req))
        .await
        .unwrap();
    Resp::read(resp).await
}

/// Sends on HTTP/2 and reads the whole response.
pub async fn send2(sender: &mut H2, req: Request<Body>) -> Resp {
    within(30, "HTTP/2 request", sender.ready()).await.unwrap();
    let resp = within(30, "HTTP/2 response", sender.send_request(req))
        .await
        .unwrap();
    Resp::read(resp).await
}

/// A GET with `Host: host` for HTTP/1.1.
pub fn get(host: &str, path: &str) -> http::request::Builder {
    Request::get(path).header(http::header::HOST, host)
}

/// Writes raw bytes, then reads until the server closes the connection.
/// Returns what was read and whether the close came within `secs`.
pub async fn exchange(tls: &mut Tls, bytes: &[u8], secs: u64) -> (Vec<u8>, bool) {
    tls.write_all(bytes).await.unwrap();
    tls.flush().await.unwrap();
    read_to_close(tls, secs).await
}

/// Reads until EOF or a read error (a reset counts as closed); `false` in
/// the second place when the connection was still open after `secs`.
pub async fn read_to_close(tls: &mut Tls, secs: u64) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, tls.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status codes of every HTTP/1.x response head in raw bytes.
pub fn statuses(raw: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(raw);
    text.match_indices("HTTP/1.")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}
