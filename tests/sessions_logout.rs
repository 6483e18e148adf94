//! SPEC §3 (`auth.login_paths` and `auth.logout_paths` defaults), §8.4
//! (rotation on a login path) and §8.7a (the app's own logout ends the
//! session), through the real binary in front of the scripted upstream:
//! the paths Django admin, WordPress, Trac, Rails and flaskr use, with
//! nothing configured.

mod support;

use std::time::Duration;

use http::{header, Method};
use support::session::*;
use support::{full, Resp, TestProxy};

const UPSTREAM_AUTH: &str = "provider = \"upstream\"";

/// A proxy with the default `[auth]` plus `auth`, one route with `route`.
async fn proxy(app: &App, auth: &str, route: &str) -> TestProxy {
    TestProxy::start(&config(app, "", auth, route)).await
}

/// A browser holding a fresh session whose jar has `a=1`, bound to `user`
/// when given (provider `upstream`).
async fn session(proxy: &TestProxy, user: Option<&str>) -> Browser {
    let mut b = Browser::new(proxy);
    let login = user.map(|u| format!("X-Cloakroom-Login: {u}"));
    let mut script = vec!["Set-Cookie: a=1; Path=/"];
    script.extend(login.as_deref());
    let r = b.get(&scripted("/", &script)).await;
    assert_eq!(r.status, 200);
    assert!(b.session().is_some(), "no session: {:?}", r.headers);
    b
}

/// True when a browser holding only this session cookie is recognised:
/// the upstream gets the session's jar and the cookie is not cleared.
async fn alive(proxy: &TestProxy, cookie: &str) -> bool {
    let mut b = Browser::new(proxy);
    b.set_session(cookie);
    let r = b.get("/").await;
    let recognised = upstream_cookies(&r).contains(&"a=1".to_string());
    assert_eq!(recognised, !clears_session(&r), "{:?}", r.headers);
    recognised
}

/// The number of `logout` audit lines, once the log has caught up.
async fn logouts(proxy: &TestProxy) -> usize {
    tokio::time::sleep(Duration::from_millis(200)).await;
    audits(proxy, "logout").len()
}

/// Sends `method path` (a form body for POST).
async fn send(b: &mut Browser, method: Method, path: &str) -> Resp {
    let req = b
        .request(method, path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(full("user=alice"))
        .unwrap();
    b.send(req).await
}

/// A POST to `path` whose response sets a jar cookie: asserts that it
/// rotated (or did not) and that the jar went along.
async fn post_setting_jar(proxy: &TestProxy, path: &str, rotates: bool) {
    let mut b = session(proxy, None).await;
    let before = b.session().unwrap();
    let r = b
        .post(&scripted(path, &["Set-Cookie: sid=new; Path=/"]), "user=a")
        .await;
    assert_eq!(r.status, 200, "{path}");
    let after = b.session().unwrap();
    assert_eq!(after != before, rotates, "{path}: {:?}", r.headers);
    assert_eq!(alive(proxy, &before).await, !rotates, "{path}: old id");
    let sent = upstream_cookies(&b.get("/").await);
    assert_eq!(sent, ["a=1", "sid=new"], "{path}: jar carried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_4_django_admin_login_with_trailing_slash_rotates() {
    let app = App::start("app").await;
    let proxy = proxy(&app, "", "").await;
    post_setting_jar(&proxy, "/admin/login/", true).await;
    post_setting_jar(&proxy, "/admin/login/?next=/admin/", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_4_wp_login_php_rotates() {
    let app = App::start("app").await;
    let proxy = proxy(&app, "", "").await;
    post_setting_jar(&proxy, "/wp-login.php", true).await;
    // On segment boundaries: a longer name is another page.
    post_setting_jar(&proxy, "/wp-login.php.bak", false).await;
}

/// SPEC §8.4 for an app that logs in by HTTP authentication (Trac's
/// `/login`): a GET carrying `Authorization` to a login path whose response
/// changes the jar is the login submission, and rotates like a POST does;
/// the same GET without credentials (a login page setting a CSRF cookie)
/// does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_4_http_authentication_on_a_login_path_rotates() {
    let app = App::start("app").await;
    let proxy = proxy(&app, "", "").await;
    for (credentials, rotates) in [(true, true), (false, false)] {
        let mut b = session(&proxy, None).await;
        let before = b.session().unwrap();
        let mut req = b.request(
            Method::GET,
            &scripted("/login", &["Set-Cookie: trac_auth=t; Path=/"]),
        );
        if credentials {
            req = req.header(header::AUTHORIZATION, "Basic YWxpY2U6d29uZGVybGFuZA==");
        }
        let r = b.send(req.body(support::empty()).unwrap()).await;
        assert_eq!(r.status, 200);
        let after = b.session().unwrap();
        assert_eq!(after != before, rotates, "credentials: {credentials}");
        assert_eq!(
            alive(&proxy, &before).await,
            !rotates,
            "credentials: {credentials}"
        );
        let sent = upstream_cookies(&b.get("/").await);
        assert_eq!(sent, ["a=1", "trac_auth=t"], "jar carried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_default_login_paths_are_the_common_frameworks() {
    let app = App::start("app").await;
    let mut proxy = proxy(&app, "", "").await;
    for path in [
        "/login",
        "/signin",
        "/auth/login",
        "/accounts/login/",
        "/user/login",
        "/users/sign_in",
    ] {
        post_setting_jar(&proxy, path, true).await;
    }
    for path in [
        "/loginx",
        "/admin/loginpage",
        "/api/login",
        "/users/sign_in_help",
    ] {
        post_setting_jar(&proxy, path, false).await;
    }
    assert!(proxy
        .wait_log(5, |l| l["event"] == "rotated")
        .await
        .is_some());
    // `/login` stays first: the app's login page (§8.3).
    let r = Browser::new(&proxy).get("/.cloakroom/login").await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/login"));
}

/// A logout answered with `status` by the app; the session held by `b`
/// (jar `a=1`, maybe a user) ends: asserts all §8.7a says about it.
async fn assert_app_logout(proxy: &TestProxy, b: &mut Browser, path: &str, status: u16) {
    let v = b.session().unwrap();
    let before = audits(proxy, "logout").len();
    let r = b
        .get(&scripted(&format!("{path}?s={status}"), &["Location: /"]))
        .await;
    assert_eq!(r.status.as_u16(), status, "{path}");
    // Forwarded as usual, with the session's jar.
    assert!(upstream_cookies(&r).contains(&"a=1".to_string()), "{path}");
    assert!(clears_session(&r), "{path}: {:?}", r.headers);
    assert_eq!(set_cookies(&r).len(), 1, "{path}: {:?}", r.headers);
    assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
    assert!(b.session().is_none());
    assert!(
        !alive(proxy, &v).await,
        "{path}: the old cookie still works"
    );
    let r = Browser::new(proxy).get("/.cloakroom/session").await;
    assert_eq!(json(&r)["authenticated"], false);
    let after = logouts(proxy).await;
    assert_eq!(after - before, 1, "{path}: one logout audit");
    let line = audits(proxy, "logout").pop().unwrap();
    assert_eq!(line["session"], handle_of(&v));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_7a_app_logout_answered_302_ends_the_session() {
    let app = App::start("app").await;
    let proxy = proxy(&app, UPSTREAM_AUTH, "").await;
    let mut b = session(&proxy, Some("alice")).await;
    let r = b.get("/").await;
    assert_eq!(r.echo().one("x-forwarded-user"), Some("alice"));
    assert_app_logout(&proxy, &mut b, "/logout", 302).await;
    let line = audits(&proxy, "logout").pop().unwrap();
    assert_eq!(line["user"], "alice");
    // The browser goes on anonymously.
    let r = b.get("/").await;
    assert_eq!(r.echo().one("x-forwarded-user"), None);
    assert!(upstream_cookies(&r).is_empty());
    assert!(set_cookies(&r).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_7a_app_logout_ends_the_session_with_provider_none() {
    let app = App::start("app").await;
    let proxy = proxy(&app, "", "").await;
    let mut b = session(&proxy, None).await;
    assert_app_logout(&proxy, &mut b, "/logout", 302).await;
    // Any method: a POST logout form, Rails' sign_out, Trac's /logout.
    for path in ["/users/sign_out", "/signout", "/auth/logout"] {
        let mut b = session(&proxy, None).await;
        let v = b.session().unwrap();
        let r = send(&mut b, Method::POST, &scripted(path, &["Location: /"])).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(clears_session(&r), "{path}: {:?}", r.headers);
        assert!(!alive(&proxy, &v).await, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_7a_accounts_logout_answered_200_ends_the_session() {
    let app = App::start("app").await;
    let proxy = proxy(&app, UPSTREAM_AUTH, "").await;
    let mut b = session(&proxy, Some("alice")).await;
    assert_app_logout(&proxy, &mut b, "/accounts/logout/", 200).await;
    let mut b = session(&proxy, Some("bob")).await;
    assert_app_logout(&proxy, &mut b, "/admin/logout/", 302).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_7a_logout_answered_with_an_error_ends_nothing() {
    let app = App::start("app").await;
    let proxy = proxy(&app, UPSTREAM_AUTH, "").await;
    let mut b = session(&proxy, Some("alice")).await;
    let v = b.session().unwrap();
    for status in [403, 500, 404, 401] {
        let r = b.get(&format!("/logout?s={status}")).await;
        assert_eq!(r.status.as_u16(), status);
        assert!(set_cookies(&r).is_empty(), "{status}: {:?}", r.headers);
        assert_eq!(b.session().as_deref(), Some(v.as_str()));
        assert!(alive(&proxy, &v).await, "{status} ended the session");
    }
    // A jar cookie the refused logout sets is stored as on any response.
    b.get(&scripted("/logout?s=403", &["Set-Cookie: tries=1; Path=/"]))
        .await;
    let r = b.get("/").await;
    assert_eq!(upstream_cookies(&r), ["a=1", "tries=1"]);
    assert_eq!(r.echo().one("x-forwarded-user"), Some("alice"));
    assert_eq!(logouts(&proxy).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_7a_logout_without_a_session_sets_no_cookie() {
    let app = App::start("app").await;
    let proxy = proxy(&app, "", "").await;
    let script = [
        "Location: /",
        "Set-Cookie: csrftoken=fresh; Path=/",
        "Set-Cookie: sessionid=; Max-Age=0; Path=/",
    ];
    let mut b = Browser::new(&proxy);
    for (method, status) in [(Method::GET, 302), (Method::POST, 200)] {
        let path = scripted(&format!("/logout?s={status}"), &script);
        let r = send(&mut b, method.clone(), &path).await;
        assert_eq!(r.status.as_u16(), status, "{method}");
        assert!(set_cookies(&r).is_empty(), "{method}: {:?}", r.headers);
        assert!(b.cookies.is_empty(), "{method}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(audits(&proxy, "session_created").is_empty());
    assert_eq!(logouts(&proxy).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_7a_upstream_set_cookie_on_a_logout_is_not_stored() {
    let app = App::start("app").await;
    let mut proxy = proxy(&app, UPSTREAM_AUTH, "").await;
    let mut b = session(&proxy, Some("alice")).await;
    let created = |l: &serde_json::Value| l["event"] == "session_created";
    assert!(proxy.wait_log(5, created).await.is_some());
    let r = b
        .get(&scripted(
            "/logout",
            &[
                "Set-Cookie: after=logout; Path=/",
                "Set-Cookie: a=; Max-Age=0; Path=/",
                // A login header on the logout binds nothing either.
                "X-Cloakroom-Login: mallory",
            ],
        ))
        .await;
    assert_eq!(r.status, 200);
    assert!(clears_session(&r));
    assert_eq!(set_cookies(&r).len(), 1, "{:?}", r.headers);
    assert!(b.cookies.is_empty());
    // The next request carries no jar cookie and has no session.
    let r = b.get("/").await;
    assert!(upstream_cookies(&r).is_empty());
    assert_eq!(r.echo().one("x-forwarded-user"), None);
    assert!(set_cookies(&r).is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(audits(&proxy, "session_created").len(), 1);
    assert_eq!(logouts(&proxy).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_7a_passthrough_cookies_on_a_logout_still_reach_the_browser() {
    let app = App::start("app").await;
    let proxy = proxy(&app, "", "passthrough_cookies = [\"theme\"]").await;
    let mut b = session(&proxy, None).await;
    let r = b
        .get(&scripted(
            "/logout",
            &[
                "Set-Cookie: theme=; Max-Age=0; Path=/",
                "Set-Cookie: sid=x; Path=/",
            ],
        ))
        .await;
    assert!(clears_session(&r));
    let cookies: Vec<ParsedCookie> = set_cookies(&r)
        .iter()
        .map(|c| parse_set_cookie(c))
        .collect();
    let names: Vec<&str> = cookies.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{cookies:?}");
    assert!(
        names.contains(&COOKIE) && names.contains(&"theme"),
        "{names:?}"
    );
    let theme = cookies.iter().find(|c| c.name == "theme").unwrap();
    assert!(theme.clears() && theme.has("secure"), "{theme:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_7a_logout_paths_match_the_normalised_path_on_segment_boundaries() {
    let app = App::start("app").await;
    let proxy = proxy(&app, "", "").await;
    let mut b = session(&proxy, None).await;
    let v = b.session().unwrap();
    for path in [
        "/logoutx",
        "/logout-help",
        "/logout.html",
        "/api/logout",
        "/signouts",
    ] {
        let r = b.get(path).await;
        assert_eq!(r.status, 200);
        assert!(set_cookies(&r).is_empty(), "{path}: {:?}", r.headers);
        assert!(alive(&proxy, &v).await, "{path} ended the session");
    }
    assert_eq!(logouts(&proxy).await, 0);
    // Under a logout path, after normalisation: it ends.
    for path in ["/logout/confirm", "/x/../logout", "//signout/"] {
        let mut b = session(&proxy, None).await;
        let v = b.session().unwrap();
        let r = b.get(path).await;
        assert!(clears_session(&r), "{path}: {:?}", r.headers);
        assert!(!alive(&proxy, &v).await, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_7a_logout_paths_empty_turns_it_off_and_a_list_replaces_the_default() {
    let app = App::start("app").await;
    let off = proxy(&app, "logout_paths = []", "").await;
    let mut b = session(&off, None).await;
    let v = b.session().unwrap();
    let r = b.get("/logout?s=302").await;
    assert_eq!(r.status, 302);
    assert!(set_cookies(&r).is_empty(), "{:?}", r.headers);
    assert!(alive(&off, &v).await);
    assert_eq!(logouts(&off).await, 0);

    let custom = proxy(&app, "logout_paths = [\"/session/end/\"]", "").await;
    let mut b = session(&custom, None).await;
    let v = b.session().unwrap();
    b.get("/logout").await;
    assert!(
        alive(&custom, &v).await,
        "/logout is no longer a logout path"
    );
    let r = b.get("/session/end").await;
    assert!(clears_session(&r));
    assert!(!alive(&custom, &v).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_7a_logout_header_on_a_logout_path_logs_out_once() {
    let app = App::start("app").await;
    let proxy = proxy(&app, UPSTREAM_AUTH, "").await;
    let mut b = session(&proxy, Some("alice")).await;
    let v = b.session().unwrap();
    let r = b
        .get(&scripted("/logout?s=302", &["X-Cloakroom-Logout: 1"]))
        .await;
    assert!(clears_session(&r));
    assert_eq!(r.header("x-cloakroom-logout"), None);
    assert!(!alive(&proxy, &v).await);
    assert_eq!(logouts(&proxy).await, 1);
}
