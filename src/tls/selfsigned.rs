//! First-run convenience: a self-signed certificate for `localhost`, written
//! where `tls.cert`/`tls.key` point (the key with mode 0600), and replaced
//! when it nears its end.
//!
//! Contract:
//! - **What is generated**: subject and issuer `CN=localhost, O=cloakroom
//!   development certificate` ([`ORGANISATION`]), SANs `localhost`,
//!   `127.0.0.1` and `::1`, extended key usage serverAuth, an ECDSA P-256
//!   key; valid from [`BACKDATE`] before now for [`LIFETIME`].
//! - **Which certificate is ours**: one whose issuer equals its subject and
//!   whose subject carries the organisation [`ORGANISATION`]. Only ours is
//!   ever replaced; any other certificate at that path, expired or not, is
//!   the operator's and is left alone.
//! - **When ours is replaced**: when fewer than [`RENEW_WITHIN`] are left
//!   before its notAfter, or it has passed. The check runs when the proxy
//!   starts and on every reload, not on a timer: a proxy left running for
//!   more than `LIFETIME - RENEW_WITHIN` with no reload serves the
//!   certificate until it expires.
//! - **How it is read**: the first PEM block, through [`super::der`]
//!   (issuer, validity and subject out of `tbsCertificate`, RFC 5280 §4.1).
//!   Nothing is verified: the answer only decides whether cloakroom may
//!   overwrite a file it wrote itself, and anything unreadable counts as not
//!   ours.
//! - **How it is written**: key and certificate each to a fresh file, then
//!   renamed over the old ones, key first. The certificate is the commit
//!   point: a crash between the two renames leaves our old, due certificate,
//!   which the next start replaces again with a matching key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::der::{has_organisation, tbs_fields};
use super::TlsError;
use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The organisation in the subject that marks a certificate as cloakroom's.
pub const ORGANISATION: &str = "cloakroom development certificate";

const NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// 90 days: the lifetime Let's Encrypt issues, which scanners (sslyze,
/// testssl.sh) accept, well inside the 398 days browsers allow; long enough
/// that a proxy restarted or reloaded now and then never serves it expired.
pub const LIFETIME: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// Replaced when fewer than 30 days are left (certbot's default window), so
/// a month without a restart or reload still finds it valid.
pub const RENEW_WITHIN: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// notBefore is set an hour back (as Let's Encrypt does) so a client whose
/// clock runs a little behind does not see a certificate "not yet valid".
pub const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// The validity of a certificate cloakroom generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnCert {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl OwnCert {
    /// True when fewer than [`RENEW_WITHIN`] are left at `now`, or none.
    pub fn renewal_due(&self, now: SystemTime) -> bool {
        match now.checked_add(RENEW_WITHIN) {
            Some(limit) => self.not_after < limit,
            None => true,
        }
    }
}

/// A fresh certificate and key, PEM, valid from `now - BACKDATE`.
pub(super) fn build(now: SystemTime) -> Result<(String, String), rcgen::Error> {
    let mut params = CertificateParams::new(NAMES.map(String::from).to_vec())?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, "localhost");
    subject.push(DnType::OrganizationName, ORGANISATION);
    params.distinguished_name = subject;
    // No keyUsage: OpenSSL refuses a self-signed certificate as its own
    // trust anchor (`curl --cacert`) when keyUsage lacks keyCertSign.
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now.checked_sub(BACKDATE).unwrap_or(now).into();
    params.not_after = (now + LIFETIME).into();
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Generates a certificate valid from `now` and writes it and its key. Both
/// are written in full beside their targets before either is renamed into
/// place, so a failure to write (permissions, a full disk) leaves the old
/// pair as it was.
pub fn write(cert: &Path, key: &Path, now: SystemTime) -> Result<(), TlsError> {
    let fail = |e: &dyn std::fmt::Display| TlsError::SelfSigned {
        path: cert.to_path_buf(),
        reason: e.to_string(),
    };
    let (cert_pem, key_pem) = build(now).map_err(|e| fail(&e))?;
    for p in [cert, key] {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        }
    }
    let key_new = stage(key, key_pem.as_bytes(), 0o600).map_err(|e| fail(&e))?;
    let cert_new = stage(cert, cert_pem.as_bytes(), 0o644).map_err(|e| {
        let _ = fs::remove_file(&key_new);
        fail(&e)
    })?;
    fs::rename(&key_new, key).map_err(|e| fail(&e))?;
    fs::rename(&cert_new, cert).map_err(|e| fail(&e))
}

/// Writes `data` to a new file beside `path` (`NAME.cloakroom-new`, created
/// with `mode` whatever the old file had) and returns its path.
fn stage(path: &Path, data: &[u8], mode: u32) -> std::io::Result<PathBuf> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".cloakroom-new");
    let new = path.with_file_name(name);
    match fs::remove_file(&new) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&new)?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(new)
}

/// The validity of the certificate at `path` when cloakroom generated it;
/// `None` for anyone else's certificate or a file that cannot be read.
pub fn read(path: &Path) -> Option<OwnCert> {
    let pem = fs::read(path).ok()?;
    let first = CertificateDer::pem_slice_iter(&pem).next()?.ok()?;
    own_cert(first.as_ref())
}

/// [`read`] on DER.
pub(super) fn own_cert(der: &[u8]) -> Option<OwnCert> {
    let fields = tbs_fields(der).ok()?;
    let ours = fields.issuer == fields.subject && has_organisation(&fields.subject, ORGANISATION);
    ours.then_some(OwnCert {
        not_before: fields.not_before,
        not_after: fields.not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    /// A fixed instant (2026-01-01T00:00:00Z) so expectations are exact.
    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    #[test]
    fn lifetime_is_backdated_an_hour_and_lasts_90_days() {
        let (cert, _) = build(t0()).unwrap();
        let own = own_cert(&der(&cert)).expect("recognised as ours");
        assert_eq!(own.not_before, t0() - BACKDATE);
        assert_eq!(own.not_after, t0() + LIFETIME);
        assert_eq!(LIFETIME, 90 * DAY);
    }

    #[test]
    fn subject_names_localhost_and_cloakroom_not_rcgen() {
        let (cert, _) = build(t0()).unwrap();
        let der = der(&cert);
        let fields = tbs_fields(&der).unwrap();
        assert!(has_organisation(&fields.subject, ORGANISATION));
        let holds = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
        assert!(holds(b"localhost"));
        assert!(holds(&[127, 0, 0, 1]), "IP SAN 127.0.0.1");
        assert!(!holds(b"rcgen self signed cert"));
    }

    #[test]
    fn a_foreign_certificate_is_not_ours() {
        // rcgen's defaults: "rcgen self signed cert", 1975 to 4096.
        let foreign = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        assert_eq!(own_cert(foreign.cert.der()), None);

        // Same organisation, but issued by someone else: not self-issued.
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Operator CA");
        let ca_key = KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(vec!["localhost".into()]).unwrap();
        leaf.distinguished_name = DistinguishedName::new();
        leaf.distinguished_name
            .push(DnType::OrganizationName, ORGANISATION);
        let leaf = leaf
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap();
        assert_eq!(own_cert(leaf.der()), None);

        assert_eq!(own_cert(b"not DER"), None);
    }

    #[test]
    fn generalized_time_is_read_too() {
        // rcgen writes dates from 2050 on as GeneralizedTime (RFC 5280).
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_600_000_000); // 2052
        let (cert, _) = build(now).unwrap();
        assert_eq!(own_cert(&der(&cert)).unwrap().not_after, now + LIFETIME);
    }

    #[test]
    fn renewal_is_due_inside_the_last_30_days() {
        let own = OwnCert {
            not_before: t0(),
            not_after: t0() + LIFETIME,
        };
        assert!(!own.renewal_due(t0()));
        assert!(!own.renewal_due(t0() + 59 * DAY));
        assert!(!own.renewal_due(t0() + 60 * DAY));
        assert!(own.renewal_due(t0() + 60 * DAY + Duration::from_secs(1)));
        assert!(own.renewal_due(t0() + 89 * DAY));
        assert!(own.renewal_due(t0() + 400 * DAY), "expired");
    }

    #[test]
    fn write_replaces_both_files_and_keeps_the_key_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c/cert.pem"), dir.path().join("c/key.pem"));
        write(&cert, &key, t0()).unwrap();
        let first = read(&cert).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        write(&cert, &key, t0() + DAY).unwrap();
        assert_eq!(read(&cert).unwrap().not_after, first.not_after + DAY);
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path().join("c"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
        let pair = super::super::load_certified_key(&cert, &key);
        assert!(pair.is_ok(), "the key matches the certificate");
    }
}
