//! SPEC §4: the session cookie, through the real binary.
//!
//! Sessions are created the way the SPEC says they are: an upstream
//! `Set-Cookie` lands in the jar (§4.5), so [`start_session`] asks the
//! scripted upstream for one.

mod support;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use http::Method;
use support::client::{h1_over, send1, tls_connect};
use support::session::*;
use support::{empty, TestProxy};

/// A 32-byte key, as the secret file holds it (base64url).
const KEY_A: [u8; 32] = [0xa1; 32];
const KEY_B: [u8; 32] = [0xb2; 32];
const KEY_C: [u8; 32] = [0xc3; 32];

async fn proxy_with(app: &App, session: &str, auth: &str) -> TestProxy {
    TestProxy::start(&config(app, session, auth, "")).await
}

/// A proxy whose current key is `KEY_A` (from `secret_file`).
async fn keyed_proxy(app: &App, extra: &str) -> TestProxy {
    let cfg = config(
        app,
        &format!("secret_file = \"secret.key\"\n{extra}"),
        "",
        "",
    )
    .file("secret.key", format!("{}\n", B64.encode(KEY_A)));
    TestProxy::start(&cfg).await
}

/// A browser holding a fresh session whose jar has `a=1`.
async fn start_session(proxy: &TestProxy) -> Browser {
    let mut b = Browser::new(proxy);
    let r = b.get(&scripted("/", &["Set-Cookie: a=1; Path=/"])).await;
    assert_eq!(r.status, 200);
    assert!(b.session().is_some(), "no session cookie: {:?}", r.headers);
    b
}

/// True when the upstream saw the session's jar (`a=1`): the proxy
/// recognised the session.
async fn recognised(b: &mut Browser) -> bool {
    let r = b.get("/").await;
    upstream_cookies(&r).contains(&"a=1".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_1_cookie_value_is_id_dot_mac() {
    let app = App::start("app").await;
    let mut proxy = keyed_proxy(&app, "").await;
    let mut b = start_session(&proxy).await;
    let v = b.session().unwrap();
    let (id, mac) = v.split_once('.').unwrap();
    assert_eq!((id.len(), mac.len()), (43, 43), "{v}");
    let b64url = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    };
    assert!(b64url(id) && b64url(mac), "{v}");
    let raw_id = cookie_id(&v);
    assert_eq!(raw_id.len(), 32);
    // The MAC is HMAC-SHA256(current key, id bytes).
    assert_eq!(sign(&KEY_A, &raw_id), v);

    // Logs carry the handle, never the id or the cookie.
    let created = proxy
        .wait_log(5, |l| l["event"] == "session_created")
        .await
        .expect("session_created audit line");
    assert_eq!(created["session"], handle_of(&v));
    let echo = b.get("/").await;
    assert!(!echo.text().contains(id), "the upstream saw the id");
    let access = proxy.access_logs();
    assert!(access.iter().any(|l| l["session"] == handle_of(&v)));
    let everything = format!("{:?}{}", proxy.logs(), proxy.stderr());
    assert!(!everything.contains(id), "the id reached the logs");
    assert!(!everything.contains(mac), "the MAC reached the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_2_cookie_attributes() {
    let app = App::start("app").await;
    let proxy = proxy_with(&app, "", "").await;
    let mut b = Browser::new(&proxy);
    let r = b.get(&scripted("/", &["Set-Cookie: a=1"])).await;
    let c = session_set_cookie(&r).expect("session cookie");
    let mut names: Vec<&str> = c.attrs.iter().map(|(k, _)| k.as_str()).collect();
    names.sort();
    assert_eq!(names, ["httponly", "path", "samesite", "secure"], "{c:?}");
    assert_eq!(c.attr("path"), Some(Some("/")));
    assert_eq!(c.attr("samesite"), Some(Some("Lax")));

    // A clearing cookie keeps Secure and Path=/ (a __Host- name needs them).
    b.set_session("forged.value");
    let r = b.get("/").await;
    let c = session_set_cookie(&r).expect("clearing cookie");
    assert!(c.value.is_empty() && c.clears(), "{c:?}");
    assert!(
        c.has("secure") && c.attr("path") == Some(Some("/")),
        "{c:?}"
    );
    assert!(!c.has("domain"));

    // persistent: Max-Age is the time left until the absolute timeout.
    let proxy = proxy_with(
        &app,
        "persistent = true\nsame_site = \"strict\"\nabsolute_timeout = \"1h\"",
        "",
    )
    .await;
    let r = Browser::new(&proxy)
        .get(&scripted("/", &["Set-Cookie: a=1"]))
        .await;
    let c = session_set_cookie(&r).expect("session cookie");
    assert_eq!(c.attr("samesite"), Some(Some("Strict")));
    let max_age: u64 = c.attr("max-age").flatten().unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&max_age), "Max-Age={max_age}");
    assert!(!c.has("domain") && !c.has("expires"), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_3_forged_cookie_is_no_cookie_and_cleared() {
    let app = App::start("app").await;
    let mut proxy = keyed_proxy(&app, "").await;
    let mut real = start_session(&proxy).await;
    let v = real.session().unwrap();
    // Every kind of bad cookie: tampered MAC, tampered id, malformed, a
    // valid MAC over an id the store never issued.
    let mut tampered_mac = v.clone().into_bytes();
    let last = tampered_mac.len() - 2;
    tampered_mac[last] = if tampered_mac[last] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let mut tampered_id = v.clone().into_bytes();
    tampered_id[0] = if tampered_id[0] == b'A' { b'B' } else { b'A' };
    let unknown = sign(&KEY_A, &[7u8; 32]);
    let bad = [
        String::from_utf8(tampered_mac).unwrap(),
        String::from_utf8(tampered_id).unwrap(),
        "not-a-session".to_string(),
        format!("{v}x"),
        unknown,
    ];
    for value in &bad {
        let mut b = Browser::new(&proxy);
        b.set_session(value);
        let r = b.get("/").await;
        assert_eq!(r.status, 200, "{value}");
        assert!(clears_session(&r), "{value} not cleared: {:?}", r.headers);
        assert!(upstream_cookies(&r).is_empty(), "{value}: jar leaked");
        assert_eq!(b.session(), None);
    }
    assert!(
        proxy
            .wait_log(5, |l| l["event"] == "forged_cookie")
            .await
            .is_some(),
        "no forged_cookie audit"
    );
    // A bad cookie on a response that makes a session: one Set-Cookie,
    // the new session's, not a clearing one.
    let mut b = Browser::new(&proxy);
    b.set_session("not-a-session");
    let r = b.get(&scripted("/", &["Set-Cookie: n=1"])).await;
    let issued = session_set_cookie(&r).expect("new session cookie");
    assert!(!issued.clears() && !issued.value.is_empty(), "{issued:?}");
    // Forgeries did not harm the real session.
    assert!(recognised(&mut real).await);
}

/// A keep-alive connection repeats its cookie on every request, and the
/// proxy remembers the last value that verified on that connection: the
/// memory must vouch only for that exact value, and never for the session
/// being alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_3_one_connection_repeating_its_cookie_is_checked_every_time() {
    let app = App::start("app").await;
    let proxy = proxy_with(&app, "", "provider = \"upstream\"").await;
    let mut owner = start_session(&proxy).await;
    let v = owner.session().unwrap();
    let tls = tls_connect(proxy.https_addr, "localhost", owner.config.clone())
        .await
        .unwrap();
    let mut conn = h1_over(tls).await;
    let on_conn = |value: &str| {
        let mut b = Browser::new(&proxy);
        b.set_session(value);
        b.request(Method::GET, "/").body(empty()).unwrap()
    };
    let mut tampered = v.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    for round in 0..3 {
        let r = send1(&mut conn, on_conn(&v)).await;
        assert!(
            upstream_cookies(&r).contains(&"a=1".to_string()),
            "round {round}"
        );
        assert!(!clears_session(&r), "round {round}");
    }
    // After the good value, one byte off on the same connection is forged.
    let r = send1(&mut conn, on_conn(&tampered)).await;
    assert!(clears_session(&r), "{:?}", r.headers);
    assert!(upstream_cookies(&r).is_empty());
    let r = send1(&mut conn, on_conn(&v)).await;
    assert!(upstream_cookies(&r).contains(&"a=1".to_string()));

    // The session ends elsewhere; the same connection's next request with
    // the value it just used carries no session.
    owner.get(&scripted("/", &["X-Cloakroom-Logout: 1"])).await;
    let r = send1(&mut conn, on_conn(&v)).await;
    assert!(clears_session(&r), "{:?}", r.headers);
    assert!(upstream_cookies(&r).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_3_several_cookies_one_valid_wins() {
    let app = App::start("app").await;
    let proxy = proxy_with(&app, "", "").await;
    let real = start_session(&proxy).await;
    let v = real.session().unwrap();
    let forged = format!("{}.{}", "A".repeat(43), "B".repeat(43));
    for header in [
        format!("{COOKIE}={forged}; {COOKIE}={v}"),
        format!("{COOKIE}={v}; {COOKIE}={forged}"),
        format!("{COOKIE}=junk; x=1; {COOKIE}={v}"),
    ] {
        let mut b = Browser::new(&proxy);
        let req = b
            .request(Method::GET, "/")
            .header("cookie", &header)
            .body(empty())
            .unwrap();
        let r = b.send(req).await;
        let sent = upstream_cookies(&r);
        assert!(sent.contains(&"a=1".to_string()), "{header}: {sent:?}");
        assert!(
            session_set_cookie(&r).is_none(),
            "{header}: {:?}",
            r.headers
        );
    }
}

/// SPEC §4.4. Keys come from the environment and the memory store forgets
/// everything on restart, so the fallback key is exercised within one run:
/// the proxy signs with `KEY_B` and accepts `KEY_A`; the test takes the id
/// of a cookie the proxy issued and signs it with `KEY_A` itself, which is
/// exactly the cookie an earlier run keyed with `KEY_A` would have issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_4_fallback_key_accepted_and_resigned() {
    let hex = |k: &[u8]| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
    // Names no other test reads, so setting them cannot race anything.
    std::env::set_var("CLOAKROOM_TEST_S4_4_CURRENT", hex(&KEY_B));
    std::env::set_var(
        "CLOAKROOM_TEST_S4_4_FALLBACKS",
        format!("{}, {}", B64.encode([0x55u8; 40]), hex(&KEY_A)),
    );
    let app = App::start("app").await;
    let session = "secret_env = \"CLOAKROOM_TEST_S4_4_CURRENT\"\n\
                   fallback_secrets_env = \"CLOAKROOM_TEST_S4_4_FALLBACKS\"";
    let proxy = proxy_with(&app, session, "").await;
    let mut b = start_session(&proxy).await;
    let current = b.session().unwrap();
    let id = cookie_id(&current);
    assert_eq!(sign(&KEY_B, &id), current, "signed with the current key");

    // Signed with the fallback key: accepted, re-issued under the current.
    b.set_session(&sign(&KEY_A, &id));
    let r = b.get("/").await;
    assert!(upstream_cookies(&r).contains(&"a=1".to_string()));
    let reissued = session_set_cookie(&r).expect("re-signed cookie");
    assert_eq!(reissued.value, current, "same id, current key");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // The current-key cookie needs no re-issue.
    let r = b.get("/").await;
    assert!(session_set_cookie(&r).is_none());

    // A key in neither place (a fallback since removed) is no cookie.
    b.set_session(&sign(&KEY_C, &id));
    let r = b.get("/").await;
    assert!(clears_session(&r));
    assert!(upstream_cookies(&r).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_5_lazy_creation_no_cookie_for_anonymous() {
    let app = App::start("app").await;
    let proxy = proxy_with(&app, "", "").await;
    let mut b = Browser::new(&proxy);
    for path in ["/", "/a/b?c=d", "/missing", "/.cloakroom/session"] {
        let r = b.get(path).await;
        assert!(set_cookies(&r).is_empty(), "{path}: {:?}", r.headers);
    }
    let head = b.request(Method::HEAD, "/").body(empty()).unwrap();
    assert!(set_cookies(&b.send(head).await).is_empty());
    let r = b.post("/form", "x=1").await;
    assert!(set_cookies(&r).is_empty());
    // Give the log a moment, then prove no session was ever stored.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(audits(&proxy, "session_created").is_empty());
    assert_eq!(b.cookies, Vec::<(String, String)>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_5_delete_only_set_cookie_stores_nothing() {
    let app = App::start("app").await;
    let proxy = proxy_with(&app, "", "").await;
    let mut b = Browser::new(&proxy);
    // Not a logout path (§8.7a drops every jar cookie there anyway).
    let r = b
        .get(&scripted(
            "/bye",
            &[
                "Set-Cookie: a=; Max-Age=0; Path=/",
                "Set-Cookie: b=gone; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                "Set-Cookie: c=x; Max-Age=-5",
            ],
        ))
        .await;
    assert_eq!(r.status, 200);
    assert!(set_cookies(&r).is_empty(), "{:?}", r.headers);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(audits(&proxy, "session_created").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_6_login_rotates_old_id_dead() {
    let app = App::start("app").await;
    let proxy = proxy_with(&app, "", "provider = \"upstream\"").await;
    let mut b = start_session(&proxy).await;
    let before = b.session().unwrap();

    let r = b
        .get(&scripted("/login", &["X-Cloakroom-Login: alice"]))
        .await;
    let after = b.session().expect("a session after login");
    assert_ne!(after, before, "login must issue a new id");
    assert_ne!(cookie_id(&after), cookie_id(&before));
    assert_eq!(r.header("cache-control"), Some("no-store"));

    // The old id stopped working at once; the jar moved to the new one.
    let mut old = Browser::new(&proxy);
    old.set_session(&before);
    let r = old.get("/").await;
    assert!(clears_session(&r));
    assert!(upstream_cookies(&r).is_empty());
    assert_eq!(r.echo().one("x-forwarded-user"), None);
    let r = b.get("/").await;
    assert_eq!(r.echo().one("x-forwarded-user"), Some("alice"));
    assert!(upstream_cookies(&r).contains(&"a=1".to_string()));

    // The same user again changes nothing; another user rotates again.
    let r = b
        .get(&scripted("/login", &["X-Cloakroom-Login: alice"]))
        .await;
    assert!(session_set_cookie(&r).is_none(), "{:?}", r.headers);
    assert_eq!(b.session().unwrap(), after);
    b.get(&scripted("/login", &["X-Cloakroom-Login: bob"]))
        .await;
    let third = b.session().unwrap();
    assert_ne!(third, after);
    let r = b.get("/").await;
    assert_eq!(r.echo().one("x-forwarded-user"), Some("bob"));
    let mut second = Browser::new(&proxy);
    second.set_session(&after);
    assert!(clears_session(&second.get("/").await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_7_session_cookie_not_sent_upstream() {
    let app = App::start("app").await;
    let proxy = proxy_with(&app, "", "").await;
    let mut b = start_session(&proxy).await;
    let v = b.session().unwrap();
    b.cookies.push(("theme".into(), "dark".into()));
    let r = b.get("/").await;
    let sent = upstream_cookies(&r);
    assert_eq!(sent, ["a=1", "theme=dark"]);
    assert!(!r.text().contains(&v) && !r.text().contains(v.split('.').next().unwrap()));
    // Not even a cookie that fails verification is forwarded.
    let mut f = Browser::new(&proxy);
    f.cookies.push(("theme".into(), "dark".into()));
    f.cookies.push((COOKIE.into(), "forged.value".into()));
    let r = f.get("/").await;
    assert_eq!(upstream_cookies(&r), ["theme=dark"]);
}

/// Known bug, see the `ignore` reason. Browsers send cookie values that
/// page scripts set in UTF-8 as raw bytes; `src/proxy/session.rs`
/// `cookie_pairs` reads `Cookie` fields with `HeaderValue::to_str`, which
/// refuses any byte over 0x7f, so such a field is skipped whole: the
/// session in it is not found and `prepare_request` then forwards the
/// field untouched, session cookie included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_7_session_cookie_not_sent_upstream_beside_non_ascii_cookies() {
    let app = App::start("app").await;
    let proxy = proxy_with(&app, "", "").await;
    let mut b = start_session(&proxy).await;
    let v = b.session().unwrap();
    b.cookies.push(("name".into(), "Jos\u{e9}".into()));
    let raw = b.cookie_header().unwrap();
    let mut plain = Browser::new(&proxy);
    let req = plain
        .request(Method::GET, "/")
        .header(
            "cookie",
            http::HeaderValue::from_bytes(raw.as_bytes()).unwrap(),
        )
        .body(empty())
        .unwrap();
    let r = plain.send(req).await;
    let echo = r.text();
    assert!(
        !echo.contains(v.split('.').next().unwrap()),
        "the id reached the upstream: {echo}"
    );
    assert_eq!(upstream_cookies(&r), ["a=1", "name=Jos\u{e9}"]);
}
