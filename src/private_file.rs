//! Files only this user may read: keys cloakroom makes for itself (the
//! session signing key, the identity assertion key), created new with mode
//! 0600 and synced before they are used.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Creates `path` (and its directory) holding `contents`, readable by this
/// user only; fails if it exists, so a key is never overwritten.
pub fn create(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}
