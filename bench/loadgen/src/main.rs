//! `cloakroom-loadgen HOST:PORT PATH CONNECTIONS SECONDS full|resume`
//!
//! Keeps CONNECTIONS clients busy for SECONDS, each in a loop of: TCP
//! connect, TLS handshake (ALPN http/1.1, SNI "localhost"), one
//! `GET PATH HTTP/1.1` with `Connection: close`, read until the server
//! closes. `full` disables session resumption (every handshake is a full
//! TLS 1.3 handshake with X25519 and the certificate's signature checked);
//! `resume` shares one session cache, so handshakes after the first resume.
//! The server's certificate chain is not checked against a root (it is a
//! self-signed bench certificate), but its handshake signature is.
//!
//! Prints `requests N`, `errors N`, `seconds S`, `p50_ms X`, `p99_ms Y`;
//! latency is the whole cycle, connect to close. Single-threaded: pin it
//! with taskset.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(msg, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(msg, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn usage() -> ! {
    eprintln!("usage: cloakroom-loadgen HOST:PORT PATH CONNECTIONS SECONDS full|resume");
    std::process::exit(2);
}

async fn one(connector: &TlsConnector, addr: SocketAddr, request: &[u8], buf: &mut Vec<u8>) -> std::io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("valid name");
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(request).await?;
    tls.flush().await?;
    buf.clear();
    // Read until the server closes; a close without close_notify is fine
    // once a response has arrived.
    let mut chunk = [0u8; 4096];
    loop {
        match tls.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    if buf.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other("not a 200 response"))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        usage();
    }
    let addr: SocketAddr = args[1].parse().unwrap_or_else(|_| usage());
    let path = args[2].clone();
    let conns: usize = args[3].parse().unwrap_or_else(|_| usage());
    let secs: f64 = args[4].parse().unwrap_or_else(|_| usage());
    let resume = match args[5].as_str() {
        "full" => false,
        "resume" => true,
        _ => usage(),
    };

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = Resumption::disabled();
    }
    let connector = TlsConnector::from(Arc::new(config));
    let request: Arc<[u8]> =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: cloakroom-loadgen\r\nConnection: close\r\n\r\n")
            .into_bytes()
            .into();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let (lat, errors) = rt.block_on(async {
        let mut tasks = Vec::with_capacity(conns);
        for _ in 0..conns {
            let connector = connector.clone();
            let request = request.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat: Vec<u32> = Vec::new();
                let mut errors = 0u64;
                let mut buf = Vec::with_capacity(1024);
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    match tokio::time::timeout(Duration::from_secs(10), one(&connector, addr, &request, &mut buf)).await {
                        Ok(Ok(())) => lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32),
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await.expect("task");
            all.extend(l);
            errors += e;
        }
        (all, errors)
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut lat = lat;
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i] as f64 / 1000.0
    };
    println!("requests {}", lat.len());
    println!("errors {errors}");
    println!("seconds {elapsed:.3}");
    println!("p50_ms {:.3}", pct(0.50));
    println!("p99_ms {:.3}", pct(0.99));
}
