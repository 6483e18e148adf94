//! SPEC §7.5 and the end of §11 through real processes: two cloakroom
//! replicas sharing one `redis-server` on loopback (a Cluster:
//! `tests/redis_cluster.rs`). Logins, jars and revocations made through one
//! hold on the other; every key carries a TTL and no raw session id reaches
//! Redis; a Redis outage fails closed (503 where a session is needed, 200
//! where none is, `/readyz` 503) and the proxy recovers by itself; the
//! password from the environment, `rediss://`, and README's config as
//! written.

mod support;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

use support::redis::RedisServer;
use support::replicas::*;
use support::session::*;
use support::{ProxyConfig, TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_5_replicas_sharing_one_redis_share_logins_jars_and_revocations() {
    let redis = RedisServer::start();
    let app = App::start("app").await;
    let store = redis_store(&redis, "shared:");
    let (a, b) = (replica(&app, &store).await, replica(&app, &store).await);
    replicas_share_sessions(&a, &b).await;
}

/// Every key and value in Redis, as `redis-cli` prints them.
fn everything_in(redis: &RedisServer) -> Vec<(String, Vec<u8>)> {
    let keys = redis.cli(&["--scan"]);
    keys.lines()
        .filter(|k| !k.is_empty())
        .map(|k| {
            let dump = match redis.cli(&["type", k]).trim() {
                "hash" => redis.cli_raw(&["hgetall", k]),
                "zset" => redis.cli_raw(&["zrange", k, "0", "-1", "withscores"]),
                "set" => redis.cli_raw(&["smembers", k]),
                "string" => redis.cli_raw(&["get", k]),
                other => panic!("unexpected type {other} of {k}"),
            };
            (k.to_string(), dump)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_every_redis_key_has_a_ttl_and_no_raw_id_reaches_redis() {
    let redis = RedisServer::start();
    let app = App::start("app").await;
    let a = replica(&app, &redis_store(&redis, "ttl:")).await;
    let b = login(&a, "alice", &["sid=JARVALUE; Path=/"]).await;
    let _anonymous = {
        let mut anon = Browser::new(&a);
        let r = anon
            .get(&scripted("/public", &["Set-Cookie: n=1; Path=/"]))
            .await;
        assert_eq!(r.status, 200);
        assert!(anon.session().is_some());
        anon
    };
    let cookie = b.session().unwrap();
    let id = cookie_id(&cookie);
    let id_hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let key_hex: String = ring::digest::digest(&ring::digest::SHA256, &id)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    let all = everything_in(&redis);
    assert!(
        all.len() >= 6,
        "{:?}",
        all.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    for (k, _) in &all {
        let ttl: i64 = redis.cli(&["pttl", k]).trim().parse().unwrap();
        assert!(ttl > 0, "{k} has no TTL ({ttl})");
        assert!(k.starts_with("ttl:{sessions}:"), "{k}");
    }
    let id_b64 = B64.encode(&id);
    let secrets: [&[u8]; 4] = [&id, id_b64.as_bytes(), id_hex.as_bytes(), cookie.as_bytes()];
    for (k, v) in &all {
        for s in secrets {
            assert!(
                !contains(k.as_bytes(), s) && !contains(v, s),
                "the id is in {k}"
            );
        }
    }
    // What is there: the session under SHA-256 of its id, with its jar.
    let session = format!("ttl:{{sessions}}:k:{key_hex}");
    let (_, stored) = all
        .iter()
        .find(|(k, _)| *k == session)
        .expect("the session's key");
    assert!(contains(stored, b"JARVALUE") && contains(stored, b"alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_5_a_redis_outage_fails_closed_and_the_proxy_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let app = App::start("app").await;
    let a = replica(&app, &redis_store(&redis, "outage:")).await;
    let mut alice = login(&a, "alice", &[]).await;
    assert_eq!(user_on(&mut alice).await.as_deref(), Some("alice"));
    assert_eq!(admin(&a, "GET", "/readyz").await.0, 200);

    // Traffic on the session while Redis dies under it: every answer is
    // 200 (before) or 503 (after), never a logout, and none waits long.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut steady = through(&alice, &a);
    let traffic = tokio::spawn(async move {
        let mut seen = Vec::new();
        while stop_rx.try_recv().is_err() {
            let started = Instant::now();
            let r = steady.get("/").await;
            seen.push((r.status.as_u16(), clears_session(&r), started.elapsed()));
        }
        seen
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_tx.send(()).unwrap();
    let seen = traffic.await.unwrap();
    let first_503 = seen
        .iter()
        .position(|s| s.0 == 503)
        .expect("a 503 once Redis died");
    assert!(first_503 > 0, "no 200 before the kill: {seen:?}");
    assert!(seen[..first_503].iter().all(|s| s.0 == 200), "{seen:?}");
    assert!(seen[first_503..].iter().all(|s| s.0 == 503), "{seen:?}");
    assert!(
        seen.iter().all(|s| !s.1 && s.2 < Duration::from_secs(3)),
        "{seen:?}"
    );

    // A request that needs a session: 503, quickly, cookie kept.
    for _ in 0..3 {
        let started = Instant::now();
        let r = alice.get("/").await;
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert!(!clears_session(&r));
    }
    // A route that needs none keeps working.
    let mut anon = Browser::new(&a);
    assert_eq!(anon.get("/public").await.status, 200);
    assert_eq!(admin(&a, "GET", "/readyz").await.0, 503);
    let metrics = admin(&a, "GET", "/metrics").await.1;
    assert_eq!(metric(&metrics, "cloakroom_store_up").as_deref(), Some("0"));
    assert_eq!(
        outage_lines(&a, "session store is unreachable"),
        1,
        "one line per outage"
    );
    assert_eq!(
        outage_lines(&a, "session store error"),
        0,
        "no line per request"
    );

    // Redis returns (empty): new sessions work without restarting cloakroom.
    redis.restart();
    eventually(15, "/readyz after Redis returned", || async {
        admin(&a, "GET", "/readyz").await.0 == 200
    })
    .await;
    let mut bob = login(&a, "bob", &[]).await;
    assert_eq!(user_on(&mut bob).await.as_deref(), Some("bob"));
    // Alice's session went with Redis' memory: she is logged out, not 503.
    assert_eq!(user_on(&mut alice).await, None);
    let metrics = admin(&a, "GET", "/metrics").await.1;
    assert_eq!(metric(&metrics, "cloakroom_store_up").as_deref(), Some("1"));
    assert_eq!(outage_lines(&a, "session store is reachable again"), 1);
    assert_eq!(outage_lines(&a, "session store is unreachable"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_redis_password_env_is_used_instead_of_the_urls_and_never_shown() {
    let redis = RedisServer::start_with(&[
        "--requirepass",
        "default-pass-1",
        "--user",
        // The least an ACL user needs (README, "Scaling out"): its keys,
        // reads, writes, scripts and the connection's own commands
        // (tests/redis_cluster.rs adds the Cluster's topology read).
        "app",
        "on",
        ">app-pass-2",
        "~pw:*",
        "+@read",
        "+@write",
        "+@scripting",
        "+@connection",
    ]);
    let app = App::start("app").await;
    let start = |userinfo: &str, env: Option<&str>| {
        let store = format!(
            "backend = \"redis\"\nredis_url = \"redis://{userinfo}@127.0.0.1:{}\"\nkey_prefix = \"pw:\"",
            redis.port
        );
        let mut cfg = config(&app, "", "provider = \"upstream\"", "")
            .store(&store)
            .admin()
            .env("CLOAKROOM_SECRET", SECRET);
        if let Some(pass) = env {
            cfg = cfg.env("CLOAKROOM_REDIS_PASSWORD", pass);
        }
        async move { TestProxy::start(&cfg).await }
    };
    let ok = [
        // An ACL user and its password from the environment win over the URL's.
        start("app:url-pass-3", Some("app:app-pass-2")).await,
        // A bare password replaces the URL's, for the URL's user...
        start("app:url-pass-3", Some("app-pass-2")).await,
        // ...or for the default user.
        start(":url-pass-3", Some("default-pass-1")).await,
    ];
    for (i, p) in ok.iter().enumerate() {
        let mut b = Browser::new(p);
        let r = b
            .get(&scripted("/login", &["X-Cloakroom-Login: alice"]))
            .await;
        assert_eq!(r.status, 200, "case {i}");
        assert_eq!(
            b.get("/").await.echo().one("x-forwarded-user"),
            Some("alice")
        );
    }
    // The URL's own (wrong) credentials: no session, 503, /readyz 503.
    let refused = start("app:url-pass-3", None).await;
    let mut c = Browser::new(&refused);
    let r = c
        .get(&scripted("/login", &["X-Cloakroom-Login: carol"]))
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(admin(&refused, "GET", "/readyz").await.0, 503);
    assert_eq!(outage_lines(&refused, "session store is unreachable"), 1);
    // No password in any log line or error output.
    for p in ok.iter().chain([&refused]) {
        let out = format!("{:?}{}", p.logs(), p.stderr());
        for secret in ["default-pass-1", "app-pass-2", "url-pass-3"] {
            assert!(!out.contains(secret), "{secret} was logged");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_rediss_urls_speak_tls_with_rustls() {
    let redis = RedisServer::start_tls();
    let app = App::start("app").await;
    let store = format!(
        "backend = \"redis\"\nredis_url = \"rediss://localhost:{}/0\"\nkey_prefix = \"tls:\"",
        redis.port
    );
    // The test CA is trusted the way an operator would add one: through
    // the system trust store, here pointed at by SSL_CERT_FILE.
    let cert = redis.dir.path().join("cert.pem");
    let cfg = config(&app, "", "provider = \"upstream\"", "")
        .store(&store)
        .admin()
        .env("CLOAKROOM_SECRET", SECRET)
        .env("SSL_CERT_FILE", cert.to_str().unwrap());
    let proxy = TestProxy::start(&cfg).await;
    let mut b = login(&proxy, "alice", &[]).await;
    assert_eq!(
        b.get("/").await.echo().one("x-forwarded-user"),
        Some("alice")
    );
    assert_eq!(admin(&proxy, "GET", "/readyz").await.0, 200);
}

/// The replica config of README.md's "Two replicas and Redis on one
/// machine", as written there, with only the ports made this machine's.
fn readme_replica_config(redis: &RedisServer, app: &App) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split_once("### Two replicas and Redis on one machine")
        .expect("README.md has the section")
        .1;
    let toml = section
        .split_once("<<TOML\n")
        .and_then(|(_, rest)| rest.split_once("\nTOML\n"))
        .expect("the section writes proxy.toml with a TOML heredoc")
        .0;
    let mut text = toml.replace("$https", "0").replace("$admin", "0");
    for (was, now) in [
        ("127.0.0.1:6379", format!("127.0.0.1:{}", redis.port)),
        ("127.0.0.1:5000", app.addr.to_string()),
    ] {
        assert!(text.contains(was), "the README's config names {was}");
        text = text.replace(was, &now);
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_5_the_readmes_two_replicas_share_a_login() {
    let redis = RedisServer::start();
    let app = App::start("app").await;
    let text = readme_replica_config(&redis, &app);
    let start = || {
        let cfg = ProxyConfig::verbatim(&text)
            .env("CLOAKROOM_SECRET", SECRET)
            .env("CLOAKROOM_ADMIN_TOKEN", TOKEN);
        async move { TestProxy::start(&cfg).await }
    };
    let (a, b) = (start().await, start().await);
    let alice = login(&a, "alice", &[]).await;
    let mut on_b = through(&alice, &b);
    let r = on_b.get("/.cloakroom/session").await;
    assert_eq!(json(&r)["user"], "alice", "{}", r.text());
    assert_eq!(user_on(&mut on_b).await.as_deref(), Some("alice"));
}

/// SPEC §7.1, §7.2 and §7.5: the session's clock lives in Redis, so activity
/// through one replica keeps a session alive on the other, idleness on both
/// ends it for both, and the absolute timeout ends it on both however busy
/// it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_5_idle_and_absolute_timeouts_hold_across_replicas() {
    let redis = RedisServer::start();
    let app = App::start("app").await;
    let store = redis_store(&redis, "timeouts:");
    let replica = || {
        config(
            &app,
            "idle_timeout = \"2s\"\ntouch_interval = \"500ms\"\nabsolute_timeout = \"8s\"",
            "provider = \"upstream\"",
            "auth = \"required\"\npublic_paths = [\"/login\"]",
        )
        .store(&store)
        .env("CLOAKROOM_SECRET", SECRET)
    };
    let (a, b) = (
        TestProxy::start(&replica()).await,
        TestProxy::start(&replica()).await,
    );
    let start = Instant::now();
    let secs = Duration::from_secs_f64;
    let mut idle_a = login(&a, "idle", &[]).await;
    let mut idle_b = through(&idle_a, &b);
    let mut busy_a = login(&a, "busy", &[]).await;
    let mut busy_b = through(&busy_a, &b);
    let named = |u: &str| Some(u.to_string());
    // `idle` is used through B only, past A's own view of its idle timeout.
    for t in [0.8, 1.6, 2.4] {
        at(start, secs(t)).await;
        assert_eq!(
            user_on(&mut idle_b).await,
            named("idle"),
            "idle via B at {t} s"
        );
        assert_eq!(
            user_on(&mut busy_b).await,
            named("busy"),
            "busy via B at {t} s"
        );
    }
    at(start, secs(3.2)).await;
    assert_eq!(
        user_on(&mut idle_a).await,
        named("idle"),
        "B's activity counts on A"
    );
    assert_eq!(user_on(&mut busy_a).await, named("busy"));
    // Then nobody uses `idle` for more than idle_timeout; `busy` stays busy.
    for t in [4.0, 4.8, 5.6, 6.4, 7.2] {
        at(start, secs(t)).await;
        let b = if t == 4.8 || t == 6.4 {
            &mut busy_b
        } else {
            &mut busy_a
        };
        assert_eq!(user_on(b).await, named("busy"), "busy at {t} s");
    }
    assert_eq!(user_on(&mut idle_b).await, None, "idle ended on B");
    assert_eq!(user_on(&mut idle_a).await, None, "idle ended on A");
    // `busy` reaches absolute_timeout (8 s from its login) on both.
    at(start, secs(8.6)).await;
    assert_eq!(user_on(&mut busy_b).await, None, "absolute timeout on B");
    assert_eq!(user_on(&mut busy_a).await, None, "absolute timeout on A");
}
