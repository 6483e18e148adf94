//! `auth.provider = "form"` (SPEC §8.4a, §8.3, §8.7a) through the real
//! binary: the unchanged `examples/legacy_app.py` logs its users in with
//! its own form and cloakroom learns who they are; a recording upstream
//! scripts the answers Flask does not give (a redirect after a failed
//! login, a redirect elsewhere) and shows the bytes the app received.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use serde_json::Value;
use support::flask::Flask;
use support::session::*;
use support::upstream::serve_loopback;
use support::{full, run_cli, Body, ProxyConfig, Repeat, Resp, TestProxy};

const PASSWORD: &str = "wonderland";
const LIMIT: usize = 64 * 1024;

/// What the recording upstream got: one entry per request.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: Vec<(String, String)>,
    len: u64,
    sha256: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An upstream that reads every body to its end (hashing it, keeping
/// nothing) and answers as its query says: `s=NNN` the status, `to=URL`
/// (percent-encoded) a `Location`, `cookie=1` a `Set-Cookie` for the jar.
/// The body is JSON `{"user": <X-Forwarded-User or null>}`.
struct Recorder {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Got>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start() -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let (addr, task) = serve_loopback(move |req| record(s.clone(), req)).await;
        Recorder { addr, seen, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn last(&self) -> Got {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no request")
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    seen: Arc<Mutex<Vec<Got>>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut len = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            len += data.len() as u64;
            digest.update(&data);
        }
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let user = parts
        .headers
        .get("x-forwarded-user")
        .map(|v| v.to_str().unwrap().to_string());
    seen.lock().unwrap().push(Got {
        path: parts.uri.path().to_string(),
        headers,
        len,
        sha256: digest.finish().as_ref().to_vec(),
    });
    let mut resp = Response::builder().header(header::CONTENT_TYPE, "application/json");
    for (k, v) in parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
    {
        match k {
            "s" => resp = resp.status(v.parse::<u16>().unwrap()),
            "to" => resp = resp.header(header::LOCATION, pct_decode(v)),
            "cookie" => resp = resp.header(header::SET_COOKIE, "app=1; Path=/"),
            _ => {}
        }
    }
    let json = serde_json::json!({ "user": user });
    Ok(resp.body(full(json.to_string())).unwrap())
}

/// `cloakroom_login_forms_unread_total{reason}` on the admin listener.
async fn unread(proxy: &TestProxy, reason: &str) -> Option<String> {
    let (status, text) = support::replicas::admin(proxy, "GET", "/metrics").await;
    assert_eq!(status, 200);
    let series = format!("cloakroom_login_forms_unread_total{{reason=\"{reason}\"}}");
    support::replicas::metric(&text, &series)
}

fn sha256(b: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .to_vec()
}

/// `[auth] provider = "form"` with `/dashboard` as the success signal.
const FORM: &str = "[auth]\nprovider = \"form\"\nform_success_paths = [\"/dashboard\"]";

/// The session the proxy sees for `b`: `(authenticated, user)`.
async fn whoami(b: &mut Browser) -> (bool, Value) {
    let r = b.get("/.cloakroom/session").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = json(&r);
    (v["authenticated"] == true, v["user"].clone())
}

/// A POST of `body` as `content_type` with this browser's cookies.
async fn post(b: &mut Browser, path: &str, content_type: &str, body: Body) -> Resp {
    let req = b
        .request(Method::POST, path)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .unwrap();
    b.send(req).await
}

/// A multipart/form-data body (RFC 7578) with these text fields and a
/// binary file part.
fn multipart(boundary: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"avatar\"; filename=\"a.bin\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(&[0, 1, 2, b'\r', b'\n', 0xff, 0xfe, b'-', b'-']);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// Every log line so far, stdout and stderr, as text.
fn all_logs(proxy: &TestProxy) -> String {
    let lines: Vec<String> = proxy.logs().iter().map(Value::to_string).collect();
    format!("{}\n{}", lines.join("\n"), proxy.stderr())
}

/// Panics when any file under `dir` holds `needle`.
fn assert_no_file_holds(dir: &std::path::Path, needle: &[u8]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_no_file_holds(&path, needle);
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{} holds {:?}",
            path.display(),
            String::from_utf8_lossy(needle)
        );
    }
}

/// The legacy app behind a form-provider proxy with debug logs and the
/// embedded store; `/echo` goes to a recorder, so what an upstream is sent
/// can be seen without changing the app.
async fn legacy(route_extra: &str) -> (Flask, Recorder, TestProxy) {
    let flask = Flask::start().await;
    let rec = Recorder::start().await;
    let cfg = ProxyConfig::new()
        .embedded()
        .env("RUST_LOG", "trace")
        .raw(FORM)
        .route(&flask.url(), route_extra)
        .route(&rec.url(), "path_prefix = \"/echo\"");
    let proxy = TestProxy::start(&cfg).await;
    (flask, rec, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_4a_the_legacy_apps_own_login_binds_its_user_rotates_and_logs_out() {
    let (flask, rec, mut proxy) = legacy("").await;
    let mut b = Browser::new(&proxy);

    // An anonymous session first (a jar cookie from the echo route).
    let r = b.get("/echo/start?cookie=1").await;
    assert_eq!(r.status, 200);
    let before = b.session().expect("an anonymous session");
    assert_eq!(whoami(&mut b).await, (false, Value::Null));

    // A wrong password: Flask answers 401 with its form; nothing is bound.
    let r = b
        .post("/login", "username=alice&password=not-the-password")
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(whoami(&mut b).await, (false, Value::Null));
    assert_eq!(b.session().as_deref(), Some(before.as_str()));

    // The right one: Flask redirects to /dashboard; cloakroom binds alice
    // under a new session id.
    let r = b
        .post("/login", &format!("username=alice&password={PASSWORD}"))
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.header("location"), Some("/dashboard"));
    let after = b.session().expect("a session cookie");
    assert_ne!(after, before, "the login rotates the session id (§4.6)");
    assert_eq!(whoami(&mut b).await, (true, Value::from("alice")));
    let login = audits(&proxy, "login");
    assert_eq!(login.len(), 1, "{login:?}");
    assert_eq!(login[0]["user"], "alice");

    // The identity reaches the app and any other upstream.
    let state = json(&b.get("/api/state").await);
    assert_eq!(state["user"], "alice");
    assert_eq!(state["forwarded_user"], "alice");
    let r = b.get("/echo/who").await;
    assert_eq!(json(&r)["user"], "alice");
    assert_eq!(rec.last().header("x-forwarded-user"), Some("alice"));

    // The old id is dead.
    let mut old = Browser::new(&proxy);
    old.set_session(&before);
    assert_eq!(whoami(&mut old).await, (false, Value::Null));

    // The app's own logout link ends the cloakroom session (§8.7a).
    let r = b.get("/logout").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(clears_session(&r), "{:?}", r.headers);
    assert_eq!(whoami(&mut b).await, (false, Value::Null));
    let mut kept = Browser::new(&proxy);
    kept.set_session(&after);
    assert_eq!(whoami(&mut kept).await, (false, Value::Null));
    assert_eq!(audits(&proxy, "logout").len(), 1);

    // Neither password reached a log line (trace level) or the store.
    assert_eq!(proxy.stop().await.code(), Some(0));
    let logs = all_logs(&proxy);
    assert!(logs.contains("\"user\":\"alice\""), "the logs are read");
    for secret in [PASSWORD, "not-the-password"] {
        assert!(!logs.contains(secret), "a log holds {secret}");
        assert_no_file_holds(&proxy.path("data"), secret.as_bytes());
    }
    drop(flask);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_4a_a_multipart_login_form_binds_too() {
    let (_flask, _rec, proxy) = legacy("").await;
    let mut b = Browser::new(&proxy);
    let body = multipart("XyZ", &[("username", "bob"), ("password", "builder")]);
    let ct = "multipart/form-data; boundary=XyZ";
    let r = post(&mut b, "/login", ct, full(body)).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(whoami(&mut b).await, (true, Value::from("bob")));
    assert_eq!(json(&b.get("/api/state").await)["forwarded_user"], "bob");
    assert!(!all_logs(&proxy).contains("builder"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_3_a_required_route_sends_the_browser_to_the_apps_login_form() {
    let (_flask, _rec, proxy) = legacy("auth = \"required\"\npublic_paths = [\"/login\"]").await;
    let mut b = Browser::new(&proxy);
    let req = b
        .request(Method::GET, "/dashboard")
        .header(header::ACCEPT, "text/html")
        .body(support::empty())
        .unwrap();
    let r = b.send(req).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let to_cloakroom = r.header("location").unwrap().to_string();
    assert_eq!(to_cloakroom, "/.cloakroom/login?rd=/dashboard");
    let r = b.get(&to_cloakroom).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.header("location"), Some("/login?next=/dashboard"));
    // Flask's form posts back to its own URL and honours `next`.
    let r = b
        .post(
            "/login?next=/dashboard",
            &format!("username=alice&password={PASSWORD}"),
        )
        .await;
    assert_eq!(r.header("location"), Some("/dashboard"));
    assert_eq!(whoami(&mut b).await, (true, Value::from("alice")));
    let r = b.get("/dashboard").await;
    assert!(r.text().contains("alice: visit 1"), "{}", r.text());
}

/// A proxy with the form provider in front of a recorder.
async fn recorded() -> (Recorder, TestProxy) {
    let rec = Recorder::start().await;
    let cfg = ProxyConfig::new().admin().raw(FORM).route(&rec.url(), "");
    let proxy = TestProxy::start(&cfg).await;
    (rec, proxy)
}

/// `/login` answered with status `s` and, when given, `Location: to`.
fn scripted_login(s: u16, to: Option<&str>) -> String {
    match to {
        Some(to) => format!("/login?s={s}&to={}", pct_encode(to)),
        None => format!("/login?s={s}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_4a_only_a_redirect_under_form_success_paths_binds() {
    let (rec, proxy) = recorded().await;
    let upstream_dashboard = format!("{}/dashboard", rec.url());
    let own_dashboard = format!("{}/dashboard/", Browser::new(&proxy).origin());
    let cases: &[(u16, Option<&str>, bool)] = &[
        // Failures: a redirect back to the form, elsewhere, no redirect.
        (302, Some("/login?error=1"), false),
        (303, Some("/elsewhere"), false),
        (302, Some("/dashboardx"), false),
        (302, Some("/dashboard/../login"), false),
        (302, Some("https://evil.test/dashboard"), false),
        (200, None, false),
        (401, None, false),
        (500, None, false),
        (302, None, false),
        // Successes: relative, absolute naming the upstream or this origin.
        (302, Some("/dashboard"), true),
        (303, Some("/dashboard/home?tab=1"), true),
        (302, Some(&upstream_dashboard), true),
        (301, Some(&own_dashboard), true),
    ];
    for &(s, to, binds) in cases {
        let mut b = Browser::new(&proxy);
        let r = b
            .post(&scripted_login(s, to), "username=carol&password=x")
            .await;
        assert_eq!(r.status.as_u16(), s);
        let want = match binds {
            true => (true, Value::from("carol")),
            false => (false, Value::Null),
        };
        assert_eq!(whoami(&mut b).await, want, "{s} {to:?}");
        if !binds {
            assert!(b.session().is_none(), "{s} {to:?}: no session was made");
        }
    }
    // A redirect to a login path never counts, even under a success path
    // as broad as `/`.
    let cfg = ProxyConfig::new()
        .raw("[auth]\nprovider = \"form\"\nform_success_paths = [\"/\"]")
        .route(&rec.url(), "");
    let broad = TestProxy::start(&cfg).await;
    for (to, binds) in [("/login?error=1", false), ("/signin", false), ("/", true)] {
        let mut b = Browser::new(&broad);
        b.post(&scripted_login(302, Some(to)), "username=carol&password=x")
            .await;
        assert_eq!(whoami(&mut b).await.0, binds, "{to}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_4a_ambiguous_refused_or_foreign_forms_bind_nothing() {
    let (rec, mut proxy) = recorded().await;
    let ok = scripted_login(302, Some("/dashboard"));
    let long = "a".repeat(257);
    let refused = [
        // Apps disagree on which of two wins: neither is bound.
        (
            "application/x-www-form-urlencoded",
            "username=alice&username=mallory&password=x".to_string(),
        ),
        (
            "application/x-www-form-urlencoded",
            "user=alice&password=x".to_string(),
        ),
        (
            "application/x-www-form-urlencoded",
            format!("username={long}&password=x"),
        ),
        (
            "application/x-www-form-urlencoded",
            "username=al%0Aice&password=x".to_string(),
        ),
        (
            "application/x-www-form-urlencoded",
            "username=%FF&password=x".to_string(),
        ),
        (
            "application/json",
            r#"{"username":"alice","password":"x"}"#.to_string(),
        ),
        ("text/plain", "username=alice&password=x".to_string()),
    ];
    for (ct, body) in refused {
        let mut b = Browser::new(&proxy);
        let r = post(&mut b, &ok, ct, full(body.clone())).await;
        assert_eq!(r.status, StatusCode::FOUND);
        assert_eq!(whoami(&mut b).await, (false, Value::Null), "{ct} {body}");
        // Forwarded all the same, unchanged.
        assert_eq!(rec.last().sha256, sha256(body.as_bytes()), "{ct} {body}");
    }
    // Refused values are logged without the value.
    proxy
        .wait_log(5, |v| v["source"] == "login form")
        .await
        .expect("a refused login is logged");
    let logs = all_logs(&proxy);
    assert!(!logs.contains(&long) && !logs.contains("mallory"), "{logs}");
    // A form from another site (login CSRF) is forwarded, unread.
    for (origin, fetch_site) in [
        (Some("https://evil.test"), None),
        (None, Some("cross-site")),
    ] {
        let mut b = Browser::new(&proxy);
        let mut req = b.request_from(Method::POST, &ok, origin);
        if let Some(site) = fetch_site {
            req = req.header("sec-fetch-site", site);
        }
        let req = req
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(full("username=alice&password=x"))
            .unwrap();
        let r = b.send(req).await;
        assert_eq!(r.status, StatusCode::FOUND, "{origin:?}");
        assert_eq!(rec.last().sha256, sha256(b"username=alice&password=x"));
        assert_eq!(whoami(&mut b).await, (false, Value::Null), "{origin:?}");
    }
    assert_eq!(unread(&proxy, "cross_site").await, Some("2".into()));
    // Only a POST to a login path is read: elsewhere nothing binds.
    let mut b = Browser::new(&proxy);
    let r = b
        .post("/other?s=302&to=%2Fdashboard", "username=alice")
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(whoami(&mut b).await, (false, Value::Null));
}

/// A body sent in several chunks with no length (HTTP/1.1 chunked).
fn chunked(bytes: &[u8]) -> Body {
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = bytes
        .chunks(7)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    StreamBody::new(futures_util::stream::iter(chunks)).boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_4a_the_login_body_reaches_the_app_byte_identical() {
    let (rec, proxy) = recorded().await;
    let ok = scripted_login(302, Some("/dashboard"));
    let url = "username=d%C3%A9j%C3%A0+vu&password=p%26ss+w%3Drd&x=%00%FF&&=";
    let mp = multipart("----b0und", &[("password", "p&ss"), ("username", "zoë")]);
    let mp_ct = "multipart/form-data; boundary=----b0und";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "application/x-www-form-urlencoded",
            url.as_bytes().to_vec(),
            "déjà vu",
        ),
        (mp_ct, mp, "zoë"),
    ];
    for (ct, body, user) in cases {
        for sized in [true, false] {
            let mut b = Browser::new(&proxy);
            let sent = match sized {
                true => full(body.clone()),
                false => chunked(&body),
            };
            let r = post(&mut b, &ok, ct, sent).await;
            assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
            let got = rec.last();
            assert_eq!(got.path, "/login");
            assert_eq!(got.len, body.len() as u64, "{ct} sized={sized}");
            assert_eq!(got.sha256, sha256(&body), "{ct} sized={sized}");
            assert_eq!(got.header("content-type"), Some(ct));
            // Read whole, it goes on with its length.
            assert_eq!(
                got.header("content-length"),
                Some(body.len().to_string().as_str())
            );
            assert_eq!(whoami(&mut b).await, (true, Value::from(user)), "{ct}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_4a_a_body_over_64_kib_streams_on_unchanged_and_binds_nothing() {
    let (rec, proxy) = recorded().await;
    let ok = scripted_login(302, Some("/dashboard"));
    let ct = "application/x-www-form-urlencoded";
    let form = |len: usize| {
        let mut body = format!("username=alice&password={PASSWORD}&pad=").into_bytes();
        body.resize(len, b'x');
        body
    };
    // 64 KiB exactly is read; one byte more is not.
    for (len, binds) in [(LIMIT, true), (LIMIT + 1, false), (200 * 1024, false)] {
        for sized in [true, false] {
            let body = form(len);
            let mut b = Browser::new(&proxy);
            let sent = match sized {
                true => full(body.clone()),
                false => chunked(&body),
            };
            let r = post(&mut b, &ok, ct, sent).await;
            assert_eq!(r.status, StatusCode::FOUND);
            let got = rec.last();
            assert_eq!(got.len, len as u64, "{len} sized={sized}");
            assert_eq!(got.sha256, sha256(&body), "{len} sized={sized}");
            if sized {
                let cl = len.to_string();
                assert_eq!(got.header("content-length"), Some(cl.as_str()));
            }
            assert_eq!(whoami(&mut b).await.0, binds, "{len} sized={sized}");
        }
    }
    // A large body streams: the proxy's peak memory does not follow it.
    let len: u64 = 48 << 20;
    let peak = proxy.memory_kib("VmHWM");
    for body in [Repeat::body(len), Repeat::unsized_body(len)] {
        let mut b = Browser::new(&proxy);
        let r = post(&mut b, &ok, ct, body).await;
        assert_eq!(r.status, StatusCode::FOUND);
        assert_eq!(rec.last().len, len);
        assert!(!whoami(&mut b).await.0);
    }
    let grown = proxy.memory_kib("VmHWM").saturating_sub(peak);
    assert!(
        grown < 16 * 1024,
        "peak RSS grew {grown} KiB for 48 MiB bodies"
    );
    // Each body over the limit, sized or not, is counted.
    assert_eq!(unread(&proxy, "too_large").await, Some("6".into()));
}

#[test]
fn s8_4a_check_requires_form_success_paths_with_the_form_provider() {
    let dir = tempfile::tempdir().unwrap();
    let route = "\n[[route]]\nupstream = \"http://127.0.0.1:5000\"\n";
    let write = |name: &str, auth: &str| {
        std::fs::write(dir.path().join(name), format!("[auth]\n{auth}{route}")).unwrap();
    };
    let check = |name: &str| {
        let out = run_cli(&["check", "--config", name], dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code().unwrap(), stderr)
    };
    write("missing.toml", "provider = \"form\"\n");
    let (code, stderr) = check("missing.toml");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "missing.toml:2: auth.form_success_paths: is required with provider = \"form\""
        ) && stderr.contains("[\"/dashboard\"]"),
        "{stderr}"
    );
    write(
        "empty.toml",
        "provider = \"form\"\nform_success_paths = []\nform_user_field = \"\"\n",
    );
    let (code, stderr) = check("empty.toml");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("empty.toml:3: auth.form_success_paths: is required"),
        "{stderr}"
    );
    assert!(
        stderr.contains("empty.toml:4: auth.form_user_field: \"\" is not a form field name"),
        "{stderr}"
    );
    write(
        "good.toml",
        "provider = \"form\"\nform_success_paths = [\"/dashboard\"]\n",
    );
    let (code, stderr) = check("good.toml");
    assert_eq!((code, stderr.as_str()), (0, ""));
}

const README_SECTION: &str = "### The app's own login form (provider = \"form\")";

/// The one TOML block of README.md's form-provider section.
fn readme_block() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme
        .split_once(&format!("{README_SECTION}\n"))
        .unwrap_or_else(|| panic!("README.md has no {README_SECTION:?}"))
        .1;
    // Up to the next heading (comments in the block start with '#' too).
    let section = section.split("\n## ").next().unwrap();
    let section = section.split("\n### ").next().unwrap();
    let block = section
        .split_once("```toml\n")
        .expect("a toml block")
        .1
        .split_once("```")
        .unwrap()
        .0;
    block.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_form_provider_example_is_accepted_and_works_with_the_legacy_app() {
    let text = readme_block();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("proxy.toml"), &text).unwrap();
    let out = run_cli(&["check", "--config", "proxy.toml"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "", "no warnings");

    // Run as written, with only the listeners and the app's port moved.
    let flask = Flask::start().await;
    let mut table: toml::Table = toml::from_str(&text).unwrap();
    let server = table["server"].as_table_mut().unwrap();
    server.insert("listen".into(), "127.0.0.1:0".into());
    server.insert("admin_listen".into(), "".into());
    let route = &mut table["route"].as_array_mut().unwrap()[0];
    let upstream = route.get("upstream").and_then(|u| u.as_str());
    assert_eq!(upstream, Some("http://127.0.0.1:5000"));
    route
        .as_table_mut()
        .unwrap()
        .insert("upstream".into(), flask.url().into());
    let proxy = TestProxy::start(&ProxyConfig::verbatim(&table.to_string())).await;
    let mut b = Browser::new(&proxy);
    let r = b.get("/dashboard").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "auth = \"required\"");
    // A browser at the front page goes through the app's form and back.
    let req = b
        .request(Method::GET, "/")
        .header(header::ACCEPT, "text/html")
        .body(support::empty())
        .unwrap();
    let r = b.send(req).await;
    assert_eq!(r.header("location"), Some("/.cloakroom/login?rd=/"));
    let r = b.get("/.cloakroom/login?rd=/").await;
    assert_eq!(r.header("location"), Some("/login?next=/"));
    let r = b
        .post("/login?next=/", "username=alice&password=builder")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "a wrong password");
    assert_eq!(whoami(&mut b).await, (false, Value::Null));
    let r = b
        .post(
            "/login?next=/",
            &format!("username=alice&password={PASSWORD}"),
        )
        .await;
    assert_eq!(r.header("location"), Some("/"));
    assert_eq!(whoami(&mut b).await, (true, Value::from("alice")));
    assert!(b.get("/").await.text().contains("Hello alice"));
    assert_eq!(json(&b.get("/api/state").await)["forwarded_user"], "alice");
    let r = b.get("/logout").await;
    assert!(clears_session(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_4a_an_http2_login_form_is_read_and_forwarded_unchanged() {
    let (rec, proxy) = recorded().await;
    let ok = scripted_login(302, Some("/dashboard"));
    let body = b"password=p%40ss&username=erin".to_vec();
    for sized in [true, false] {
        let mut h2 = proxy.h2().await;
        let sent = match sized {
            true => full(body.clone()),
            false => chunked(&body),
        };
        let req = Request::post(format!("{}{ok}", proxy.origin()))
            .header(header::ORIGIN, proxy.origin())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(sent)
            .unwrap();
        let r = support::send2(&mut h2, req).await;
        assert_eq!(r.status, StatusCode::FOUND);
        assert_eq!(rec.last().sha256, sha256(&body), "sized={sized}");
        let cookie = session_set_cookie(&r).expect("a session for erin");
        let mut b = Browser::new(&proxy);
        b.set_session(&cookie.value);
        assert_eq!(whoami(&mut b).await, (true, Value::from("erin")));
    }
}

/// `first`, a pause of `gap`, then `rest`, with no length.
fn paused(first: &[u8], gap: std::time::Duration, rest: &[u8]) -> Body {
    let parts = [Bytes::copy_from_slice(first), Bytes::copy_from_slice(rest)];
    let frames = futures_util::stream::unfold(0usize, move |i| {
        let part = parts.get(i).cloned();
        async move {
            if i == 1 {
                tokio::time::sleep(gap).await;
            }
            part.map(|p| (Ok::<_, Infallible>(Frame::data(p)), i + 1))
        }
    });
    StreamBody::new(frames).boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_4a_a_login_body_slower_than_the_read_limit_streams_on_and_binds_nothing() {
    let rec = Recorder::start().await;
    let cfg = ProxyConfig::new()
        .admin()
        .server("request_header_timeout = \"1s\"")
        .raw(FORM)
        .route(&rec.url(), "");
    let proxy = TestProxy::start(&cfg).await;
    let ok = scripted_login(302, Some("/dashboard"));
    let (first, rest) = (&b"username=alice&pass"[..], &b"word=x"[..]);
    let gap = std::time::Duration::from_millis(2500);
    let mut b = Browser::new(&proxy);
    let ct = "application/x-www-form-urlencoded";
    let r = post(&mut b, &ok, ct, paused(first, gap, rest)).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(rec.last().sha256, sha256(&[first, rest].concat()));
    assert_eq!(whoami(&mut b).await, (false, Value::Null));
    assert_eq!(unread(&proxy, "too_slow").await, Some("1".into()));
    // The same body without the pause binds.
    let mut b = Browser::new(&proxy);
    let r = post(&mut b, &ok, ct, paused(first, Default::default(), rest)).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(whoami(&mut b).await, (true, Value::from("alice")));
}
