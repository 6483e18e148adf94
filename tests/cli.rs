//! The command line (SPEC §2): `check` (errors, and warnings for keys whose
//! feature is not built; a `#:schema` directive is a comment), `gen-secret`,
//! `completions`, `man`, the hidden `config-reference`, and the first-run
//! self-signed certificate with its renewal at start and reload.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use cloakroom::tls::selfsigned::{self, BACKDATE, LIFETIME, ORGANISATION};
use support::*;

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
    assert_eq!(stderr, "", "no errors and no warnings");
}

/// The fenced `toml` blocks of README.md between `heading` and the next
/// heading of the same or a higher level.
fn readme_toml_blocks(heading: &str) -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let level = heading.split(' ').next().unwrap();
    let mut lines = readme.lines().skip_while(|l| *l != heading);
    assert!(lines.next().is_some(), "README.md has no {heading:?}");
    let (mut blocks, mut open) = (Vec::new(), None::<String>);
    for line in lines {
        if open.is_none()
            && line.starts_with('#')
            && line.split(' ').next().unwrap().len() <= level.len()
        {
            break;
        }
        match (&mut open, line) {
            (None, "```toml") => open = Some(String::new()),
            (Some(_), "```") => blocks.push(open.take().unwrap()),
            (Some(text), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_shipped_config_passes_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "proxy.toml",
        "contrib/proxy.toml",
        "contrib/container/proxy.toml",
        "examples/compose/proxy.toml",
    ] {
        let (code, stderr) = check(root, file);
        assert_eq!(code, 0, "{file}: {stderr}");
        assert_eq!(stderr, "", "{file}: no errors and no warnings");
    }
    // README examples that are whole configs (the Flask section's run in
    // front of the app in tests/readme_examples.rs).
    let blocks = readme_toml_blocks("## Running as a container");
    assert!(!blocks.is_empty());
    let dir = tempfile::tempdir().unwrap();
    for (i, block) in blocks.iter().enumerate() {
        let name = format!("container-{i}.toml");
        std::fs::write(dir.path().join(&name), block).unwrap();
        let (code, stderr) = check(dir.path(), &name);
        assert_eq!(code, 0, "README block {i}: {stderr}\n{block}");
    }
}

const ROUTE: &str = "\n[[route]]\nupstream = \"http://127.0.0.1:1\"\n";

#[test]
fn s3_check_refuses_an_unknown_provider_naming_the_five() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[auth]\nprovider = \"ldap\"\n{ROUTE}");
    std::fs::write(dir.path().join("ldap.toml"), text).unwrap();
    let (code, stderr) = check(dir.path(), "ldap.toml");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("ldap.toml:2: auth.provider: \"ldap\" is not valid")
            && stderr.contains("\"none\", \"upstream\", \"local\", \"oidc\", \"form\""),
        "{stderr}"
    );
}

#[test]
fn s3_check_warns_about_a_key_with_no_effect_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[store]\nbackend = \"memory\"\nkey_prefix = \"app:\"\n[auth]\nusers_file = \"u.toml\"\noidc_issuer = \"https://id.example\"\n{ROUTE}"
    );
    std::fs::write(dir.path().join("store.toml"), text).unwrap();
    let (code, stderr) = check(dir.path(), "store.toml");
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    // Keys of a backend and of providers not chosen.
    assert!(
        lines[0].starts_with("warning: store.toml:3: store.key_prefix: has no effect: it is read only with store.backend = \"redis\""),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("warning: store.toml:5: auth.users_file: has no effect: it is read only with auth.provider = \"local\""),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with("warning: store.toml:6: auth.oidc_issuer: has no effect: it is read only with auth.provider = \"oidc\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn s3_the_proxy_logs_warnings_at_start() {
    let config = ProxyConfig::new()
        .route("http://127.0.0.1:1", "")
        .raw("[auth]\noidc_issuer = \"https://id.example\"");
    let mut proxy = TestProxy::start(&config).await;
    let line = proxy
        .wait_log(5, |l| {
            l["level"] == "WARN" && l["key"] == "auth.oidc_issuer"
        })
        .await
        .expect("a warning naming auth.oidc_issuer");
    assert!(
        line["file"].as_str().unwrap().ends_with("proxy.toml"),
        "{line}"
    );
    assert!(line["line"].as_u64().unwrap() > 0, "{line}");
    let warning = line["warning"].as_str().unwrap();
    assert!(warning.starts_with("has no effect: "), "{line}");
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

#[test]
fn s2_man_prints_one_page_naming_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(&["man"], dir.path());
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH cloakroom 1"), "{page}");
    for command in ["check", "gen\\-secret", "healthcheck", "completions", "man"] {
        assert!(
            page.contains(&format!("\\fBcloakroom {command}\\fR")),
            "{command}: {page}"
        );
    }
    assert!(
        page.contains(".SH SIGNALS") && page.contains("SIGHUP"),
        "{page}"
    );
    assert!(
        !page.contains("config\\-reference"),
        "hidden commands stay out"
    );
}

#[test]
fn config_reference_runs_but_is_hidden_from_help() {
    let dir = tempfile::tempdir().unwrap();
    let help = run_cli(&["--help"], dir.path());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("check") && !help.contains("config-reference"),
        "{help}"
    );

    let md = run_cli(&["config-reference"], dir.path());
    assert!(md.status.success());
    let md = String::from_utf8(md.stdout).unwrap();
    assert!(
        md.contains("| `listen` | string | `\"0.0.0.0:8443\"` | restart |"),
        "{md}"
    );
    assert!(
        md.contains("| `idle_timeout` | duration | `\"30m\"` | applies |"),
        "{md}"
    );

    let schema = run_cli(&["config-reference", "--schema"], dir.path());
    assert!(schema.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(
        schema["properties"]["store"]["properties"]["backend"]["enum"],
        serde_json::json!(["embedded", "redis", "memory"])
    );
}

#[test]
fn s3_check_accepts_a_schema_directive_on_the_first_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("#:schema ./docs/proxy.schema.json\n{ROUTE}");
    std::fs::write(dir.path().join("proxy.toml"), text).unwrap();
    let (code, stderr) = check(dir.path(), "proxy.toml");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, "");
}

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn routed() -> ProxyConfig {
    ProxyConfig::new().route("http://127.0.0.1:1", "")
}

fn cert_der(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path)
        .unwrap()
        .as_ref()
        .to_vec()
}

fn holds(der: &[u8], text: &str) -> bool {
    der.windows(text.len()).any(|w| w == text.as_bytes())
}

fn key_mode(proxy: &TestProxy) -> u32 {
    let meta = std::fs::metadata(proxy.path("certs/key.pem")).unwrap();
    meta.permissions().mode() & 0o777
}

/// A certificate and key cloakroom made at `made`, as PEM.
fn own_cert_made(made: SystemTime) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    selfsigned::write(&cert, &key, made).unwrap();
    (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())
}

/// An operator's self-signed localhost certificate ending `not_after`.
fn operator_cert(not_after: time::OffsetDateTime) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Example Operations");
    params.not_before = not_after - time::Duration::days(90);
    params.not_after = not_after;
    let key = rcgen::KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

/// Asserts the certificate at `path` is cloakroom's and fresh: made between
/// `from` and `to`, valid for `LIFETIME` from then.
fn assert_fresh(path: &Path, from: SystemTime, to: SystemTime) {
    let own = selfsigned::read(path).expect("a certificate cloakroom made");
    // Certificates carry whole seconds.
    let made = own.not_before + BACKDATE;
    assert!(
        made + Duration::from_secs(1) > from && made <= to,
        "made at {made:?}, not between {from:?} and {to:?}"
    );
    let lifetime = own.not_after.duration_since(own.not_before).unwrap();
    assert_eq!(lifetime, BACKDATE + LIFETIME);
}

async fn wait_replaced_warning(proxy: &mut TestProxy) {
    proxy
        .wait_log(5, |l| {
            l["level"] == "WARN"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("replaced the self-signed certificate"))
        })
        .await
        .expect("the renewal is logged as a warning");
}

#[tokio::test]
async fn s2_first_run_generates_a_localhost_certificate_for_90_days() {
    let before = SystemTime::now();
    let proxy = TestProxy::start(&routed()).await;
    let after = SystemTime::now();

    assert_fresh(&proxy.cert_path(), before, after);
    let der = cert_der(&proxy.cert_path());
    assert!(holds(&der, ORGANISATION) && holds(&der, "localhost"));
    assert!(!holds(&der, "rcgen self signed cert"));
    assert_eq!(key_mode(&proxy), 0o600);
    // A client that checks validity at the current time accepts it.
    let tls = proxy.tls(&[b"http/1.1"]).await;
    assert_eq!(peer_cert(&tls), der);
}

#[tokio::test]
async fn s2_a_restart_or_reload_replaces_cloakrooms_certificate_near_its_end() {
    // Made 70 days ago: 20 days left, inside the 30-day window.
    let (cert, key) = own_cert_made(SystemTime::now() - 70 * DAY);
    let planted = routed()
        .file("certs/cert.pem", cert.clone())
        .file("certs/key.pem", key);
    let before = SystemTime::now();
    let mut proxy = TestProxy::start(&planted).await;
    assert_fresh(&proxy.cert_path(), before, SystemTime::now());
    assert_eq!(key_mode(&proxy), 0o600);
    wait_replaced_warning(&mut proxy).await;
    let tls = proxy.tls(&[b"http/1.1"]).await;
    assert_eq!(peer_cert(&tls), cert_der(&proxy.cert_path()));

    // The same on SIGHUP, with one already expired.
    let (cert, key) = (proxy.cert_path(), proxy.path("certs/key.pem"));
    selfsigned::write(&cert, &key, SystemTime::now() - 100 * DAY).unwrap();
    let skip = proxy.logs().len();
    let before = SystemTime::now();
    proxy.signal("HUP");
    proxy
        .wait_log_after(skip, 10, |l| l["message"] == "configuration reloaded")
        .await
        .expect("the reload succeeds");
    assert_fresh(&cert, before, SystemTime::now());
    let tls = proxy.tls(&[b"http/1.1"]).await;
    assert_eq!(peer_cert(&tls), cert_der(&cert));
}

#[tokio::test]
async fn s2_an_operators_certificate_is_never_replaced() {
    let now = time::OffsetDateTime::now_utc();
    let (generic, generic_key) = self_signed(&["localhost"]);
    let expiring = operator_cert(now + time::Duration::days(10));
    let expired = operator_cert(now - time::Duration::days(1));
    for (cert, key) in [(generic, generic_key), expiring, expired] {
        let planted = routed()
            .file("certs/cert.pem", cert.clone())
            .file("certs/key.pem", key.clone());
        let proxy = TestProxy::start(&planted).await;
        assert_eq!(std::fs::read_to_string(proxy.cert_path()).unwrap(), cert);
        let key_now = std::fs::read_to_string(proxy.path("certs/key.pem")).unwrap();
        assert_eq!(key_now, key);
        assert!(selfsigned::read(&proxy.cert_path()).is_none());
    }
}
