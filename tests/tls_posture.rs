//! TLS posture of the running binary: the server's cipher-suite order wins
//! (AES-128-GCM first, as Mozilla's intermediate profile lists them), and
//! sslyze (PyPI, installed into the venv by `scripts/test.sh`) finds
//! nothing wrong but the expected complaints about a self-signed test
//! certificate.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rustls::crypto::ring::cipher_suite::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedCipherSuite};
use serde_json::Value;

use support::*;

/// A client that offers only `suites`, in that order (its preference).
fn client_offering(cert: &Path, suites: &[SupportedCipherSuite]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites.to_vec(),
        ..rustls::crypto::ring::default_provider()
    };
    let config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

async fn negotiated(proxy: &TestProxy, suites: &[SupportedCipherSuite]) -> SupportedCipherSuite {
    let tcp = tokio::net::TcpStream::connect(proxy.https_addr)
        .await
        .unwrap();
    let config = client_offering(&proxy.cert_path(), suites);
    let name = ServerName::try_from("localhost").unwrap();
    let tls = within(
        10,
        "handshake",
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .unwrap();
    tls.get_ref().1.negotiated_cipher_suite().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_cipher_order_wins() {
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &[]).await;
    // TLS 1.3: a client preferring ChaCha20, then AES-256, gets AES-128.
    let got = negotiated(
        &proxy,
        &[
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_AES_128_GCM_SHA256,
        ],
    )
    .await;
    assert_eq!(got.suite(), TLS13_AES_128_GCM_SHA256.suite());
    // TLS 1.2 only (the generated certificate is ECDSA).
    let got = negotiated(
        &proxy,
        &[
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ],
    )
    .await;
    assert_eq!(got.suite(), TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.suite());
    // A client that offers one suite still gets it.
    let got = negotiated(&proxy, &[TLS13_CHACHA20_POLY1305_SHA256]).await;
    assert_eq!(got.suite(), TLS13_CHACHA20_POLY1305_SHA256.suite());
}

fn names(scan: &Value, key: &str) -> Vec<String> {
    scan[key]["result"]["accepted_cipher_suites"]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in the scan"))
        .iter()
        .map(|s| s["cipher_suite"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslyze_finds_only_the_self_signed_certificate() {
    let python = support::flask::python();
    let probe = Command::new(&python).args(["-c", "import sslyze"]).output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "sslyze is missing from {}: scripts/test.sh installs it",
        python.display()
    );
    let up = Upstream::start("app").await;
    let proxy = proxy_to(&up, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("scan.json");
    let target = format!("localhost:{}{{127.0.0.1}}", proxy.https_addr.port());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(["-m", "sslyze", "--json_out"])
            .arg(&json)
            .arg(target)
            .output()
            .map(|o| (o, std::fs::read_to_string(&json)))
    });
    let (out, json) = within(120, "sslyze", out).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let report: Value = serde_json::from_str(&json.unwrap()).unwrap();
    let scan = &report["server_scan_results"][0]["scan_result"];

    // Mozilla "intermediate" compliance: the only finding is the untrusted
    // (self-signed) certificate.
    let findings: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("COMPLIANCE AGAINST"))
        .filter_map(|l| l.trim().strip_prefix("* "))
        .collect();
    assert!(text.contains("COMPLIANCE AGAINST"), "{text}");
    assert!(
        findings.iter().all(|f| f.starts_with("certificate_")),
        "sslyze found more than the test certificate: {findings:?}\n{text}"
    );
    for old in [
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ] {
        assert!(names(scan, old).is_empty(), "{old}: {:?}", names(scan, old));
    }
    let tls12 = names(scan, "tls_1_2_cipher_suites");
    assert!(!tls12.is_empty());
    for suite in &tls12 {
        assert!(
            suite.starts_with("TLS_ECDHE_")
                && (suite.contains("_GCM_") || suite.contains("CHACHA20")),
            "a TLS 1.2 suite without forward secrecy or AEAD: {suite}"
        );
    }
    assert_eq!(names(scan, "tls_1_3_cipher_suites").len(), 3);
    let r = |k: &str| &scan[k]["result"];
    assert_eq!(r("heartbleed")["is_vulnerable_to_heartbleed"], false);
    assert_eq!(
        r("openssl_ccs_injection")["is_vulnerable_to_ccs_injection"],
        false
    );
    assert_eq!(r("tls_compression")["supports_compression"], false);
    assert_eq!(
        r("session_renegotiation")["is_vulnerable_to_client_renegotiation_dos"],
        false
    );
    assert_eq!(r("tls_fallback_scsv")["supports_fallback_scsv"], true);
    assert!(
        r("robot")["robot_result"]
            .as_str()
            .unwrap()
            .starts_with("NOT_VULNERABLE"),
        "{}",
        r("robot")
    );
}
