//! TLS termination: a rustls `ServerConfig` (ring provider, ALPN h2 and
//! http/1.1, the configured minimum version) whose certificate is chosen by
//! SNI. Built whole at start and at every reload, then swapped in; a reload
//! that cannot load its certificates keeps the last good config. With
//! `tls.self_signed_if_missing`, [`ensure_default_cert`] first writes a
//! localhost certificate when none exists and replaces one cloakroom wrote
//! when it nears its end ([`selfsigned`] has the rules). Each build also
//! reports every configured certificate's notAfter ([`Certificates`]), for
//! `cloakroom_tls_certificate_expiry_timestamp_seconds`.
//!
//! Cipher suites are chosen in the server's order ([`CIPHER_SUITES`]), as
//! Mozilla's "intermediate" profile lists them: AES-128-GCM first in TLS
//! 1.3, then for TLS 1.2 only forward-secret AEAD suites (ECDHE with
//! AES-GCM, then ChaCha20-Poly1305). No CBC, no RSA key exchange, no TLS
//! 1.0/1.1 (rustls has none of them).

mod der;
pub mod selfsigned;
mod sni;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::config::{HostPattern, Tls, TlsVersion};

pub use sni::SniResolver;

/// The suites offered, most preferred first; the server's order wins over
/// the client's. AES-128-GCM costs less than AES-256-GCM on AES-NI hardware
/// for the same forward-secret AEAD guarantee.
pub static CIPHER_SUITES: &[rustls::SupportedCipherSuite] = {
    use rustls::crypto::ring::cipher_suite::*;
    &[
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("cannot read private key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("cannot generate a self-signed certificate into {path}: {reason}")]
    SelfSigned { path: PathBuf, reason: String },
    #[error("rustls rejected the configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Generates the default certificate when it is missing, or replaces it
/// when cloakroom generated it and it expires within
/// [`selfsigned::RENEW_WITHIN`]; an operator's certificate is never touched.
/// Returns true when a certificate was written. Runs at start and on every
/// reload: when nothing is due it costs one small file read.
pub fn ensure_default_cert(tls: &Tls) -> Result<bool, TlsError> {
    ensure_default_cert_at(tls, SystemTime::now())
}

/// [`ensure_default_cert`] as of `now`.
pub fn ensure_default_cert_at(tls: &Tls, now: SystemTime) -> Result<bool, TlsError> {
    if !tls.self_signed_if_missing {
        return Ok(false);
    }
    // Reloads run one at a time today (one signal loop); the lock keeps two
    // writers' key and certificate from pairing up wrongly should that change.
    static WRITING: Mutex<()> = Mutex::new(());
    let _one_writer = WRITING.lock().unwrap_or_else(PoisonError::into_inner);
    match (tls.cert.exists(), tls.key.exists()) {
        (false, false) => selfsigned::write(&tls.cert, &tls.key, now).map(|()| true),
        (true, true) => Ok(renew_if_due(tls, now)),
        // Validation refuses one without the other.
        _ => Ok(false),
    }
}

/// Replaces our own certificate when it is due. A failure is logged, not
/// returned: the current certificate still serves until it expires, and a
/// failed write leaves it in place (see [`selfsigned::write`]).
fn renew_if_due(tls: &Tls, now: SystemTime) -> bool {
    let Some(own) = selfsigned::read(&tls.cert).filter(|own| own.renewal_due(now)) else {
        return false;
    };
    let cert = tls.cert.display();
    let not_after = humantime::format_rfc3339_seconds(own.not_after);
    match selfsigned::write(&tls.cert, &tls.key, now) {
        Ok(()) => {
            tracing::warn!(%cert, %not_after, "replaced the self-signed certificate cloakroom generated: it was within 30 days of its end or past it");
            true
        }
        Err(e) => {
            tracing::error!(%cert, %not_after, error = %e, "cannot replace the self-signed certificate cloakroom generated, which is within 30 days of its end or past it; keeping it");
            false
        }
    }
}

/// A built server config and the notAfter of each certificate in it.
#[derive(Debug)]
pub struct Certificates {
    pub config: Arc<ServerConfig>,
    /// `(name, notAfter)`: `default` for `tls.cert`, then each `[[tls.sni]]`
    /// entry by its first host, in config order. A leaf whose validity
    /// cannot be read is left out.
    pub not_after: Vec<(String, SystemTime)>,
}

/// Builds the server config: default certificate plus the SNI table.
pub fn server_config(tls: &Tls) -> Result<Certificates, TlsError> {
    let default = load_certified_key(&tls.cert, &tls.key)?;
    let mut not_after = Vec::with_capacity(1 + tls.sni.len());
    not_after.extend(leaf_not_after(&default).map(|t| ("default".to_owned(), t)));
    let mut resolver = SniResolver::new(default);
    for entry in &tls.sni {
        let ck = load_certified_key(&entry.cert, &entry.key)?;
        if let (Some(first), Some(t)) = (entry.hosts.first(), leaf_not_after(&ck)) {
            not_after.push((host_label(first), t));
        }
        for host in &entry.hosts {
            resolver.add(host, ck.clone());
        }
    }
    let versions: &[&'static rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: CIPHER_SUITES.to_vec(),
        ..rustls::crypto::ring::default_provider()
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.ignore_client_order = true;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Certificates {
        config: Arc::new(config),
        not_after,
    })
}

/// The notAfter of a chain's leaf (the first certificate of the PEM file).
fn leaf_not_after(ck: &CertifiedKey) -> Option<SystemTime> {
    let leaf = ck.cert.first()?;
    der::tbs_fields(leaf.as_ref()).ok().map(|f| f.not_after)
}

/// An `[[tls.sni]]` host as written in the config.
fn host_label(host: &HostPattern) -> String {
    match host {
        HostPattern::Any => "*".to_owned(),
        HostPattern::Exact(h) => h.clone(),
        HostPattern::Wildcard(suffix) => format!("*{suffix}"),
    }
}

/// Loads a PEM chain and private key into a rustls signing key.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Cert {
            path: cert.to_path_buf(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let signer =
        rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| TlsError::Key {
            path: key.to_path_buf(),
            reason: e.to_string(),
        })?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match().map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        reason: format!("does not match the certificate: {e}"),
    })?;
    Ok(Arc::new(ck))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    fn tls_in(dir: &Path) -> Tls {
        Tls {
            cert: dir.join("certs/cert.pem"),
            key: dir.join("certs/key.pem"),
            self_signed_if_missing: true,
            min_version: TlsVersion::V1_2,
            sni: Vec::new(),
        }
    }

    #[test]
    fn s2_ours_is_replaced_only_inside_the_last_30_days() {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls_in(dir.path());
        let t0 = SystemTime::now();
        assert!(
            ensure_default_cert_at(&tls, t0).unwrap(),
            "missing: generated"
        );
        let first = std::fs::read(&tls.cert).unwrap();
        for days in [0, 1, 59] {
            assert!(!ensure_default_cert_at(&tls, t0 + days * DAY).unwrap());
        }
        assert_eq!(
            std::fs::read(&tls.cert).unwrap(),
            first,
            "not due: untouched"
        );
        assert!(ensure_default_cert_at(&tls, t0 + 61 * DAY).unwrap());
        let renewed = selfsigned::read(&tls.cert).unwrap();
        assert!(renewed.not_after >= t0 + 61 * DAY + selfsigned::LIFETIME - DAY);
        assert!(load_certified_key(&tls.cert, &tls.key).is_ok());
    }

    #[test]
    fn s11_expiry_names_default_and_each_sni_entry_by_its_first_host() {
        let dir = tempfile::tempdir().unwrap();
        let mut tls = tls_in(dir.path());
        let t0 = SystemTime::now();
        ensure_default_cert_at(&tls, t0).unwrap();
        let (cert, key) = (dir.path().join("sni.pem"), dir.path().join("sni.key"));
        selfsigned::write(&cert, &key, t0 + DAY).unwrap();
        tls.sni.push(crate::config::SniCert {
            hosts: vec![
                HostPattern::Wildcard(".example.com".into()),
                HostPattern::Exact("example.com".into()),
            ],
            cert,
            key,
        });
        let built = server_config(&tls).unwrap();
        let names: Vec<_> = built.not_after.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["default", "*.example.com"]);
        let whole = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(
            whole(built.not_after[0].1),
            whole(t0 + selfsigned::LIFETIME)
        );
        assert_eq!(
            whole(built.not_after[1].1),
            whole(t0 + DAY + selfsigned::LIFETIME)
        );
    }

    #[test]
    fn s2_an_operators_certificate_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls_in(dir.path());
        std::fs::create_dir_all(dir.path().join("certs")).unwrap();
        // rcgen's defaults: valid until 4096, but not ours: even far past
        // its end it stays.
        let foreign = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&tls.cert, foreign.cert.pem()).unwrap();
        std::fs::write(&tls.key, foreign.signing_key.serialize_pem()).unwrap();
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(5_000 * 365 * 24 * 60 * 60);
        assert!(!ensure_default_cert_at(&tls, far).unwrap());
        assert_eq!(
            std::fs::read_to_string(&tls.cert).unwrap(),
            foreign.cert.pem()
        );
    }

    #[test]
    fn s2_nothing_is_written_when_self_signed_is_off() {
        let dir = tempfile::tempdir().unwrap();
        let tls = Tls {
            self_signed_if_missing: false,
            ..tls_in(dir.path())
        };
        assert!(!ensure_default_cert_at(&tls, SystemTime::now()).unwrap());
        assert!(!tls.cert.exists());
    }
}
