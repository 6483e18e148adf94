//! TLS termination: a rustls `ServerConfig` (ring provider, ALPN h2 and
//! http/1.1, the configured minimum version) whose certificate is chosen by
//! SNI. Built whole at start and at every reload, then swapped in; a reload
//! that cannot load its certificates keeps the last good config.

mod selfsigned;
mod sni;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::config::{Tls, TlsVersion};

pub use sni::SniResolver;

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

/// Generates the default certificate when it is missing and allowed to.
/// Returns true when a certificate was generated.
pub fn ensure_default_cert(tls: &Tls) -> Result<bool, TlsError> {
    if tls.self_signed_if_missing && !tls.cert.exists() && !tls.key.exists() {
        selfsigned::generate(&tls.cert, &tls.key)?;
        return Ok(true);
    }
    Ok(false)
}

/// Builds the server config: default certificate plus the SNI table.
pub fn server_config(tls: &Tls) -> Result<Arc<ServerConfig>, TlsError> {
    let default = load_certified_key(&tls.cert, &tls.key)?;
    let mut resolver = SniResolver::new(default);
    for entry in &tls.sni {
        let ck = load_certified_key(&entry.cert, &entry.key)?;
        for host in &entry.hosts {
            resolver.add(host, ck.clone());
        }
    }
    let versions: &[&'static rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
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
