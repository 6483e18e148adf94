//! SPEC §8.6, `provider = "oidc"`, against a real OpenID Provider (panva's
//! certified `oidc-provider`, tests/oidc/op.mjs) on loopback: a login
//! through the provider's own login and consent pages reaches the upstream
//! as an identity with groups; a tampered `state`, a replayed code, a
//! wrong `nonce`, a wrong audience, an expired ID token and a callback in
//! another browser are all refused.
//!
//! The negative cases come from the real provider: the nonce by sending
//! the browser to the provider with another nonce than cloakroom asked
//! for; the replayed code by presenting a used code with a fresh state;
//! the audience and the expiry from a second provider instance started in
//! a misbehaving mode (tokens for another client id, or with `exp` before
//! `iat`), signed with its real key.

mod support;

use http::{header, Method};
use support::oidc::*;
use support::session::*;
use support::{empty, ProxyConfig, TestProxy};

struct Setup {
    op: Op,
    app: App,
    proxy: TestProxy,
}

const README_ISSUER: &str = "oidc_issuer = \"https://accounts.example.com\"";

/// README.md's example (the first TOML block of its section), verbatim.
fn readme_example() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split_once("### Single sign-on (provider = \"oidc\")\n")
        .expect("README.md has the section")
        .1;
    let block = section.split_once("```toml\n").unwrap().1;
    block.split_once("```").unwrap().0.to_string()
}

/// The proxy's `[auth]`: README.md's example, pointed at `issuer`.
fn oidc_toml(issuer: &str) -> String {
    let example = readme_example();
    assert!(example.contains(README_ISSUER), "{example}");
    example.replace(README_ISSUER, &format!("oidc_issuer = \"{issuer}\""))
}

#[test]
fn s8_6_readme_example_passes_check_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[[route]]\nupstream = \"http://127.0.0.1:5000\"\n",
        readme_example()
    );
    std::fs::write(dir.path().join("proxy.toml"), text).unwrap();
    let out = std::process::Command::new(support::bin())
        .args(["check", "--config", "proxy.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

async fn setup(mode: &str) -> Setup {
    let port = free_port();
    let op = Op::start(
        mode,
        &format!("https://localhost:{port}/.cloakroom/callback"),
    );
    let app = App::start("app").await;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"\"\n[store]\nbackend = \"memory\"\n\
         {}\n[identity]\nassertion_header = \"X-Cloakroom-Assertion\"\n\
         [[route]]\nupstream = \"{}\"\nauth = \"required\"\n",
        oidc_toml(&op.issuer),
        app.url()
    );
    let config = ProxyConfig::verbatim(&text).env("CLOAKROOM_OIDC_CLIENT_SECRET", SECRET);
    let proxy = TestProxy::start(&config).await;
    assert_eq!(proxy.https_addr.port(), port);
    Setup { op, app, proxy }
}

/// A browser navigation to `/app` and on to the provider: the URL of the
/// provider's authorization endpoint cloakroom sent it to.
async fn start_login(b: &mut Browser) -> String {
    let nav = b
        .request(Method::GET, "/app?x=1")
        .header(header::ACCEPT, "text/html")
        .body(empty())
        .unwrap();
    let r = b.send(nav).await;
    assert_eq!(r.status, 302);
    let login = r.headers[header::LOCATION].to_str().unwrap().to_string();
    assert_eq!(login, "/.cloakroom/login?rd=/app%3Fx%3D1");
    let r = b.get(&login).await;
    assert_eq!(r.status, 302, "{}", r.text());
    assert!(b.session().is_some(), "the login is bound to a session");
    r.headers[header::LOCATION].to_str().unwrap().to_string()
}

/// What the browser's path for a callback URL the provider redirected to.
fn local(callback: &str, b: &Browser) -> String {
    let origin = b.origin();
    callback.strip_prefix(&origin).unwrap().to_string()
}

async fn authenticated(b: &mut Browser) -> bool {
    let r = b.get("/.cloakroom/session").await;
    json(&r)["authenticated"].as_bool().unwrap()
}

/// A complete login as `user`: the callback's answer.
async fn login(s: &Setup, b: &mut Browser, user: &str) -> (String, support::Resp) {
    let auth = start_login(b).await;
    let callback = OpBrowser::default().login(&s.op, &auth, user).await;
    let r = b.get(&local(&callback, b)).await;
    (callback, r)
}

fn received(echo: &serde_json::Value, name: &str) -> Option<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == name)
        .map(|h| h[1].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_6_login_at_the_provider_reaches_the_upstream_with_groups() {
    let s = setup("normal").await;
    let mut b = Browser::new(&s.proxy);
    let auth = start_login(&mut b).await;
    assert!(
        auth.starts_with(&format!("{}/auth?", s.op.issuer)),
        "{auth}"
    );
    assert_eq!(query_value(&auth, "code_challenge_method"), Some("S256"));
    assert_eq!(query_value(&auth, "client_id"), Some("cloakroom"));
    for p in ["state", "nonce", "code_challenge"] {
        assert_eq!(query_value(&auth, p).map(str::len), Some(43), "{p}");
    }
    let pre_login = b.session().unwrap();
    let callback = OpBrowser::default().login(&s.op, &auth, "alice").await;
    assert!(callback.contains("code="), "{callback}");
    let r = b.get(&local(&callback, &b)).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.headers[header::LOCATION], "/app?x=1");
    // §4.6: the login rotated the session.
    assert_ne!(b.session().unwrap(), pre_login);
    let r = b.get("/app").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = json(&r);
    assert_eq!(
        received(&echo, "x-forwarded-user").as_deref(),
        Some("alice")
    );
    assert_eq!(
        received(&echo, "x-forwarded-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        received(&echo, "x-forwarded-groups").as_deref(),
        Some("admin,dev")
    );
    // §8.6a: the signed assertion carries the provider's email and groups
    // (its signature is checked by tests/identity_assertion.rs).
    let token = received(&echo, "x-cloakroom-assertion").unwrap();
    let claims = token.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["groups"], serde_json::json!(["admin", "dev"]));
    let who = json(&b.get("/.cloakroom/session").await);
    assert_eq!(who["groups"], serde_json::json!(["admin", "dev"]));
    assert_eq!(audits(&s.proxy, "login").len(), 1);
    assert_eq!(
        s.app.hits(),
        1,
        "the unauthenticated navigation never reached it"
    );

    // The same callback again: its state was used.
    b.set_session(&pre_login);
    let r = b.get(&local(&callback, &b)).await;
    assert_eq!(r.status, 403);

    // Logout ends cloakroom's session and goes on to the provider's.
    let mut b2 = Browser::new(&s.proxy);
    let (_, r) = login(&s, &mut b2, "bob").await;
    assert_eq!(r.status, 303);
    let out = b2
        .request(Method::POST, "/.cloakroom/logout")
        .header(header::ACCEPT, "text/html")
        .body(empty())
        .unwrap();
    let r = b2.send(out).await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.headers[header::LOCATION],
        format!("{}/session/end?client_id=cloakroom", s.op.issuer).as_str()
    );
    assert!(clears_session(&r));
    assert!(!authenticated(&mut b2).await);
    // Neither the client secret nor any code reached the logs.
    let logs = format!("{:?}{}", s.proxy.logs(), s.proxy.stderr());
    assert!(!logs.contains(SECRET));
    assert!(!logs.contains(query_value(&callback, "code").unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_6_tampered_state_and_another_browser_are_refused() {
    let mut s = setup("normal").await;
    let mut b = Browser::new(&s.proxy);
    let auth = start_login(&mut b).await;
    let callback = OpBrowser::default().login(&s.op, &auth, "alice").await;
    let state = query_value(&callback, "state").unwrap();
    let mut tampered = state.to_string();
    tampered.replace_range(0..1, if state.starts_with('A') { "B" } else { "A" });
    let r = b
        .get(&local(&with_query_value(&callback, "state", &tampered), &b))
        .await;
    assert_eq!(r.status, 403);
    assert!(!authenticated(&mut b).await);
    let unknown = |l: &serde_json::Value| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown, used or expired state"))
    };
    assert!(s.proxy.wait_log(5, unknown).await.is_some());
    // The right state in a browser that did not start the login (login
    // CSRF): refused, and the state is spent.
    let mut other = Browser::new(&s.proxy);
    let r = other.get(&local(&callback, &b)).await;
    assert_eq!(r.status, 403);
    assert!(!authenticated(&mut other).await);
    let elsewhere = |l: &serde_json::Value| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("not the session that started"))
    };
    assert!(s.proxy.wait_log(5, elsewhere).await.is_some());
    let r = b.get(&local(&callback, &b)).await;
    assert_eq!(r.status, 403, "single use, whatever the outcome");
    assert!(!authenticated(&mut b).await);
    assert_eq!(s.app.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_6_replayed_code_is_refused() {
    let mut s = setup("normal").await;
    let mut first = Browser::new(&s.proxy);
    let (callback, r) = login(&s, &mut first, "alice").await;
    assert_eq!(r.status, 303, "{}", r.text());
    // A fresh login's state, with the code already used.
    let mut b = Browser::new(&s.proxy);
    let auth = start_login(&mut b).await;
    let replay = with_query_value(&callback, "state", query_value(&auth, "state").unwrap());
    let r = b.get(&local(&replay, &b)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(!authenticated(&mut b).await);
    // Refused by the provider's token endpoint, not by the state check.
    let line = s
        .proxy
        .wait_log(5, |l| l["message"] == "OIDC login refused")
        .await
        .expect("the refusal is logged");
    assert!(
        line["error"].as_str().unwrap().contains("refused the code"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_6_wrong_nonce_is_refused() {
    let mut s = setup("normal").await;
    let mut b = Browser::new(&s.proxy);
    let auth = start_login(&mut b).await;
    // The provider is asked for another nonce; PKCE and state still match.
    let other = with_query_value(&auth, "nonce", "another-nonce-the-proxy-never-made");
    let callback = OpBrowser::default().login(&s.op, &other, "alice").await;
    let r = b.get(&local(&callback, &b)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(!authenticated(&mut b).await);
    assert!(s
        .proxy
        .wait_log(5, |l| l["error"]
            .as_str()
            .is_some_and(|e| e.contains("nonce")))
        .await
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_6_wrong_audience_is_refused() {
    let mut s = setup("wrong-aud").await;
    let mut b = Browser::new(&s.proxy);
    let (_, r) = login(&s, &mut b, "alice").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(!authenticated(&mut b).await);
    let line = s
        .proxy
        .wait_log(5, |l| l["message"] == "OIDC login refused")
        .await
        .expect("the refusal is logged");
    assert!(
        line["error"].as_str().unwrap().contains("InvalidAudience"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_6_expired_id_token_is_refused() {
    let mut s = setup("expired").await;
    let mut b = Browser::new(&s.proxy);
    let (_, r) = login(&s, &mut b, "alice").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(!authenticated(&mut b).await);
    let line = s
        .proxy
        .wait_log(5, |l| l["message"] == "OIDC login refused")
        .await
        .expect("the refusal is logged");
    assert!(
        line["error"].as_str().unwrap().contains("ExpiredSignature"),
        "{line}"
    );
}
