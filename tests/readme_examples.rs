//! README.md's "In front of a Flask app", run as written: its TOML blocks,
//! read from the README at test time, in front of the real Flask apps under
//! `examples/`. Only what must differ on a test machine is replaced
//! (listeners on loopback port 0, the certificate paths, the upstream's
//! port), and each replacement checks that it found the README's value, so
//! an edited README cannot leave this testing something else.

mod support;

use std::path::Path;
use std::time::SystemTime;

use http::{header, Method, StatusCode};
use serde_json::Value;
use support::flask::Flask;
use support::session::*;
use support::{empty, statuses, within, ProxyConfig, Resp, TestProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECTION: &str = "### In front of a Flask app";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The fenced `lang` blocks of README.md's Flask section, verbatim.
fn readme_blocks(lang: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut lines = readme.lines().skip_while(|l| *l != SECTION);
    assert!(lines.next().is_some(), "README.md has no {SECTION:?}");
    let mut blocks = Vec::new();
    // The block being read: its language tag and text.
    let mut open: Option<(&str, String)> = None;
    for line in lines {
        match (open.as_mut(), line.strip_prefix("```")) {
            (None, Some(tag)) => open = Some((tag, String::new())),
            (Some(_), Some("")) => {
                let (tag, text) = open.take().unwrap();
                if tag == lang {
                    blocks.push(text);
                }
            }
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            // The next heading ends the section.
            (None, None) if line.starts_with('#') => break,
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed code block in {SECTION:?}");
    blocks
}

/// Sets `table.key` to `new` and returns what was there.
fn replace(table: &mut toml::Table, key: &str, new: &str) -> Option<toml::Value> {
    table.insert(key.to_string(), toml::Value::String(new.to_string()))
}

fn section<'a>(cfg: &'a mut toml::Table, name: &str) -> &'a mut toml::Table {
    cfg.get_mut(name)
        .and_then(toml::Value::as_table_mut)
        .unwrap_or_else(|| panic!("the README's config has no [{name}]"))
}

/// The README's config for this machine: listeners on `127.0.0.1:0` (the
/// admin listener too, which the README leaves at its fixed default), a
/// localhost certificate at the configured paths' place, the upstream's
/// port. Nothing else is touched.
fn for_this_machine(text: &str, upstream: &str) -> ProxyConfig {
    let mut cfg: toml::Table = toml::from_str(text).unwrap();
    let str_of = |v: Option<toml::Value>| v.and_then(|v| v.as_str().map(str::to_string));
    let server = section(&mut cfg, "server");
    let was = [
        str_of(replace(server, "listen", "127.0.0.1:0")),
        str_of(replace(server, "redirect_http", "127.0.0.1:0")),
        str_of(replace(server, "admin_listen", "127.0.0.1:0")),
    ];
    assert_eq!(
        was,
        [Some("0.0.0.0:443".into()), Some("0.0.0.0:80".into()), None],
        "the README's listeners changed: update this test"
    );
    let tls = section(&mut cfg, "tls");
    let was = [
        str_of(replace(tls, "cert", "certs/cert.pem")),
        str_of(replace(tls, "key", "certs/key.pem")),
    ];
    assert_eq!(
        was,
        [
            Some("/etc/cloakroom/fullchain.pem".into()),
            Some("/etc/cloakroom/privkey.pem".into())
        ],
        "the README's certificate paths changed: update this test"
    );
    let routes = cfg
        .get_mut("route")
        .and_then(toml::Value::as_array_mut)
        .expect("the README's config has no [[route]]");
    assert_eq!(routes.len(), 1, "one route in the README");
    let route = routes[0].as_table_mut().unwrap();
    assert_eq!(
        str_of(replace(route, "upstream", upstream)).as_deref(),
        Some("http://127.0.0.1:5000"),
        "the README's upstream changed: update this test"
    );
    assert!(!cfg.contains_key("store"), "the README now sets [store]");
    let (cert, key) = support::self_signed(&["localhost"]);
    ProxyConfig::verbatim(&toml::to_string(&cfg).unwrap())
        .file("certs/cert.pem", cert)
        .file("certs/key.pem", key)
}

/// The first config block: the unchanged app.
fn unchanged_app_config(upstream: &str) -> ProxyConfig {
    let blocks = readme_blocks("toml");
    assert!(!blocks.is_empty(), "no TOML block in {SECTION:?}");
    for_this_machine(&blocks[0], upstream)
}

/// The first config block with `[auth]` and `[[route]]` replaced by the
/// second's, as the README says.
fn identity_config(upstream: &str) -> ProxyConfig {
    let blocks = readme_blocks("toml");
    assert_eq!(blocks.len(), 2, "two TOML blocks in {SECTION:?}");
    let mut cfg: toml::Table = toml::from_str(&blocks[0]).unwrap();
    let changes: toml::Table = toml::from_str(&blocks[1]).unwrap();
    let mut keys: Vec<&String> = changes.keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["auth", "route"],
        "the second block replaces [auth] and [[route]]"
    );
    for (k, v) in changes {
        assert!(
            cfg.insert(k.clone(), v).is_some(),
            "nothing to replace at {k}"
        );
    }
    for_this_machine(&toml::to_string(&cfg).unwrap(), upstream)
}

/// A browser that checks every response: nothing but cloakroom's session
/// cookie (and none of the app's `X-Cloakroom-` headers) reaches it.
struct Client(Browser);

impl Client {
    fn new(proxy: &TestProxy) -> Client {
        Client(Browser::new(proxy))
    }

    /// A fresh client holding this session cookie value.
    fn holding(proxy: &TestProxy, cookie: &str) -> Client {
        let mut c = Client::new(proxy);
        c.0.set_session(cookie);
        c
    }

    fn checked(&self, r: Resp) -> Resp {
        for sc in set_cookies(&r) {
            assert_eq!(parse_set_cookie(&sc).name, COOKIE, "leaked: {sc}");
        }
        assert!(self.0.cookies.iter().all(|(n, _)| n == COOKIE));
        for h in ["x-cloakroom-login", "x-cloakroom-logout"] {
            assert_eq!(r.header(h), None, "{h} reached the browser");
        }
        r
    }

    /// Sends like a browser navigating (`Accept: text/html`), with a
    /// forged `X-Forwarded-User` that must never reach the app.
    async fn send(&mut self, method: Method, path: &str, form: Option<&str>) -> Resp {
        let b = self
            .0
            .request(method, path)
            .header(header::ACCEPT, "text/html")
            .header("x-forwarded-user", "mallory");
        let req = match form {
            Some(f) => b
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(support::full(f.to_string())),
            None => b.body(empty()),
        };
        let r = self.0.send(req.unwrap()).await;
        self.checked(r)
    }

    async fn nav(&mut self, path: &str) -> Resp {
        self.send(Method::GET, path, None).await
    }

    async fn post(&mut self, path: &str, form: &str) -> Resp {
        self.send(Method::POST, path, Some(form)).await
    }

    /// Logs in through the app's own form; returns where it redirects.
    async fn login(&mut self, path: &str, user: &str, password: &str) -> String {
        let r = self
            .post(path, &format!("username={user}&password={password}"))
            .await;
        assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
        assert!(self.0.session().is_some(), "no session after the login");
        r.header("location").unwrap().to_string()
    }

    async fn json(&mut self, path: &str) -> Value {
        let r = self.0.get(path).await;
        let r = self.checked(r);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        json(&r)
    }

    /// The app's view of its own session and headers.
    async fn state(&mut self) -> Value {
        let r = self.nav("/api/state").await;
        assert_eq!(r.status, 200, "{}", r.text());
        json(&r)
    }
}

/// A plain-HTTP `GET /login` on the redirect listener: its statuses and
/// `Location`.
async fn plain_http(proxy: &TestProxy) -> (Vec<u16>, String) {
    let mut tcp = tokio::net::TcpStream::connect(proxy.redirect_addr.unwrap())
        .await
        .unwrap();
    let req = "GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    within(10, "redirect response", tcp.read_to_end(&mut raw))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let location = text
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap_or("")
        .to_string();
    (statuses(&raw), location)
}

/// Seconds from now until `/.cloakroom/session`'s `expires_at`.
fn secs_left(info: &Value) -> i64 {
    let at = humantime::parse_rfc3339(info["expires_at"].as_str().unwrap()).unwrap();
    let now = SystemTime::now();
    match at.duration_since(now) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_flask_unchanged_app_s5_jar_s8_4_rotation_s7_1_idle_s8_7_logout() {
    let flask = Flask::start().await;
    let mut proxy = TestProxy::start(&unchanged_app_config(&flask.url())).await;
    let (status, location) = plain_http(&proxy).await;
    assert_eq!(status, [308]);
    let port = proxy.https_addr.port();
    assert_eq!(location, format!("https://localhost:{port}/login"));

    // Anonymous pages cost no session.
    let mut c = Client::new(&proxy);
    let r = c.nav("/login").await;
    assert!(r.text().contains("<form"), "{}", r.text());
    assert!(set_cookies(&r).is_empty());

    // The app's own login form, then its counter and cart.
    assert_eq!(c.login("/login", "alice", "wonderland").await, "/dashboard");
    let alice = c.0.session().unwrap();
    for visit in 1..=2 {
        let r = c.nav("/dashboard").await;
        let want = format!("alice: visit {visit}");
        let (status, to) = (r.status, r.header("location"));
        assert!(r.text().contains(&want), "{status} to {to:?}: {}", r.text());
    }
    let r = c.post("/cart", "item=apple").await;
    assert_eq!(json(&r)["cart"], serde_json::json!(["apple"]));
    let state = c.state().await;
    assert_eq!(state["user"], "alice");
    assert_eq!(state["visits"], 2);
    let sent = state["cookie_header"].as_str().unwrap();
    assert!(
        sent.starts_with("session=") && !sent.contains(COOKIE),
        "{sent}"
    );
    // The forged header is gone and cloakroom knows no user to set.
    assert_eq!(state["forwarded_user"], Value::Null);
    let info = c.json("/.cloakroom/session").await;
    assert_eq!(info["authenticated"], false);
    // The README's idle_timeout (20m) governs the session.
    let left = secs_left(&info);
    assert!((20 * 60 - 120..=20 * 60).contains(&left), "{left} s left");

    // A second login on the same session changes the jar: a new id, and
    // the old one is dead.
    c.login("/login", "bob", "builder").await;
    let bob = c.0.session().unwrap();
    assert_ne!(bob, alice);
    let rotated = |l: &Value| l["target"] == "audit" && l["event"] == "rotated";
    assert!(
        proxy.wait_log(5, rotated).await.is_some(),
        "no rotation logged"
    );
    let mut replay = Client::holding(&proxy, &alice);
    let r = replay.nav("/api/state").await;
    assert!(clears_session(&r));
    assert_eq!(json(&r)["user"], Value::Null);

    // The app's /logout (a default logout path, §8.7a) ends cloakroom's
    // session too: the cookie is cleared and the old one is dead.
    let r = c.nav("/logout").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(clears_session(&r));
    assert!(c.0.session().is_none());
    let state = c.state().await;
    assert_eq!(state["user"], Value::Null);
    assert_eq!(state["cookie_header"], Value::Null);
    assert!(c.json("/.cloakroom/session").await["expires_at"].is_null());
    let r = Client::holding(&proxy, &bob).nav("/api/state").await;
    assert!(clears_session(&r));
    assert_eq!(json(&r)["user"], Value::Null);

    // POST /.cloakroom/logout ends the session and the app's state with it.
    c.login("/login", "alice", "wonderland").await;
    c.post("/cart", "item=pear").await;
    let last = c.0.session().unwrap();
    let r = c.post("/.cloakroom/logout", "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(clears_session(&r));
    let state = Client::holding(&proxy, &last).state().await;
    assert_eq!(state["user"], Value::Null);
    assert_eq!(state["cookie_header"], Value::Null);
    drop(flask);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_flask_identity_s8_3_required_s8_4_upstream_login_s8_2_headers() {
    let snippet = readme_blocks("python");
    assert_eq!(snippet.len(), 1, "one Python block in {SECTION:?}");
    let example = std::fs::read_to_string(root().join("examples/legacy_app_identity.py")).unwrap();
    assert!(
        example.contains(&snippet[0]),
        "examples/legacy_app_identity.py does not hold the README's snippet"
    );
    let flask = Flask::start_example("legacy_app_identity.py").await;
    let mut proxy = TestProxy::start(&identity_config(&flask.url())).await;

    // Before a login: pages redirect to the app's login form without
    // asking the app, other requests get 401, public paths reach the app.
    let mut c = Client::new(&proxy);
    let r = c.nav("/dashboard").await;
    assert_eq!(r.status, StatusCode::FOUND);
    let to = r.header("location").unwrap().to_string();
    assert_eq!(to, "/.cloakroom/login?rd=/dashboard");
    let r = c.nav(&to).await;
    assert_eq!(r.header("location"), Some("/login?next=/dashboard"));
    let r = c.0.get("/api/state").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = c.nav("/static/app.css").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "Flask's own 404");
    // Werkzeug logs each request before answering it.
    let log = flask.log();
    assert!(log.contains("GET /static/app.css"), "{log}");
    assert!(!log.contains("GET /dashboard"), "{log}");
    let r = c.nav("/login?next=/dashboard").await;
    assert!(r.text().contains("<form"), "{}", r.text());
    assert!(set_cookies(&r).is_empty());

    // The login binds the user; pages load and the app gets the identity.
    let next = c
        .login("/login?next=/dashboard", "alice", "wonderland")
        .await;
    assert_eq!(next, "/dashboard");
    let alice = c.0.session().unwrap();
    let r = c.nav("/dashboard").await;
    let (status, to) = (r.status, r.header("location"));
    assert!(r.text().contains("alice: visit 1"), "{status} to {to:?}");
    c.post("/cart", "item=apple").await;
    let state = c.state().await;
    assert_eq!(state["user"], "alice");
    assert_eq!(state["forwarded_user"], "alice", "not mallory");
    assert_eq!(state["cart"], serde_json::json!(["apple"]));
    let info = c.json("/.cloakroom/session").await;
    assert_eq!(info["authenticated"], true);
    assert_eq!(info["user"], "alice");
    let login = |l: &Value| l["event"] == "login" && l["user"] == "alice";
    assert!(proxy.wait_log(5, login).await.is_some(), "no login logged");

    // Another login rotates the id; the old cookie is dead.
    c.login("/login", "bob", "builder").await;
    let bob = c.0.session().unwrap();
    assert_ne!(bob, alice);
    assert_eq!(c.state().await["forwarded_user"], "bob");
    let r = Client::holding(&proxy, &alice).nav("/dashboard").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(clears_session(&r));

    // The app's /logout ends cloakroom's session.
    let r = c.nav("/logout").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(clears_session(&r));
    assert!(c.0.session().is_none());
    let mut replay = Client::holding(&proxy, &bob);
    let r = replay.nav("/dashboard").await;
    assert_eq!(
        r.header("location"),
        Some("/.cloakroom/login?rd=/dashboard")
    );
    assert_eq!(
        replay.json("/.cloakroom/session").await["authenticated"],
        false
    );

    // So does POST /.cloakroom/logout.
    c.login("/login", "alice", "wonderland").await;
    let last = c.0.session().unwrap();
    assert_eq!(
        c.post("/.cloakroom/logout", "").await.status,
        StatusCode::SEE_OTHER
    );
    let r = Client::holding(&proxy, &last).nav("/dashboard").await;
    assert_eq!(r.status, StatusCode::FOUND);
    drop(flask);
}
