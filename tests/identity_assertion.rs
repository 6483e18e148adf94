//! SPEC §8.6a: the signed identity assertion, as the upstream receives it,
//! verified by an independent JOSE library (PyJWT, in the test venv)
//! against the keys the proxy serves at `/.cloakroom/jwks.json`.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use http::Method;
use serde_json::Value;
use support::flask::{python, require_modules};
use support::session::*;
use support::{empty, TestProxy};

const HEADER: &str = "x-cloakroom-assertion";

/// Verifies `token` with PyJWT against `jwks` for the given algorithm,
/// audience and issuer; prints `{"header": …, "claims": …}` or exits 1
/// with the library's refusal on stderr.
const VERIFY: &str = r#"
import json, sys, jwt
req = json.load(sys.stdin)
keys = jwt.PyJWKSet.from_dict(req["jwks"])
header = jwt.get_unverified_header(req["token"])
key = next(k for k in keys.keys if k.key_id == header["kid"])
try:
    claims = jwt.decode(req["token"], key, algorithms=[req["alg"]], audience=req["aud"],
                        issuer=req["iss"], leeway=5,
                        options={"require": ["iss", "sub", "aud", "iat", "exp"]})
except jwt.PyJWTError as e:
    print(type(e).__name__, e, file=sys.stderr)
    sys.exit(1)
print(json.dumps({"header": header, "claims": claims}))
"#;

/// `Ok(verified)` or `Err(PyJWT's refusal)`.
fn pyjwt(jwks: &Value, token: &str, alg: &str, aud: &str, iss: &str) -> Result<Value, String> {
    require_modules(&["jwt", "cryptography"]);
    let mut child = Command::new(python())
        .args(["-c", VERIFY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input =
        serde_json::json!({"jwks": jwks, "token": token, "alg": alg, "aud": aud, "iss": iss});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    match out.status.success() {
        true => Ok(serde_json::from_slice(&out.stdout).unwrap()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// The values of `name` among the headers the echo upstream received.
fn received(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap().to_string())
        .collect()
}

/// README.md's example (its first TOML block under the section heading).
fn readme_example() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split_once("### Signed identity assertion\n")
        .expect("README.md has the section")
        .1;
    let block = section.split_once("```toml\n").unwrap().1;
    block.split_once("```").unwrap().0.to_string()
}

/// A proxy with the upstream provider and this `[identity]` table.
async fn proxy(app: &App, identity: &str) -> TestProxy {
    TestProxy::start(&config(app, "", "provider = \"upstream\"", "").raw(identity)).await
}

const ASSERTION: &str = "[identity]\nassertion_header = \"X-Cloakroom-Assertion\"\n";

/// Logs `b` in as alice through the upstream login header.
async fn login(b: &mut Browser) {
    let r = b
        .get(&scripted("/login", &["X-Cloakroom-Login: alice"]))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A request carrying spoofed assertions in two spellings; what the
/// upstream received.
async fn spoofed_get(b: &mut Browser) -> Value {
    let req = b
        .request(Method::GET, "/whoami")
        .header(raw_name("X-Cloakroom-Assertion"), "forged.by.client")
        .header(raw_name("x_cloakroom_assertion"), "forged.by.client")
        .body(empty())
        .unwrap();
    let r = b.send(req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    json(&r)
}

async fn jwks(b: &mut Browser) -> Value {
    let r = b.get("/.cloakroom/jwks.json").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["cache-control"], "public, max-age=300");
    assert_eq!(r.headers["content-type"], "application/json");
    json(&r)
}

/// Logs in, checks the upstream got exactly the proxy's assertion, and
/// returns what PyJWT verified.
async fn verified_assertion(alg: &str, identity: &str) -> (TestProxy, Value) {
    let app = App::start("app").await;
    let proxy = proxy(&app, identity).await;
    let mut b = Browser::new(&proxy);
    login(&mut b).await;
    let echo = spoofed_get(&mut b).await;
    let tokens = received(&echo, HEADER);
    assert_eq!(tokens.len(), 1, "{echo}");
    assert!(
        received(&echo, "x_cloakroom_assertion").is_empty(),
        "{echo}"
    );
    assert_ne!(tokens[0], "forged.by.client");
    let keys = jwks(&mut b).await;
    let iss = b.origin();
    let v = pyjwt(&keys, &tokens[0], alg, &app.url(), &iss).unwrap();
    assert_eq!(v["header"]["alg"], alg);
    assert_eq!(v["header"]["kid"], keys["keys"][0]["kid"]);
    let c = &v["claims"];
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["aud"], app.url());
    assert_eq!(c["iss"], iss);
    assert_eq!(c["groups"], serde_json::json!([]));
    // The upstream provider names only the user: no email claim.
    assert!(c.get("email").is_none(), "{c}");
    let (iat, exp) = (c["iat"].as_u64().unwrap(), c["exp"].as_u64().unwrap());
    assert!(exp > iat && exp - iat <= 60, "iat {iat} exp {exp}");
    // The verifier really checks: another audience, issuer or algorithm,
    // or a changed byte, is refused.
    let other = pyjwt(&keys, &tokens[0], alg, "http://127.0.0.1:1", &iss);
    assert!(other.unwrap_err().contains("InvalidAudience"));
    let other = pyjwt(&keys, &tokens[0], alg, &app.url(), "https://evil.test");
    assert!(other.unwrap_err().contains("InvalidIssuer"));
    let wrong_alg = if alg == "ES256" { "EdDSA" } else { "ES256" };
    assert!(pyjwt(&keys, &tokens[0], wrong_alg, &app.url(), &iss).is_err());
    let mut tampered = tokens[0].clone();
    let dot = tampered.find('.').unwrap();
    tampered.replace_range(dot + 1..dot + 2, "X");
    assert!(pyjwt(&keys, &tampered, alg, &app.url(), &iss).is_err());
    (proxy, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_6a_es256_assertion_verifies_against_the_served_jwks() {
    // README.md's example, as written.
    let example = readme_example();
    assert!(example.contains("\"ES256\""), "{example}");
    let (proxy, v) = verified_assertion("ES256", &example).await;
    let key = proxy.path("data/assertion-es256.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
    assert!(v["header"]["kid"].as_str().unwrap().len() == 43);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_6a_eddsa_by_config() {
    let (proxy, _) = verified_assertion(
        "EdDSA",
        &format!("{ASSERTION}assertion_algorithm = \"EdDSA\""),
    )
    .await;
    assert!(proxy.path("data/assertion-eddsa.key").exists());
    assert!(!proxy.path("data/assertion-es256.key").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_1_s8_6a_no_identity_no_assertion_and_client_values_never_pass() {
    let app = App::start("app").await;
    let mut proxy = proxy(&app, ASSERTION).await;
    let mut b = Browser::new(&proxy);
    let echo = spoofed_get(&mut b).await;
    assert!(received(&echo, HEADER).is_empty(), "{echo}");
    assert!(
        received(&echo, "x_cloakroom_assertion").is_empty(),
        "{echo}"
    );
    // The key survives a restart: the same kid is served.
    let before = jwks(&mut b).await;
    proxy.restart().await;
    b.follow(&proxy);
    assert_eq!(jwks(&mut b).await, before);
}

#[test]
fn s8_6a_readme_example_passes_check_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[[route]]\nupstream = \"http://127.0.0.1:5000\"\n",
        readme_example()
    );
    std::fs::write(dir.path().join("proxy.toml"), text).unwrap();
    let out = Command::new(support::bin())
        .args(["check", "--config", "proxy.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_6a_jwks_is_not_served_when_the_assertion_is_off() {
    let app = App::start("app").await;
    let proxy = TestProxy::start(&config(&app, "", "provider = \"upstream\"", "")).await;
    let mut b = Browser::new(&proxy);
    assert_eq!(b.get("/.cloakroom/jwks.json").await.status, 404);
    login(&mut b).await;
    let r = b.get("/whoami").await;
    assert!(received(&json(&r), HEADER).is_empty(), "{}", r.text());
    assert!(!proxy.path("data/assertion-es256.key").exists());
}
