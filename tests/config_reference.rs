//! The generated documents are current: `docs/configuration.md`,
//! `docs/proxy.schema.json` and `docs/cloakroom.1` are what the binary
//! prints now (`cloakroom config-reference [--schema]`, `cloakroom man`).
//! After changing a key, its description or the CLI, regenerate them with
//! `CLOAKROOM_BLESS=1 cargo test --test config_reference`.

use std::path::Path;
use std::process::Command;

const BLESS: &str = "CLOAKROOM_BLESS=1 cargo test --test config_reference";

fn printed(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Compares `file` with what `args` print, or writes it when blessing.
fn current(file: &str, args: &[&str]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let fresh = printed(args);
    if std::env::var_os("CLOAKROOM_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{file} is stale (it differs from `cloakroom {}`); regenerate it with: {BLESS}",
        args.join(" ")
    );
}

#[test]
fn docs_configuration_md_is_current() {
    current("docs/configuration.md", &["config-reference"]);
}

#[test]
fn docs_proxy_schema_json_is_current() {
    current("docs/proxy.schema.json", &["config-reference", "--schema"]);
}

#[test]
fn docs_cloakroom_1_is_current() {
    current("docs/cloakroom.1", &["man"]);
}
