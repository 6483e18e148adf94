//! SPEC §2 (SIGTERM flushes the store) and §7.4 (`embedded`: sessions
//! survive a restart; after SIGKILL, answered logins, logouts, rotations
//! and admin revocations are not lost), §7.1 and §7.3 across restarts, and a bad or
//! full disk, through the real binary restarted on one directory.
//!
//! The database is read directly (rusqlite) only while no proxy holds it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::session::*;
use support::{run_cli, ProxyConfig, Resp, TestProxy};

const UPSTREAM_AUTH: &str = "provider = \"upstream\"";

fn embedded(app: &App, session: &str) -> ProxyConfig {
    config(app, session, UPSTREAM_AUTH, "").embedded()
}

const ADMIN_TOKEN: &str = "kill-nine-admin-token";

/// `DELETE /sessions/{handle}` on the admin listener: the status code.
async fn revoke(proxy: &TestProxy, handle: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = proxy.admin_addr.expect("the admin listener is on");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "DELETE /sessions/{handle} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut head))
        .await
        .expect("the admin API answered within 10 s")
        .unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

/// Logs `b` in as `user` through the upstream login header (a login
/// creates a session, or rotates the one `b` has).
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

async fn logout(b: &mut Browser) -> Resp {
    let r = b.get(&scripted("/", &["X-Cloakroom-Logout: 1"])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(clears_session(&r), "logout did not clear the cookie");
    r
}

/// The user the proxy knows `b` as, if any (`/.cloakroom/session`).
async fn user(b: &mut Browser) -> Option<String> {
    let r = b.get("/.cloakroom/session").await;
    assert_eq!(r.status, 200, "{}", r.text());
    json(&r)["user"].as_str().map(str::to_string)
}

/// The user a session cookie value names after a restart, if any.
async fn user_of(proxy: &TestProxy, cookie: &str) -> Option<String> {
    let mut b = Browser::new(proxy);
    b.set_session(cookie);
    user(&mut b).await
}

fn db(proxy: &TestProxy) -> PathBuf {
    proxy.path("data/sessions.db")
}

/// Session rows in a database no process holds.
fn rows(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_s7_4_restart_after_sigterm_keeps_every_session_identity_and_jar() {
    let app = App::start("app").await;
    let mut proxy = TestProxy::start(&embedded(&app, "")).await;
    // Anonymous with a jar; logged in with a jar; logged in, then rotated.
    let mut anon = Browser::new(&proxy);
    anon.get(&scripted("/", &["Set-Cookie: a=1; Path=/"])).await;
    let mut alice = Browser::new(&proxy);
    login(&mut alice, "alice").await;
    alice
        .get(&scripted("/", &["Set-Cookie: cart=3; Path=/"]))
        .await;
    let mut bob = Browser::new(&proxy);
    login(&mut bob, "bob").await;
    let before_rotation = bob.session().unwrap();
    login(&mut bob, "robert").await;
    assert_ne!(bob.session().unwrap(), before_rotation);

    assert!(proxy.stop().await.success());
    assert_eq!(rows(&db(&proxy)), 3);
    proxy.restart().await;
    for b in [&mut anon, &mut alice, &mut bob] {
        b.follow(&proxy);
    }
    let r = anon.get("/").await;
    assert_eq!(upstream_cookies(&r), ["a=1"]);
    let r = alice.get("/").await;
    assert_eq!(upstream_cookies(&r), ["cart=3"]);
    assert_eq!(r.echo().one("x-forwarded-user"), Some("alice"));
    assert_eq!(user(&mut bob).await.as_deref(), Some("robert"));
    assert_eq!(user_of(&proxy, &before_rotation).await, None);
    let loaded = proxy
        .wait_log(5, |l| l["message"] == "session store loaded")
        .await
        .unwrap();
    assert_eq!(loaded["sessions"], 3);
}

/// 100 rounds of: check what the previous round did, log one browser in,
/// log the previous one out, rotate a third, revoke a fourth through the
/// admin API (SPEC §10), then SIGKILL right after the answers and restart.
/// Each effect was answered, so none may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_4_answered_logins_logouts_rotations_and_revocations_survive_kill_9() {
    const ROUNDS: usize = 100;
    let app = App::start("app").await;
    let config = embedded(&app, "")
        .admin()
        .env("CLOAKROOM_ADMIN_TOKEN", ADMIN_TOKEN);
    let mut proxy = TestProxy::start(&config).await;
    let started = Instant::now();
    let mut lost = Vec::new();
    let mut rotating = Browser::new(&proxy);
    login(&mut rotating, "r0").await;
    let mut logged_in: Option<Browser> = None;
    let mut logged_out: Option<String> = None;
    let mut rotated_away: Option<String> = None;
    let mut revoked: Option<String> = None;
    for round in 1..=ROUNDS + 1 {
        let prev = round - 1;
        // What the previous round was answered must hold.
        rotating.follow(&proxy);
        if user(&mut rotating).await != Some(format!("r{prev}")) {
            lost.push(format!("round {prev}: rotation to r{prev}"));
        }
        if let Some(old) = rotated_away.take() {
            if user_of(&proxy, &old).await.is_some() {
                lost.push(format!("round {prev}: rotation left the old id working"));
            }
        }
        if let Some(b) = logged_in.as_mut() {
            b.follow(&proxy);
            if user(b).await != Some(format!("u{prev}")) {
                lost.push(format!("round {prev}: login of u{prev}"));
            }
        }
        if let Some(v) = logged_out.take() {
            if user_of(&proxy, &v).await.is_some() {
                lost.push(format!("round {prev}: logout"));
            }
        }
        if let Some(v) = revoked.take() {
            if user_of(&proxy, &v).await.is_some() {
                lost.push(format!("round {prev}: admin revocation"));
            }
        }
        assert!(lost.is_empty(), "lost after SIGKILL: {lost:#?}");
        if round > ROUNDS {
            break;
        }
        // This round's effects, each answered before the kill.
        if let Some(mut b) = logged_in.take() {
            let v = b.session().unwrap();
            logout(&mut b).await;
            logged_out = Some(v);
        }
        let mut b = Browser::new(&proxy);
        login(&mut b, &format!("u{round}")).await;
        logged_in = Some(b);
        let old = rotating.session().unwrap();
        login(&mut rotating, &format!("r{round}")).await;
        assert_ne!(rotating.session().unwrap(), old);
        rotated_away = Some(old);
        let mut victim = Browser::new(&proxy);
        login(&mut victim, &format!("v{round}")).await;
        let v = victim.session().unwrap();
        assert_eq!(revoke(&proxy, &handle_of(&v)).await, 204);
        revoked = Some(v);
        proxy.kill9();
        proxy.restart().await;
    }
    eprintln!(
        "{ROUNDS} kill -9 rounds in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_1_a_session_idle_past_its_timeout_while_down_is_dead_after_restart() {
    let app = App::start("app").await;
    let session = "idle_timeout = \"2s\"\ntouch_interval = \"500ms\"";
    let mut proxy = TestProxy::start(&embedded(&app, session)).await;
    let mut b = Browser::new(&proxy);
    b.get(&scripted("/", &["Set-Cookie: a=1; Path=/"])).await;
    let v = b.session().unwrap();
    assert!(proxy.stop().await.success());
    assert_eq!(rows(&db(&proxy)), 1);
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    proxy.restart().await;
    b.follow(&proxy);
    let r = b.get("/").await;
    assert!(upstream_cookies(&r).is_empty(), "the jar was sent");
    assert!(clears_session(&r));
    assert_eq!(user_of(&proxy, &v).await, None);
    // Not loaded, and deleted from the file.
    assert!(proxy.stop().await.success());
    assert_eq!(rows(&db(&proxy)), 0);
}

/// The purge (every 15 s) deletes ended sessions from the file, not just
/// from memory; SIGTERM's flush alone would leave them there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_3_purge_removes_ended_sessions_from_the_file() {
    let app = App::start("app").await;
    let session = "idle_timeout = \"1s\"\ntouch_interval = \"500ms\"";
    let mut proxy = TestProxy::start(&embedded(&app, session)).await;
    for _ in 0..3 {
        let mut b = Browser::new(&proxy);
        b.get(&scripted("/", &["Set-Cookie: a=1; Path=/"])).await;
    }
    // Purges run at start and every 15 s: wait for the second.
    tokio::time::sleep(Duration::from_millis(16_500)).await;
    assert!(proxy.stop().await.success());
    assert_eq!(rows(&db(&proxy)), 0);
}

#[test]
fn a_damaged_database_stops_start_up_with_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = ProxyConfig::new()
        .route("http://127.0.0.1:1", "")
        .embedded();
    std::fs::write(dir.path().join("proxy.toml"), config.render()).unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let garbage: Vec<u8> = (0..16_384u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(dir.path().join("data/sessions.db"), garbage).unwrap();
    let out = run_cli(&["--config", "proxy.toml"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("data/sessions.db"), "{stderr}");
    assert!(stderr.contains("move it aside"), "{stderr}");
}

/// A small tmpfs, unmounted when dropped; `None` where mounting is not
/// allowed (not root).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = [0u8; 4096];
        while f.write_all(&block).and_then(|()| f.sync_data()).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_logins_with_503_keeps_serving_and_recovers() {
    let app = App::start("app").await;
    let scratch = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&scratch.path().join("disk"), "2m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let db = disk.0.join("sessions.db");
    let config = config(&app, "", UPSTREAM_AUTH, "").store_at(db.to_str().unwrap());
    let mut proxy = TestProxy::start(&config).await;
    let mut alice = Browser::new(&proxy);
    login(&mut alice, "alice").await;
    let mut anon = Browser::new(&proxy);
    anon.get(&scripted("/", &["Set-Cookie: a=1; Path=/"])).await;
    let anon_cookie = anon.session().unwrap();

    let filler = disk.fill();
    // A login cannot be stored: 503, and no cookie names a session.
    let mut carol = Browser::new(&proxy);
    let r = carol
        .get(&scripted("/login", &["X-Cloakroom-Login: carol"]))
        .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        carol.session().is_none(),
        "a cookie for an unstored session"
    );
    // A rotation cannot be stored: 503, and the old cookie still works.
    let r = anon
        .get(&scripted("/login", &["X-Cloakroom-Login: dave"]))
        .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(anon.session().as_deref(), Some(anon_cookie.as_str()));
    let r = anon.get("/").await;
    assert_eq!(upstream_cookies(&r), ["a=1"]);
    // Sessions already held are served.
    assert_eq!(user(&mut alice).await.as_deref(), Some("alice"));

    // Space returns: writes succeed again without a restart.
    std::fs::remove_file(filler).unwrap();
    login(&mut carol, "carol").await;
    login(&mut anon, "dave").await;
    proxy.kill9();
    proxy.restart().await;
    for b in [&mut alice, &mut carol, &mut anon] {
        b.follow(&proxy);
    }
    assert_eq!(user(&mut carol).await.as_deref(), Some("carol"));
    assert_eq!(user(&mut anon).await.as_deref(), Some("dave"));
    assert_eq!(user(&mut alice).await.as_deref(), Some("alice"));
    proxy.kill9();
}
