//! SPEC §8.1–§8.4 and §8.7: identity headers, `auth = "required"`, the
//! upstream login/logout headers, `login_paths` rotation and the proxy's
//! own session endpoints, through the real binary.

mod support;

use http::{header, Method};
use support::session::*;
use support::{empty, Resp, TestProxy};

const UPSTREAM_AUTH: &str = "provider = \"upstream\"";

async fn upstream_auth(app: &App, route: &str) -> TestProxy {
    TestProxy::start(&config(app, "", UPSTREAM_AUTH, route)).await
}

/// Logs `b` in as `user` through the upstream login header.
async fn login(b: &mut Browser, user: &str) -> Resp {
    let r = b
        .get(&scripted(
            "/login",
            &[&format!("X-Cloakroom-Login: {user}")],
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r
}

async fn whoami(b: &mut Browser) -> serde_json::Value {
    let r = b.get("/.cloakroom/session").await;
    assert_eq!(r.status, 200);
    json(&r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_1_identity_headers_stripped_in_every_spelling() {
    let app = App::start("app").await;
    let proxy = TestProxy::start(
        &config(&app, "", UPSTREAM_AUTH, "")
            .raw("[identity]\nstrip_from_client = [\"X-Internal-Role\"]"),
    )
    .await;
    let spoofs = [
        "X-Forwarded-User",
        "x_forwarded_user",
        "X.Forwarded.User",
        "x-forwarded_email",
        "X-FORWARDED-GROUPS",
        "x_forwarded.groups",
        "X-Internal-Role",
        "x_internal_role",
        "X-Cloakroom-Login",
        "x_cloakroom_logout",
    ];
    let spoofed = |b: &Browser, path: &str| {
        let mut req = b.request(Method::GET, path);
        for name in spoofs {
            req = req.header(raw_name(name), "mallory");
        }
        req.header("x-innocent", "kept").body(empty()).unwrap()
    };
    let check = |r: &Resp, user: Option<&str>| {
        let echo = r.echo();
        for (name, value) in &echo.headers {
            assert_ne!(value, "mallory", "{name} reached the upstream");
        }
        assert_eq!(echo.one("x-innocent"), Some("kept"));
        assert_eq!(echo.one("x-forwarded-user"), user);
    };
    // Anonymous: nothing survives, and no login header is taken from the
    // client (no session was made).
    let mut b = Browser::new(&proxy);
    let r = b.send(spoofed(&b, "/")).await;
    check(&r, None);
    assert!(b.session().is_none());
    // Logged in: exactly the session's identity, once.
    login(&mut b, "alice").await;
    let r = b.send(spoofed(&b, "/")).await;
    check(&r, Some("alice"));
    assert_eq!(r.echo().one("x-forwarded-email"), None);
    // The client's logout header did not end the session.
    assert_eq!(whoami(&mut b).await["user"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_3_required_route_redirects_browser_and_401s_api() {
    let app = App::start("app").await;
    let route = "auth = \"required\"\npublic_paths = [\"/public\", \"/login\"]";
    let proxy = upstream_auth(&app, route).await;
    let mut b = Browser::new(&proxy);
    let html = "text/html,application/xhtml+xml;q=0.9";
    let nav = |b: &Browser, m: Method, path: &str, accept: &str| {
        b.request(m, path)
            .header(header::ACCEPT, accept)
            .body(empty())
            .unwrap()
    };

    for m in [Method::GET, Method::HEAD] {
        let r = b
            .send(nav(&b, m.clone(), "/private/page?x=1&y=a%20b", html))
            .await;
        assert_eq!(r.status, 302, "{m}");
        let location = r.header("location").unwrap();
        let rd = location
            .strip_prefix("/.cloakroom/login?rd=")
            .unwrap_or_else(|| panic!("{location}"));
        assert!(!rd.contains(['?', '&', '=', ' ']), "rd not encoded: {rd}");
        assert_eq!(pct_decode(rd), "/private/page?x=1&y=a%20b");
    }
    for (m, accept) in [
        (Method::GET, "application/json"),
        (Method::GET, "*/*"),
        (Method::POST, html),
        (Method::DELETE, html),
    ] {
        let r = b.send(nav(&b, m.clone(), "/private", accept)).await;
        assert_eq!(r.status, 401, "{m} {accept}");
        assert!(r.header("content-type").unwrap().contains("json"));
        json(&r);
    }
    // A prefix on a segment boundary only.
    let r = b.send(nav(&b, Method::GET, "/publicity", "*/*")).await;
    assert_eq!(r.status, 401);
    assert_eq!(app.hits(), 0, "the upstream was contacted");
    let r = b.get("/public/logo.png").await;
    assert_eq!(r.status, 200);
    assert_eq!(app.hits(), 1);

    // provider upstream: the proxy's login page is the app's, rd as next.
    let r = b
        .get("/.cloakroom/login?rd=%2Fprivate%2Fpage%3Fx%3D1")
        .await;
    assert_eq!(r.status, 302);
    let location = r.header("location").unwrap();
    let next = location
        .strip_prefix("/login?next=")
        .unwrap_or_else(|| panic!("{location}"));
    assert_eq!(pct_decode(next), "/private/page?x=1");
    // No open redirect: a foreign rd is dropped.
    for evil in [
        "%2F%2Fevil.test",
        "https%3A%2F%2Fevil.test",
        "%2F%5Cevil.test",
    ] {
        let r = b.get(&format!("/.cloakroom/login?rd={evil}")).await;
        assert_eq!(r.header("location"), Some("/login"), "{evil}");
    }

    // With an identity the route opens.
    login(&mut b, "alice").await;
    let r = b.send(nav(&b, Method::GET, "/private/page", html)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().one("x-forwarded-user"), Some("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_4_upstream_login_header_binds_user_and_rotates() {
    let app = App::start("app").await;
    let mut proxy = upstream_auth(&app, "").await;
    let mut b = Browser::new(&proxy);
    // From nothing: the login creates a session bound to the user.
    let r = login(&mut b, "alice").await;
    assert_eq!(
        r.header("x-cloakroom-login"),
        None,
        "header reached the client"
    );
    let first = b.session().expect("session cookie");
    let me = whoami(&mut b).await;
    assert_eq!(me["authenticated"], true);
    assert_eq!(me["user"], "alice");
    let line = proxy
        .wait_log(5, |l| l["event"] == "login")
        .await
        .expect("login audit");
    assert_eq!(line["user"], "alice");
    assert_eq!(line["session"], handle_of(&first));
    let access = proxy.access_logs();
    assert!(access.iter().any(|l| l["user"] == "alice"));

    // Rebinding rotates; the old id is dead.
    let r = login(&mut b, "bob").await;
    assert!(session_set_cookie(&r).is_some());
    assert_ne!(b.session().unwrap(), first);
    assert_eq!(b.get("/").await.echo().one("x-forwarded-user"), Some("bob"));
    let mut old = Browser::new(&proxy);
    old.set_session(&first);
    assert_eq!(whoami(&mut old).await["authenticated"], false);

    // With another provider the header binds nothing (it is still removed).
    let none = TestProxy::start(&config(&app, "", "", "")).await;
    let mut b = Browser::new(&none);
    let r = login(&mut b, "alice").await;
    assert!(b.session().is_none());
    assert_eq!(r.header("x-cloakroom-login"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_4_upstream_logout_header_ends_session() {
    let app = App::start("app").await;
    let mut proxy = upstream_auth(&app, "").await;
    let mut b = Browser::new(&proxy);
    login(&mut b, "alice").await;
    let v = b.session().unwrap();
    // Not one of logout_paths: the header alone ends it (§8.7a is tested
    // in sessions_logout.rs).
    let r = b
        .get(&scripted(
            "/bye",
            &["X-Cloakroom-Logout: 1", "Set-Cookie: after=logout; Path=/"],
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-cloakroom-logout"), None);
    assert!(clears_session(&r), "{:?}", r.headers);
    // Nothing outlives the logout: no new session for the jar cookie.
    assert_eq!(set_cookies(&r).len(), 1, "{:?}", r.headers);
    assert!(b.session().is_none());
    let line = proxy
        .wait_log(5, |l| l["event"] == "logout")
        .await
        .expect("logout audit");
    assert_eq!(line["session"], handle_of(&v));
    let mut replay = Browser::new(&proxy);
    replay.set_session(&v);
    let r = replay.get("/").await;
    assert!(clears_session(&r));
    assert_eq!(r.echo().one("x-forwarded-user"), None);
    assert!(upstream_cookies(&r).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_4_identity_value_limits() {
    let app = App::start("app").await;
    let mut proxy = upstream_auth(&app, "").await;
    let refused = [
        "a".repeat(257),
        "ali\tce".to_string(),
        // Leading and trailing blanks are not part of the value: empty.
        "   ".to_string(),
    ];
    for user in &refused {
        let mut b = Browser::new(&proxy);
        let r = b
            .get(&scripted("/", &[&format!("X-Cloakroom-Login:{user}")]))
            .await;
        assert_eq!(r.status, 200);
        assert!(b.session().is_none(), "{user:?} bound a session");
        assert_eq!(whoami(&mut b).await["authenticated"], false);
    }
    assert!(proxy
        .wait_log(5, |l| l["level"] == "WARN"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("login header")))
        .await
        .is_some());
    // Exactly 256 bytes is allowed.
    let mut b = Browser::new(&proxy);
    login(&mut b, &"a".repeat(256)).await;
    assert_eq!(whoami(&mut b).await["user"], "a".repeat(256));
    // A refused login on a live session changes nothing.
    let before = b.session().unwrap();
    let r = b
        .get(&scripted(
            "/",
            &[&format!("X-Cloakroom-Login: {}", "b".repeat(300))],
        ))
        .await;
    assert!(session_set_cookie(&r).is_none());
    assert_eq!(b.session().unwrap(), before);
    assert_eq!(whoami(&mut b).await["user"], "a".repeat(256));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_4_login_paths_post_changing_jar_rotates() {
    let app = App::start("app").await;
    // provider "none": the rule holds whatever the provider.
    let proxy = TestProxy::start(&config(&app, "", "login_paths = [\"/signin\"]", "")).await;
    let mut b = Browser::new(&proxy);
    b.get(&scripted("/", &["Set-Cookie: pre=1; Path=/"])).await;
    let v1 = b.session().unwrap();

    // Not rotations: GET on the login path, POST elsewhere, POST without a
    // jar change.
    b.get(&scripted("/signin", &["Set-Cookie: g=1; Path=/"]))
        .await;
    b.post(&scripted("/other", &["Set-Cookie: o=1; Path=/"]), "x=1")
        .await;
    b.post("/signin", "user=a").await;
    assert_eq!(b.session().unwrap(), v1);

    let r = b
        .post(
            &scripted("/signin", &["Set-Cookie: sid=new; Path=/"]),
            "user=a",
        )
        .await;
    let v2 = b.session().unwrap();
    assert_ne!(v2, v1, "{:?}", r.headers);
    let sent = upstream_cookies(&b.get("/").await);
    assert_eq!(sent, ["pre=1", "g=1", "o=1", "sid=new"], "jar carried");
    let mut old = Browser::new(&proxy);
    old.set_session(&v1);
    let r = old.get("/").await;
    assert!(clears_session(&r));
    assert!(upstream_cookies(&r).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_7_session_endpoint_and_logout() {
    let app = App::start("app").await;
    let mut proxy = upstream_auth(&app, "").await;
    let mut b = Browser::new(&proxy);
    let anon = whoami(&mut b).await;
    assert_eq!(
        anon,
        serde_json::json!({"authenticated": false, "user": null, "email": null,
                           "groups": [], "expires_at": null})
    );
    // Logout without a session: 204, nothing to clear.
    let r = b.post("/.cloakroom/logout", "").await;
    assert_eq!(r.status, 204);
    assert!(set_cookies(&r).is_empty());

    login(&mut b, "alice").await;
    let v = b.session().unwrap();
    let r = b.get("/.cloakroom/session").await;
    let me = json(&r);
    assert_eq!(me["authenticated"], true);
    assert_eq!(me["user"], "alice");
    let expires = me["expires_at"].as_str().expect("expires_at");
    let t = humantime::parse_rfc3339(expires).unwrap();
    assert!(t > std::time::SystemTime::now());
    let (id, mac) = v.split_once('.').unwrap();
    let all = format!("{:?}{}", r.headers, r.text());
    assert!(
        !all.contains(id) && !all.contains(mac),
        "the id leaked: {all}"
    );

    // A foreign Origin cannot log the user out (CSRF, §9.6).
    let req = b
        .request_from(
            Method::POST,
            "/.cloakroom/logout",
            Some("https://evil.test"),
        )
        .body(empty())
        .unwrap();
    let r = b.send(req).await;
    assert_eq!(r.status, 403);
    assert_eq!(whoami(&mut b).await["user"], "alice");

    let r = b.post("/.cloakroom/logout", "").await;
    assert_eq!(r.status, 204);
    assert!(clears_session(&r));
    assert!(proxy
        .wait_log(5, |l| l["event"] == "logout")
        .await
        .is_some());
    b.set_session(&v);
    let r = b.get("/.cloakroom/session").await;
    assert_eq!(json(&r)["authenticated"], false);
    assert!(clears_session(&r));

    // A browser is sent home with 303.
    let mut b = Browser::new(&proxy);
    login(&mut b, "alice").await;
    let req = b
        .request(Method::POST, "/.cloakroom/logout")
        .header(header::ACCEPT, "text/html")
        .body(empty())
        .unwrap();
    let r = b.send(req).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/"));
    assert!(clears_session(&r));
    assert_eq!(whoami(&mut b).await["authenticated"], false);
}

/// SPEC §9.2: hop-by-hop headers, including those a client's `Connection`
/// names, are removed before the proxy sets its own, so a `Connection` token
/// removes the client's copy and never the identity headers, the jar's
/// `Cookie` or `X-Forwarded-*` the proxy sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_2_connection_tokens_cannot_remove_what_the_proxy_sets() {
    let app = App::start("app").await;
    let proxy = upstream_auth(&app, "").await;
    let mut b = Browser::new(&proxy);
    login(&mut b, "alice").await;
    let r = b
        .get(&scripted("/", &["Set-Cookie: app=jarvalue; Path=/"]))
        .await;
    assert_eq!(r.status, 200);
    for token in [
        "X-Forwarded-User",
        "x-forwarded-user, keep-alive",
        "x_forwarded_user",
        "Cookie",
        "cookie, X-Forwarded-User",
        "X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host",
    ] {
        let req = b
            .request(Method::GET, "/")
            .header(header::CONNECTION, token)
            .header("x-forwarded-user", "mallory")
            .body(empty())
            .unwrap();
        let r = b.send(req).await;
        assert_eq!(r.status, 200, "{token}");
        let echo = r.echo();
        assert_eq!(echo.all("x-forwarded-user"), ["alice"], "{token}");
        assert_eq!(echo.all("cookie"), ["app=jarvalue"], "{token}");
        assert_eq!(echo.one("x-forwarded-proto"), Some("https"), "{token}");
        assert_eq!(echo.one("x-forwarded-for"), Some("127.0.0.1"), "{token}");
        assert_eq!(
            echo.one("x-forwarded-host"),
            Some(b.host.as_str()),
            "{token}"
        );
        assert_eq!(echo.one("connection"), None, "{token}");
    }
}
