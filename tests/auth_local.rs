//! SPEC §8.5 (`provider = "local"`) and §2 (`cloakroom hash-password`),
//! through the real binary: the login form, the password check, failure
//! limits per user and per address, rotation on login, identity headers,
//! return paths that never leave the origin, and the users file reloaded
//! on SIGHUP.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::PasswordVerifier;
use http::{header, Method};
use support::session::*;
use support::{bin, empty, full, run_cli, ProxyConfig, Resp, TestProxy};

const LOGIN: &str = "/.cloakroom/login";

/// `cloakroom hash-password` with `input` piped on stdin: (exit code,
/// stdout, stderr).
fn hash_password_cli(input: &str) -> (i32, String, String) {
    let mut child = Command::new(bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("hash-password finished within 30 s")
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn hash(password: &str) -> String {
    let (code, out, err) = hash_password_cli(&format!("{password}\n"));
    assert_eq!(code, 0, "{err}");
    out.trim().to_string()
}

/// One `[[user]]` table.
fn user(name: &str, password: &str, extra: &str) -> String {
    format!(
        "[[user]]\nname = \"{name}\"\npassword_hash = \"{}\"\n{extra}\n",
        hash(password)
    )
}

fn alice() -> String {
    user(
        "alice",
        "correct horse",
        "email = \"alice@example.com\"\ngroups = [\"admin\", \"dev\"]",
    )
}

/// A proxy with `provider = "local"` over `users` (as `users.toml`), more
/// `[auth]` keys in `auth`, one route to `app` with `route` keys.
fn local(app: &App, users: &str, auth: &str, route: &str) -> ProxyConfig {
    config(
        app,
        "",
        &format!("provider = \"local\"\nusers_file = \"users.toml\"\n{auth}"),
        route,
    )
    .file("users.toml", users)
}

/// The value of the hidden input `name` in a login page, unescaped.
fn hidden(page: &Resp, name: &str) -> String {
    let text = page.text();
    let marker = format!("name=\"{name}\" value=\"");
    let start = text
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        + marker.len();
    let end = start + text[start..].find('"').unwrap();
    text[start..end]
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Fetches the form (as a browser following a link) and posts it back with
/// these credentials and the form's own `rd`.
async fn sign_in(b: &mut Browser, query: &str, user: &str, password: &str) -> Resp {
    let page = b.get(&format!("{LOGIN}{query}")).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let form = format!(
        "username={}&password={}&csrf={}&rd={}",
        pct_encode(user),
        pct_encode(password),
        pct_encode(&hidden(&page, "csrf")),
        pct_encode(&hidden(&page, "rd")),
    );
    b.post(LOGIN, &form).await
}

async fn whoami(b: &mut Browser) -> serde_json::Value {
    let r = b.get("/.cloakroom/session").await;
    assert_eq!(r.status, 200);
    json(&r)
}

#[test]
fn s2_hash_password_prints_a_phc_string_that_verifies_and_check_accepts() {
    let phc = hash("correct horse");
    assert!(
        phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "OWASP parameters: {phc}"
    );
    let parsed = PasswordHash::new(&phc).unwrap();
    let argon2 = argon2::Argon2::default();
    assert!(argon2.verify_password(b"correct horse", &parsed).is_ok());
    assert!(argon2.verify_password(b"correct horse\n", &parsed).is_err());
    // A CRLF line ending is not part of the password either; nothing is
    // echoed but the hash.
    let (code, out, err) = hash_password_cli("s3cret pass\r\n");
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("s3cret") && !err.contains("s3cret"));
    let crlf = PasswordHash::new(out.trim()).unwrap();
    assert!(argon2.verify_password(b"s3cret pass", &crlf).is_ok());
    let (code, out, err) = hash_password_cli("\n");
    assert_eq!((code, out.as_str()), (1, ""), "an empty password: {err}");

    let dir = tempfile::tempdir().unwrap();
    let users =
        format!("[[user]]\nname = \"alice\"\npassword_hash = \"{phc}\"\ngroups = [\"admin\"]\n");
    std::fs::write(dir.path().join("users.toml"), users).unwrap();
    let proxy = "[auth]\nprovider = \"local\"\n\n[[route]]\nupstream = \"http://127.0.0.1:5000\"\n";
    std::fs::write(dir.path().join("proxy.toml"), proxy).unwrap();
    let out = run_cli(&["check", "--config", "proxy.toml"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    // A broken users file is refused naming that file, line and key, and
    // the message does not quote the hash.
    let broken = format!(
        "[[user]]\nname = \"alice\"\npassword_hash = \"{}\"\n",
        &phc[..40]
    );
    std::fs::write(dir.path().join("users.toml"), broken).unwrap();
    let out = run_cli(&["check", "--config", "proxy.toml"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("users.toml:3: user[1].password_hash: "),
        "{stderr}"
    );
    assert!(!stderr.contains(&phc[..40]), "{stderr}");
}

/// On a terminal the password is asked twice and never echoed (driven
/// through a pseudo-terminal by Python's `pty`, as a person would type).
#[test]
fn s2_hash_password_on_a_terminal_asks_twice_without_echo() {
    const DRIVER: &str = r#"
import os, pty, sys, termios, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "hash-password"])
out = b""
def read_until(token):
    global out
    deadline = time.time() + 20
    while token not in out and time.time() < deadline:
        try:
            out += os.read(fd, 1024)
        except OSError:
            break
def echo_off():
    # A person types after the prompt, once echo is off; so does this.
    deadline = time.time() + 20
    while termios.tcgetattr(fd)[3] & termios.ECHO and time.time() < deadline:
        time.sleep(0.01)
for i, answer in enumerate((sys.argv[2], sys.argv[3])):
    read_until(b"Password: " if i == 0 else b"(again): ")
    echo_off()
    os.write(fd, answer.encode() + b"\n")
# Everything else it prints, until it closes the terminal (EIO).
read_until(b"never printed")
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode())
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let run = |first: &str, again: &str| {
        let out = Command::new(support::flask::python())
            .args(["-c", DRIVER, bin(), first, again])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, screen) = run("tty secret", "tty secret");
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains("Password: ") && screen.contains("Password (again): "),
        "{screen}"
    );
    assert!(
        !screen.contains("tty secret"),
        "the password was echoed: {screen}"
    );
    let phc = screen
        .lines()
        .find(|l| l.starts_with("$argon2id"))
        .unwrap()
        .trim();
    let parsed = PasswordHash::new(phc).unwrap();
    assert!(argon2::Argon2::default()
        .verify_password(b"tty secret", &parsed)
        .is_ok());
    let (code, screen) = run("tty secret", "tty secreT");
    assert_eq!(code, Some(1), "{screen}");
    assert!(
        screen.contains("the two passwords differ") && !screen.contains("$argon2id"),
        "{screen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_5_s9_5a_the_login_form_is_self_contained_and_carries_a_csrf_token() {
    let app = App::start("app").await;
    let proxy = TestProxy::start(&local(&app, &alice(), "", "")).await;
    let mut b = Browser::new(&proxy);
    let r = b.get(&format!("{LOGIN}?rd=%2Fdashboard")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("form-action 'self'"), "{csp}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let page = r.text();
    for external in [
        "http:", "https:", "src=", "<script", "<link", "@import", "url(",
    ] {
        assert!(!page.contains(external), "{external} in {page}");
    }
    for accessible in [
        "<label for=\"username\">",
        "<label for=\"password\">",
        "autocomplete=\"username\"",
        "autocomplete=\"current-password\"",
        "method=\"post\" action=\"/.cloakroom/login\"",
    ] {
        assert!(page.contains(accessible), "{accessible} missing: {page}");
    }
    assert_eq!(hidden(&r, "rd"), "/dashboard");
    let token = hidden(&r, "csrf");
    assert_eq!(token.len(), 43, "{token}");
    let cookie = set_cookies(&r)
        .into_iter()
        .map(|c| parse_set_cookie(&c))
        .find(|c| c.name == "__Host-cloakroom-login")
        .expect("a CSRF cookie");
    for attr in ["secure", "httponly"] {
        assert!(cookie.has(attr), "{attr}");
    }
    assert_eq!(cookie.attr("path"), Some(Some("/")));
    assert_eq!(cookie.attr("samesite"), Some(Some("Strict")));
    assert!(!cookie.has("domain"));
    // No session is made for a form (SPEC §4.5), and the same browser gets
    // the same token again (several tabs work).
    assert!(b.session().is_none());
    let again = b.get(LOGIN).await;
    assert_eq!(hidden(&again, "csrf"), token);
    assert!(set_cookies(&again).is_empty());
    assert_eq!(app.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_5_s4_6_success_binds_the_user_rotates_and_sends_identity_headers() {
    let app = App::start("app").await;
    let users = alice();
    let mut proxy = TestProxy::start(&local(&app, &users, "", "")).await;
    let mut b = Browser::new(&proxy);
    // An anonymous session with a jar cookie first.
    b.get(&scripted("/", &["Set-Cookie: pref=dark; Path=/"]))
        .await;
    let before = b.session().expect("an anonymous session");

    let r = sign_in(&mut b, "?rd=%2Fhome%3Ftab%3D2", "alice", "correct horse").await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/home?tab=2"));
    let after = b.session().expect("a session cookie");
    assert_ne!(after, before, "the login rotates the id");
    assert!(
        b.cookie("__Host-cloakroom-login").is_none(),
        "CSRF cookie cleared"
    );

    let r = b.get("/home?tab=2").await;
    let echo = r.echo();
    assert_eq!(echo.one("x-forwarded-user"), Some("alice"));
    assert_eq!(echo.one("x-forwarded-email"), Some("alice@example.com"));
    assert_eq!(echo.one("x-forwarded-groups"), Some("admin,dev"));
    assert_eq!(
        upstream_cookies(&r),
        ["pref=dark"],
        "the jar is carried over"
    );
    let who = whoami(&mut b).await;
    assert_eq!(who["user"], "alice");
    assert_eq!(who["groups"], serde_json::json!(["admin", "dev"]));

    // The old id is dead: presented again it is no session and is cleared.
    let mut old = Browser::new(&proxy);
    old.set_session(&before);
    let r = old.get("/").await;
    assert_eq!(r.echo().one("x-forwarded-user"), None);
    assert!(clears_session(&r));

    let line = proxy
        .wait_log(5, |v| v["event"] == "login" && v["outcome"] == "success")
        .await
        .expect("a login audit line");
    assert_eq!(line["user"], "alice");
    assert_eq!(line["session"].as_str().unwrap(), handle_of(&after));
    // Never the password, the hash or the session id in the logs.
    let logs = format!("{:?}{}", proxy.logs(), proxy.stderr());
    let phc = users
        .lines()
        .find(|l| l.starts_with("password_hash"))
        .unwrap();
    let salt_and_hash = phc.rsplit('$').next().unwrap().trim_end_matches('"');
    for secret in [
        "correct horse",
        "correct+horse",
        salt_and_hash,
        after.as_str(),
    ] {
        assert!(!logs.contains(secret), "{secret} logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_5_wrong_password_and_unknown_user_are_401_and_bind_nothing() {
    let app = App::start("app").await;
    let mut proxy = TestProxy::start(&local(&app, &alice(), "", "")).await;
    let mut b = Browser::new(&proxy);
    for (name, password, outcome) in [
        ("alice", "wrong horse", "wrong_password"),
        ("mallory", "correct horse", "unknown_user"),
        ("", "x", "unknown_user"),
    ] {
        let r = sign_in(&mut b, "", name, password).await;
        assert_eq!(r.status, 401, "{name}: {}", r.text());
        assert!(r.text().contains("role=\"alert\""));
        assert!(r.header("location").is_none());
        assert!(b.session().is_none(), "{name}: no session");
        assert_eq!(whoami(&mut b).await["authenticated"], false);
        let failed = proxy
            .wait_log(5, |v| {
                v["event"] == "login_failed" && v["outcome"] == outcome
            })
            .await;
        assert!(failed.is_some(), "{outcome} audited");
    }
    let logs = format!("{:?}", proxy.logs());
    assert!(!logs.contains("wrong horse") && !logs.contains("correct horse"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_5_a_form_without_its_csrf_token_or_from_another_origin_is_refused() {
    let app = App::start("app").await;
    let proxy = TestProxy::start(&local(&app, &alice(), "", "")).await;
    let mut b = Browser::new(&proxy);
    let page = b.get(LOGIN).await;
    let token = hidden(&page, "csrf");
    let creds = "username=alice&password=correct%20horse&rd=%2F";
    // No token, a forged token, and the right token without its cookie.
    let r = b.post(LOGIN, creds).await;
    assert_eq!(r.status, 403);
    let forged = "A".repeat(43);
    let r = b.post(LOGIN, &format!("{creds}&csrf={forged}")).await;
    assert_eq!(r.status, 403);
    let mut stranger = Browser::new(&proxy);
    let r = stranger.post(LOGIN, &format!("{creds}&csrf={token}")).await;
    assert_eq!(r.status, 403);
    assert!(stranger.session().is_none());
    // Not a form at all.
    let req = b
        .request(Method::POST, LOGIN)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full("{}"))
        .unwrap();
    assert_eq!(b.send(req).await.status, 400);
    // With a live session, a foreign Origin is refused by the csrf check.
    assert_eq!(
        sign_in(&mut b, "", "alice", "correct horse").await.status,
        303
    );
    let page = b.get(LOGIN).await;
    let req = b
        .request_from(Method::POST, LOGIN, Some("https://evil.test"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(full(format!("{creds}&csrf={}", hidden(&page, "csrf"))))
        .unwrap();
    assert_eq!(b.send(req).await.status, 403);
    // A GET cannot log in.
    let r = b.get(&format!("{LOGIN}?{creds}")).await;
    assert_eq!(r.status, 200);
    assert!(r.header("location").is_none());
    assert_eq!(app.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_5_a_user_is_locked_out_after_max_failures_until_the_window_passes() {
    let app = App::start("app").await;
    let auth = "max_failures_per_user = 3\nmax_failures_per_address = 100\nfailure_window = \"3s\"";
    let mut proxy = TestProxy::start(&local(&app, &alice(), auth, "")).await;
    let mut b = Browser::new(&proxy);
    let started = Instant::now();
    for i in 0..3 {
        let r = sign_in(&mut b, "", "alice", "wrong").await;
        assert_eq!(r.status, 401, "failure {i}");
    }
    // The right password now gets 429 too, and so does another client.
    let r = sign_in(&mut b, "", "alice", "correct horse").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "too slow to test the window"
    );
    assert_eq!(r.status, 429, "{}", r.text());
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3).contains(&retry), "{retry}");
    assert!(b.session().is_none());
    let mut other = Browser::new(&proxy);
    assert_eq!(
        sign_in(&mut other, "", "alice", "correct horse")
            .await
            .status,
        429
    );
    assert!(proxy
        .wait_log(5, |v| v["event"] == "login_failed"
            && v["outcome"] == "locked")
        .await
        .is_some());
    // Released once the window from the first failure has passed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let released = loop {
        let r = sign_in(&mut b, "", "alice", "correct horse").await;
        if r.status != 429 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(released.status, 303, "{}", released.text());
    assert_eq!(whoami(&mut b).await["user"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_5_an_address_is_locked_out_across_user_names() {
    let app = App::start("app").await;
    let auth = "max_failures_per_user = 100\nmax_failures_per_address = 3";
    let users = format!("{}{}", alice(), user("bob", "battery staple", ""));
    let proxy = TestProxy::start(
        &local(&app, &users, auth, "")
            .server("trusted_proxies = [\"127.0.0.1/32\"]")
            .admin(),
    )
    .await;
    let mut b = Browser::new(&proxy);
    for name in ["carol", "dave", "erin"] {
        assert_eq!(sign_in(&mut b, "", name, "guess").await.status, 401);
    }
    // The failure tables' sizes are exported.
    let (status, metrics) = support::replicas::admin(&proxy, "GET", "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "cloakroom_login_failure_keys{table=\"user\"} 3",
        "cloakroom_login_failure_keys{table=\"address\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in {metrics}"
        );
    }
    let r = sign_in(&mut b, "", "bob", "battery staple").await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    // Behind a trusted proxy the client is the forwarded address: another
    // client there is not locked out.
    let page = b.get(LOGIN).await;
    let form = format!(
        "username=bob&password=battery%20staple&rd=%2F&csrf={}",
        hidden(&page, "csrf")
    );
    let via = |client: &str, b: &Browser| {
        b.request(Method::POST, LOGIN)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("x-forwarded-for", client)
            .body(full(form.clone()))
            .unwrap()
    };
    let req = via("192.0.2.7", &b);
    assert_eq!(b.send(req).await.status, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_5_no_return_path_leaves_the_origin() {
    let app = App::start("app").await;
    let proxy = TestProxy::start(&local(&app, &alice(), "", "")).await;
    let attempts = [
        "//evil.test",
        "///evil.test",
        "//evil.test/%2e%2e",
        "/\\evil.test",
        "\\/evil.test",
        "\\\\evil.test",
        "/\\/evil.test",
        "https://evil.test",
        "HTTPS://EVIL.TEST",
        "HtTpS:/\\evil.test",
        "http:evil.test",
        "//evil.test@localhost",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,x",
        "%2F%2Fevil.test",
        "%2f%2fevil.test",
        "/%2F/evil.test",
        "/%2fevil.test",
        "/%5Cevil.test",
        "/%5cevil.test",
        "%5C%5Cevil.test",
        "%252F%252Fevil.test",
        "/\t/evil.test",
        "/\r\n/evil.test",
        "/%09/evil.test",
        "/%0d%0a/evil.test",
        " //evil.test",
        "\u{0}//evil.test",
        "/\u{ff0f}evil.test",
        "\u{3002}evil.test",
        "evil.test",
        "",
    ];
    for rd in attempts {
        // As a link to the form would carry it, and as a POST carries it.
        let mut b = Browser::new(&proxy);
        let r = sign_in(
            &mut b,
            &format!("?rd={}", pct_encode(rd)),
            "alice",
            "correct horse",
        )
        .await;
        assert_eq!(r.status, 303, "{rd:?}");
        assert_eq!(r.header("location"), Some("/"), "{rd:?} via the form");
        let mut b = Browser::new(&proxy);
        let page = b.get(LOGIN).await;
        let form = format!(
            "username=alice&password=correct%20horse&csrf={}&rd={}",
            hidden(&page, "csrf"),
            pct_encode(rd)
        );
        let r = b.post(LOGIN, &form).await;
        assert_eq!(r.header("location"), Some("/"), "{rd:?} posted");
    }
    // A local path is kept, query and all.
    let mut b = Browser::new(&proxy);
    let r = sign_in(
        &mut b,
        "?rd=%2Fa%2Fb%3Fc%3D1%26d%3D2",
        "alice",
        "correct horse",
    )
    .await;
    assert_eq!(r.header("location"), Some("/a/b?c=1&d=2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_3_a_required_route_sends_a_browser_to_the_local_form_and_back() {
    let app = App::start("app").await;
    let proxy = TestProxy::start(&local(&app, &alice(), "", "auth = \"required\"")).await;
    let mut b = Browser::new(&proxy);
    let nav = b
        .request(Method::GET, "/private/page?a=1")
        .header(header::ACCEPT, "text/html")
        .body(empty())
        .unwrap();
    let r = b.send(nav).await;
    assert_eq!(r.status, 302);
    let location = r.header("location").unwrap().to_string();
    assert_eq!(location, "/.cloakroom/login?rd=/private/page%3Fa%3D1");
    let query = location.trim_start_matches(LOGIN);
    let r = sign_in(&mut b, query, "alice", "correct horse").await;
    assert_eq!(r.header("location"), Some("/private/page?a=1"));
    let r = b.get("/private/page?a=1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().one("x-forwarded-user"), Some("alice"));
    assert_eq!(
        app.hits(),
        1,
        "the upstream saw only the authenticated request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_sighup_reloads_the_users_file_and_keeps_it_when_the_new_one_is_invalid() {
    let app = App::start("app").await;
    let mut proxy = TestProxy::start(&local(&app, &alice(), "", "")).await;
    let mut b = Browser::new(&proxy);
    assert_eq!(
        sign_in(&mut b, "", "bob", "battery staple").await.status,
        401
    );

    let users = format!("{}{}", alice(), user("bob", "battery staple", ""));
    std::fs::write(proxy.path("users.toml"), &users).unwrap();
    sighup_and_wait(&mut proxy).await;
    let mut b = Browser::new(&proxy);
    assert_eq!(
        sign_in(&mut b, "", "bob", "battery staple").await.status,
        303
    );

    // An invalid users file is rejected; the running one keeps working.
    let broken = format!("{users}[[user]]\nname = \"bob\"\npassword_hash = \"nope\"\n");
    std::fs::write(proxy.path("users.toml"), broken).unwrap();
    let skip = proxy.logs().len();
    proxy.signal("HUP");
    let line = proxy
        .wait_log_after(skip, 10, |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("reload rejected"))
        })
        .await
        .expect("the reload is rejected");
    let error = line["error"].as_str().unwrap();
    assert!(
        error.contains("users.toml:") && error.contains("user[3]"),
        "{error}"
    );
    for (name, password) in [("alice", "correct horse"), ("bob", "battery staple")] {
        let mut b = Browser::new(&proxy);
        assert_eq!(
            sign_in(&mut b, "", name, password).await.status,
            303,
            "{name}"
        );
    }
}

const README_SECTION: &str = "### Local users (provider = \"local\")";

/// The fenced `toml` blocks of README.md's local-users section, verbatim.
fn readme_toml_blocks() -> Vec<String> {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let section = readme
        .split_once(README_SECTION)
        .unwrap_or_else(|| panic!("README.md has no {README_SECTION:?}"))
        .1;
    // Up to the next heading (`# ` lines inside code blocks are comments).
    let section = section.split("\n## ").next().unwrap();
    let section = section.split("\n### ").next().unwrap();
    section
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split_once("\n```").expect("a closed block").0.to_string() + "\n")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_local_users_example_is_accepted_by_check_and_logs_in() {
    let blocks = readme_toml_blocks();
    let users = blocks
        .iter()
        .find(|b| b.starts_with("# users.toml"))
        .expect("a users.toml block");
    let proxy_toml = blocks
        .iter()
        .find(|b| b.starts_with("# proxy.toml"))
        .expect("a proxy.toml block");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.toml"), users).unwrap();
    std::fs::write(dir.path().join("proxy.toml"), proxy_toml).unwrap();
    let out = run_cli(&["check", "--config", "proxy.toml"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");

    // The documented passwords are the hashes' passwords; alice signs in
    // through the README's config (listener, store and upstream moved to
    // this machine: nothing else changed).
    let app = App::start("app").await;
    assert!(proxy_toml.contains("upstream = \"http://127.0.0.1:5000\""));
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"\"\n\n[store]\nbackend = \"memory\"\n\n{}",
        proxy_toml.replace("http://127.0.0.1:5000", &app.url())
    );
    let proxy =
        TestProxy::start(&ProxyConfig::verbatim(&text).file("users.toml", users.as_str())).await;
    for (name, password) in [
        ("alice", "correct horse battery staple"),
        ("bob", "Tr0ub4dor&3"),
    ] {
        let mut b = Browser::new(&proxy);
        let r = sign_in(&mut b, "?rd=%2Freports", name, password).await;
        assert_eq!(r.status, 303, "{name}: {}", r.text());
        assert_eq!(r.header("location"), Some("/reports"));
        let r = b.get("/reports").await;
        assert_eq!(r.echo().one("x-forwarded-user"), Some(name));
    }
}

/// SPEC §8.5 with §9: password checks run on a small blocking pool, so a
/// burst of logins (here with a costly hash) queues for it while ordinary
/// proxied requests are answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_5_a_burst_of_logins_does_not_stall_proxying() {
    use argon2::password_hash::PasswordHasher;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // About four times the OWASP cost per check.
    let params = argon2::Params::new(64 * 1024, 4, 1, None).unwrap();
    let heavy = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_with_salt(b"pw", b"0123456789abcdef")
        .unwrap()
        .to_string();
    let users = format!("[[user]]\nname = \"alice\"\npassword_hash = \"{heavy}\"\n");
    let app = App::start("app").await;
    let auth = "max_failures_per_user = 1000\nmax_failures_per_address = 1000";
    let proxy = TestProxy::start(&local(&app, &users, auth, "")).await;
    const BURST: usize = 16;
    let done = Arc::new(AtomicUsize::new(0));
    let mut browsers = Vec::new();
    for _ in 0..BURST {
        let mut b = Browser::new(&proxy);
        let page = b.get(LOGIN).await;
        let form = format!(
            "username=alice&password=wrong&csrf={}",
            hidden(&page, "csrf")
        );
        browsers.push((b, form));
    }
    let logins: Vec<_> = browsers
        .into_iter()
        .map(|(mut b, form)| {
            let done = done.clone();
            tokio::spawn(async move {
                let r = b.post(LOGIN, &form).await;
                done.fetch_add(1, Ordering::SeqCst);
                r.status
            })
        })
        .collect();
    // Proxied requests are answered while the logins queue for the pool.
    let mut b = Browser::new(&proxy);
    for _ in 0..5 {
        assert_eq!(b.get("/").await.status, 200);
    }
    let finished = done.load(Ordering::SeqCst);
    assert!(
        finished < BURST,
        "all {BURST} logins ended before 5 plain requests"
    );
    for l in logins {
        assert_eq!(l.await.unwrap(), 401);
    }
}

/// With one CPU (here `TOKIO_WORKER_THREADS=1`; a pinned process or a
/// one-core container alike) the proxy runs tokio's current-thread
/// scheduler: proxying on HTTP/1.1 and HTTP/2, a login (argon2 on the
/// blocking pool) and a SIGHUP reload (also on the blocking pool) all work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cpu_runs_the_current_thread_scheduler_and_serves_everything() {
    let app = App::start("app").await;
    let cfg = local(&app, &alice(), "", "").env("TOKIO_WORKER_THREADS", "1");
    let mut proxy = TestProxy::start(&cfg).await;
    assert_runtime(&mut proxy, "current-thread", 1).await;

    let mut b = Browser::new(&proxy);
    let r = sign_in(&mut b, "", "alice", "correct horse").await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(
        b.get("/x").await.echo().one("x-forwarded-user"),
        Some("alice")
    );

    let mut h2 = proxy.h2().await;
    for i in 0..20 {
        let path = format!("/h2/{i}");
        let r = support::send2(
            &mut h2,
            support::get("localhost", &path).body(empty()).unwrap(),
        )
        .await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.echo().uri, path);
    }

    sighup_and_wait(&mut proxy).await;
    assert_eq!(proxy.get("/after").await.status, 200);

    // Two CPUs (or the variable at 2): the multi-thread pool, two workers.
    let mut two =
        TestProxy::start(&local(&app, &alice(), "", "").env("TOKIO_WORKER_THREADS", "2")).await;
    assert_runtime(&mut two, "multi-thread", 2).await;
}

/// SIGHUP, and the reload it makes logged.
async fn sighup_and_wait(proxy: &mut TestProxy) {
    let skip = proxy.logs().len();
    proxy.signal("HUP");
    proxy
        .wait_log_after(skip, 10, |v| v["message"] == "configuration reloaded")
        .await
        .expect("reloaded");
}

/// The start-up line names this scheduler and number of workers.
async fn assert_runtime(proxy: &mut TestProxy, scheduler: &str, workers: u64) {
    let line = proxy
        .wait_log(5, |v| v["message"] == "runtime started")
        .await
        .expect("a runtime line");
    assert_eq!(line["scheduler"], scheduler, "{line}");
    assert_eq!(line["worker_threads"], workers, "{line}");
}
