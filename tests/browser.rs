//! A real browser through the real binary (SPEC §4.2, §5.1, §6): Debian's
//! headless Chromium, driven by `tests/browser/login.mjs` (playwright-core),
//! logs into `examples/legacy_app.py` behind cloakroom. The browser must end
//! up holding exactly one cookie, cloakroom's, which scripts cannot read.
//! And (SPEC §8.3, §8.5) `tests/browser/local_login.mjs` signs in with
//! cloakroom's own login form, scripts off, from a protected page and back.
//!
//! Needs `/usr/bin/chromium`, `node` and `tests/browser/node_modules`;
//! `scripts/test.sh` installs what is missing. A missing piece fails the
//! test: it never skips.

mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::flask::{python, require_modules, Flask};
use support::node::{run_node, NodeRun};
use support::{ProxyConfig, TestProxy};

const SESSION_COOKIE: &str = "__Host-cloakroom";
/// Launch, log in, reload and read cookies: about 5 s on an idle machine.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);
const FLASK_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// One Chromium at a time: the machine has two cores.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The legacy app with one setting changed before it serves, for the
/// negative control (`support::Flask` runs it only as shipped); killed on
/// drop.
struct TweakedFlask {
    addr: SocketAddr,
    child: Child,
    log: tempfile::NamedTempFile,
}

impl TweakedFlask {
    /// `tweak` is Python run on the imported `legacy_app` module `m`.
    async fn start(tweak: &str) -> TweakedFlask {
        require_modules(&["flask"]);
        // Ask the kernel for a free port; Flask cannot be handed a socket.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let code = format!(
            "import sys; sys.path.insert(0, {dir:?}); import legacy_app as m\n{tweak}\n\
             m.app.run(host='127.0.0.1', port={port}, threaded=True)",
            dir = root().join("examples").display().to_string(),
        );
        let child = Command::new(python())
            .arg("-c")
            .arg(code)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python().display()));
        let mut flask = TweakedFlask {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            log,
        };
        flask.wait_ready().await;
        flask
    }

    /// Polls `GET /login` until the app answers, the process dies or the
    /// deadline passes.
    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + FLASK_READY_TIMEOUT;
        loop {
            if self.answers().await {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the Flask app exited ({status}): {}", self.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Flask app did not answer on {} within {FLASK_READY_TIMEOUT:?}: {}",
                self.addr,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn answers(&self) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(self.addr).await else {
            return false;
        };
        let req = b"GET /login HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        let mut head = [0u8; 12];
        s.write_all(req).await.is_ok()
            && s.read_exact(&mut head).await.is_ok()
            && head.starts_with(b"HTTP/1.")
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn log(&self) -> String {
        let mut text = String::new();
        let _ = self
            .log
            .reopen()
            .and_then(|mut f| f.read_to_string(&mut text));
        text
    }
}

impl Drop for TweakedFlask {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `node tests/browser/login.mjs ORIGIN` (blocking).
fn run_browser(origin: &str) -> NodeRun {
    run_node("login.mjs", &[origin], &[], BROWSER_TIMEOUT)
}

async fn browse(upstream: &str, route_extra: &str) -> NodeRun {
    let proxy = TestProxy::start(&ProxyConfig::new().route(upstream, route_extra)).await;
    let origin = proxy.origin();
    let _one = BROWSER.lock().await;
    tokio::task::spawn_blocking(move || run_browser(&origin))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_2_s5_1_browser_holds_only_the_httponly_session_cookie() {
    let flask = Flask::start().await;
    let run = browse(&flask.url(), "").await;
    let r = &run.report;
    assert!(
        run.code == Some(0) && run.failures().is_empty(),
        "browser checks failed (exit {:?}): {:?}\nreport: {r}\nstderr: {}\nflask: {}",
        run.code,
        run.failures(),
        run.stderr,
        flask.log()
    );

    // The same facts, checked here too rather than only trusted from the
    // script's own verdict.
    assert!(r["dashboard"].as_str().unwrap().contains("alice: visit 1"));
    assert!(r["dashboard_again"]
        .as_str()
        .unwrap()
        .contains("alice: visit 2"));
    assert_eq!(r["document_cookie"], "", "scripts could read a cookie");
    let cookies = r["cookies"].as_array().unwrap();
    assert_eq!(cookies.len(), 1, "the browser holds {cookies:?}");
    let c = &cookies[0];
    assert_eq!(c["name"], SESSION_COOKIE);
    assert_eq!(c["httpOnly"], true);
    assert_eq!(c["secure"], true);
    assert_eq!(c["sameSite"], "Lax");
    assert_eq!(c["path"], "/");
}

/// The checks above are worth something only if they catch a leak: the
/// same app, made to send a script-readable `session` cookie that the route
/// passes through to the browser, must fail them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_checks_catch_a_cookie_that_reaches_scripts() {
    let flask = TweakedFlask::start("m.app.config['SESSION_COOKIE_HTTPONLY'] = False").await;
    let run = browse(
        &flask.url(),
        "passthrough_cookies = [\"session\"]\nscript_readable_cookies = [\"session\"]",
    )
    .await;
    assert_eq!(
        run.code,
        Some(1),
        "expected failed checks; report: {}; stderr: {}",
        run.report,
        run.stderr
    );
    let failures = run.failures();
    for expected in [
        "document.cookie exposes Flask's session cookie",
        "Flask's session cookie reached the browser",
    ] {
        assert!(
            failures.contains(&expected),
            "{expected:?} not in {failures:?}"
        );
    }
    // The login itself still worked: the failures are about cookies only.
    assert!(run.report["dashboard_again"]
        .as_str()
        .unwrap()
        .contains("alice: visit 2"));
}

/// SPEC §8.3, §8.5: a protected page sends Chromium (scripts off) to the
/// local login form; a wrong password shows the form again with an alert;
/// the right one lands back on the page first asked for, authenticated,
/// with nothing blocked by the page's CSP and nothing fetched elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_5_a_real_browser_signs_in_with_the_local_form() {
    let app = support::session::App::start("app").await;
    let hash = cloakroom::password::hash(b"wonderland").unwrap();
    let users =
        format!("[[user]]\nname = \"alice\"\npassword_hash = \"{hash}\"\ngroups = [\"staff\"]\n");
    let config = ProxyConfig::new()
        .raw("[auth]\nprovider = \"local\"")
        .route(&app.url(), "auth = \"required\"")
        .file("users.toml", users);
    let proxy = TestProxy::start(&config).await;
    let origin = proxy.origin();
    let run = {
        let _one = BROWSER.lock().await;
        let origin = origin.clone();
        tokio::task::spawn_blocking(move || {
            run_node("local_login.mjs", &[&origin], &[], BROWSER_TIMEOUT)
        })
        .await
        .unwrap()
    };
    let r = &run.report;
    assert!(
        run.code == Some(0) && run.failures().is_empty(),
        "browser checks failed (exit {:?}): {:?}\nreport: {r}\nstderr: {}",
        run.code,
        run.failures(),
        run.stderr,
    );
    // The same facts, checked here too.
    assert_eq!(
        r["login_url"],
        format!("{origin}/.cloakroom/login?rd=/reports/q%3Fyear%3D2026")
    );
    assert_eq!(r["final_url"], format!("{origin}/reports/q?year=2026"));
    assert_eq!(r["upstream_user"], "alice");
    assert_eq!(r["upstream_groups"], "staff");
    // (Not `app.hits()`: Chromium asks for /favicon.ico on its own once
    // signed in.)
    assert!(r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u.as_str().unwrap().starts_with(&origin)));
}
