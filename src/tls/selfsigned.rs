//! First-run convenience: a self-signed certificate for `localhost`, written
//! where `tls.cert`/`tls.key` point (the key with mode 0600).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::TlsError;

pub(super) fn generate(cert: &Path, key: &Path) -> Result<(), TlsError> {
    let fail = |reason: String| TlsError::SelfSigned {
        path: cert.to_path_buf(),
        reason,
    };
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let generated = rcgen::generate_simple_self_signed(names).map_err(|e| fail(e.to_string()))?;
    for p in [cert, key] {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        }
    }
    write_file(key, generated.signing_key.serialize_pem().as_bytes(), 0o600)
        .map_err(|e| fail(e.to_string()))?;
    write_file(cert, generated.cert.pem().as_bytes(), 0o644).map_err(|e| fail(e.to_string()))?;
    Ok(())
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}
