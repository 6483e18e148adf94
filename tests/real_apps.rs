//! Real apps, unchanged, behind cloakroom's default route settings: the
//! Django admin, Trac and the bundled legacy Flask app, each driven by
//! Debian's headless Chromium (`tests/browser/real_app.mjs`, flows in
//! `tests/browser/apps.mjs`) through the real binary. The config sets only
//! what a test machine needs (loopback listener, memory store, no admin
//! API) and one `[[route]]` with nothing but its `upstream`: no
//! `login_paths`, `logout_paths`, `preserve_host`, `rewrite_location` or
//! `translate_origin`, since the defaults are what is on trial.
//!
//! Each run browses anonymously, logs in, does real work (Django: add a
//! group, put a user in it; Trac: file a ticket, edit a wiki page; Flask:
//! the visit counter and the cart), logs out, and must show:
//! - the browser only ever held `__Host-cloakroom`, HttpOnly and Secure,
//!   and scripts never read a cookie (SPEC §4.2, §5.1);
//! - no URL the browser requested, no `Location` it was given and no page
//!   it showed named the upstream's `host:port` (SPEC §9.6a, §9.7);
//! - login issued a new session id and the old one stopped working (SPEC
//!   §4.6, §8.4; Trac's stock login is a GET with HTTP authentication, a
//!   login submission like a POST);
//! - the app's own logout ended the session: the logged-in id, replayed to
//!   `GET /.cloakroom/session`, is cleared, and the audit log says `logout`
//!   for it (SPEC §8.7a).
//!
//! Needs Django and Trac in the test venv, `/usr/bin/chromium`, `node` and
//! `tests/browser/node_modules`; `scripts/test.sh` installs what is
//! missing. A missing piece fails the test: it never skips.

mod support;

use std::time::Duration;

use serde_json::Value;

use support::flask::Flask;
use support::node::{run_node, NodeRun};
use support::realapp::RealApp;
use support::{ProxyConfig, TestProxy};

const SESSION_COOKIE: &str = "__Host-cloakroom";
/// A whole flow takes 10–20 s on an idle machine; two cores are shared.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(150);

/// One Chromium at a time (two cores); the apps start in parallel.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Target<'a> {
    app: &'a str,
    upstream: String,
    user: &'a str,
    password: &'a str,
}

/// Starts cloakroom with the default route to `t.upstream` and runs the
/// app's flow in Chromium.
async fn drive(t: &Target<'_>) -> (TestProxy, NodeRun) {
    let proxy = TestProxy::start(&ProxyConfig::new().route(&t.upstream, "")).await;
    let args = [t.app.to_string(), proxy.origin(), t.upstream.clone()];
    let envs = [
        ("CLOAKROOM_APP_USER".to_string(), t.user.to_string()),
        ("CLOAKROOM_APP_PASSWORD".to_string(), t.password.to_string()),
    ];
    let _one = BROWSER.lock().await;
    let run = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_node("real_app.mjs", &args, &envs, BROWSER_TIMEOUT)
    })
    .await
    .unwrap();
    (proxy, run)
}

/// The last `n` bytes of a log, for failure messages.
fn tail(text: &str, n: usize) -> &str {
    let mut start = text.len().saturating_sub(n);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The proxy's last access-log lines as `METHOD path status`.
fn access_tail(proxy: &TestProxy, n: usize) -> String {
    let lines = proxy.access_logs();
    let skip = lines.len().saturating_sub(n);
    lines[skip..]
        .iter()
        .map(|l| {
            let text = |k: &str| l[k].as_str().unwrap_or("?").to_string();
            format!("{} {} {}", text("method"), text("path"), l["status"])
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// The report's verdict first, then the same session facts read back from
/// cloakroom's audit log rather than only trusted from the script.
async fn verdict(t: &Target<'_>, proxy: &mut TestProxy, run: &NodeRun, app_log: &str) {
    let r = &run.report;
    // Handles only (never a cookie value), for `--nocapture` readers.
    eprintln!("{}: session {}", t.app, r["session"]);
    assert!(
        run.code == Some(0) && run.failures().is_empty(),
        "{} behind cloakroom failed (exit {:?}):\n  {}\nsteps: {}\nsession: {}\nnode stderr: {}\n\
         {} log (tail): {}\ncloakroom requests (tail):\n  {}\ncloakroom stderr (tail): {}",
        t.app,
        run.code,
        run.failures().join("\n  "),
        r["steps"],
        r["session"],
        tail(&run.stderr, 2000),
        t.app,
        tail(app_log, 3000),
        access_tail(proxy, 30),
        tail(&proxy.stderr(), 2000),
    );
    assert_eq!(
        r["cookie_names"],
        serde_json::json!([SESSION_COOKIE]),
        "the browser held other cookies"
    );

    let s = &r["session"];
    let handle = |k: &str| s[k].as_str().map(str::to_string);
    let after_login = handle("after_login").expect("no session after login");
    let event_for = |event: &'static str, h: String| {
        move |l: &Value| l["event"] == event && l["session"].as_str() == Some(h.as_str())
    };
    // Every login issues a new id: a rotation of the anonymous session, or
    // a session created by the login itself.
    let event = match handle("before_login") {
        Some(_) => "rotated",
        None => "session_created",
    };
    assert!(
        proxy
            .wait_log(5, event_for(event, after_login.clone()))
            .await
            .is_some(),
        "no `{event}` audit event for the id issued at login ({after_login})"
    );
    let logged_in = handle("before_logout").expect("no session before logout");
    assert!(
        proxy
            .wait_log(5, event_for("logout", logged_in.clone()))
            .await
            .is_some(),
        "no `logout` audit event for the logged-in session ({logged_in})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn django_admin_login_group_user_logout_s4_s8_4_s8_7a_s9_6a() {
    let app = RealApp::django().await;
    let t = Target {
        app: "django",
        upstream: app.url(),
        user: app.user,
        password: app.password,
    };
    let (mut proxy, run) = drive(&t).await;
    verdict(&t, &mut proxy, &run, &app.log()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trac_login_ticket_wiki_logout_s4_s8_7a_s9_6a_s9_7() {
    let app = RealApp::trac().await;
    let t = Target {
        app: "trac",
        upstream: app.url(),
        user: app.user,
        password: app.password,
    };
    let (mut proxy, run) = drive(&t).await;
    verdict(&t, &mut proxy, &run, &app.log()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_flask_login_counter_cart_logout_s4_s5_s8_4_s8_7a() {
    let app = Flask::start().await;
    let t = Target {
        app: "flask",
        upstream: app.url(),
        user: "alice",
        password: "wonderland",
    };
    let (mut proxy, run) = drive(&t).await;
    verdict(&t, &mut proxy, &run, &app.log()).await;
}
