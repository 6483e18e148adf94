//! The command line (SPEC §2): `check`, `gen-secret`, `completions`.

mod support;

use base64::Engine;

use support::run_cli;

fn check(dir: &std::path::Path, file: &str) -> (i32, String) {
    let out = run_cli(&["check", "--config", file], dir);
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn s2_check_accepts_the_shipped_proxy_toml() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, stderr) = check(dir, "proxy.toml");
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn s2_check_names_file_line_and_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("unknown.toml", "[server]\nlisten = \"127.0.0.1:0\"\nbogus = 1\n\n[[route]]\nupstream = \"http://127.0.0.1:1\"\n");
    write(
        "values.toml",
        "[server]\nlisten = \"nope\"\nrequest_header_timeout = \"ten seconds\"\n\n[[route]]\nupstream = \"http://127.0.0.1:1\"\n",
    );

    let (code, stderr) = check(dir.path(), "unknown.toml");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unknown.toml:3: server.bogus: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("listen"),
        "the message says what would be valid: {stderr}"
    );

    // Every problem is reported, each on its own line.
    let (code, stderr) = check(dir.path(), "values.toml");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("values.toml:2: server.listen: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("values.toml:3: server.request_header_timeout: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("\"90s\""),
        "a duration error shows a valid example: {stderr}"
    );

    let (code, stderr) = check(dir.path(), "missing.toml");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("missing.toml"), "{stderr}");
}

#[test]
fn s2_gen_secret_prints_a_fresh_32_byte_base64url_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..2)
        .map(|_| {
            let out = run_cli(&["gen-secret"], dir.path());
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        })
        .collect();
    for key in &keys {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(key)
            .unwrap();
        assert_eq!(raw.len(), 32, "{key}");
    }
    assert_ne!(keys[0], keys[1]);
}

#[test]
fn s2_completions_are_generated_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = run_cli(&["completions", shell], dir.path());
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("cloakroom") && text.contains("gen-secret") && text.contains("check"),
            "{shell}"
        );
    }
}
