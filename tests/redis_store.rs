//! SPEC §7.5 and the end of §11 through real processes: two cloakroom
//! replicas sharing one `redis-server` (and a 3-node Redis Cluster) on
//! loopback. Logins, jars and revocations made through one hold on the
//! other; every key carries a TTL and no raw session id reaches Redis; a
//! Redis outage fails closed (503 where a session is needed, 200 where
//! none is, `/readyz` 503) and the proxy recovers by itself.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use http::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::body::empty;
use support::redis::{RedisCluster, RedisServer};
use support::session::*;
use support::{ProxyConfig, TestProxy};

const TOKEN: &str = "test-admin-token-0123456789";
/// The same signing key on every replica (64 hex digits).
const SECRET: &str = "8f1e6c0d2b4a59687f3e1d0c9b8a79685f4e3d2c1b0a99887766554433221100";

/// A replica: upstream logins, `/` needs a session, `/login` and `/public`
/// do not; the admin API on; the shared secret and `store` lines.
async fn replica(app: &App, store: &str) -> TestProxy {
    let route = "auth = \"required\"\npublic_paths = [\"/login\", \"/public\"]";
    let cfg: ProxyConfig = config(
        app,
        "touch_interval = \"1s\"",
        "provider = \"upstream\"",
        route,
    )
    .store(store)
    .admin()
    .env("CLOAKROOM_ADMIN_TOKEN", TOKEN)
    .env("CLOAKROOM_SECRET", SECRET);
    TestProxy::start(&cfg).await
}

fn redis_store(redis: &RedisServer, prefix: &str) -> String {
    format!(
        "backend = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"",
        redis.url()
    )
}

/// A browser logged in as `user` through `proxy`, its jar holding `jar`.
async fn login(proxy: &TestProxy, user: &str, jar: &[&str]) -> Browser {
    let mut b = Browser::new(proxy);
    let mut headers = vec![format!("X-Cloakroom-Login: {user}")];
    headers.extend(jar.iter().map(|c| format!("Set-Cookie: {c}")));
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let r = b.get(&scripted("/login", &headers)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(b.session().is_some(), "no session for {user}");
    b
}

/// The same cookies, sent to another replica.
fn through(b: &Browser, proxy: &TestProxy) -> Browser {
    let mut other = Browser::new(proxy);
    other.cookies = b.cookies.clone();
    other
}

/// The user the upstream was told about, when `/` let the request through.
async fn user_on(b: &mut Browser) -> Option<String> {
    let r = b.get("/").await;
    match r.status.as_u16() {
        200 => r.echo().one("x-forwarded-user").map(str::to_string),
        401 => None,
        s => panic!("GET / answered {s}: {}", r.text()),
    }
}

/// One admin API call: (status, body).
async fn admin(proxy: &TestProxy, method: &str, target: &str) -> (u16, String) {
    let addr: SocketAddr = proxy.admin_addr.expect("the admin listener is on");
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("the admin API answered in time")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head[9..12].parse().unwrap(), body.to_string())
}

/// Checks `f` every 20 ms until it holds, for at most `secs`; the time it took.
async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !f().await {
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Login, jar and every way a session ends, each done on one replica and
/// checked on the other.
async fn replicas_share_sessions(a: &TestProxy, b: &TestProxy) {
    // Log in through A, be recognised by B; A's jar cookie reaches the app.
    let alice_a = login(a, "alice", &["sid=FROM-A; Path=/"]).await;
    let mut alice_b = through(&alice_a, b);
    let r = alice_b.get("/").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echo().one("x-forwarded-user"), Some("alice"));
    assert!(upstream_cookies(&r).contains(&"sid=FROM-A".to_string()));
    // A jar cookie set through B is replayed by A.
    let r = alice_b
        .get(&scripted("/", &["Set-Cookie: pref=FROM-B; Path=/"]))
        .await;
    assert_eq!(r.status, 200);
    let mut alice_a = through(&alice_b, a);
    let r = alice_a.get("/").await;
    let sent = upstream_cookies(&r);
    assert!(sent.contains(&"pref=FROM-B".to_string()), "{sent:?}");
    assert!(sent.contains(&"sid=FROM-A".to_string()), "{sent:?}");

    // The admin API of either replica lists it.
    let handle = handle_of(&alice_a.session().unwrap());
    let (status, body) = admin(b, "GET", "/sessions?user=alice").await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["handle"], handle.as_str(), "{list}");

    // Revoked on A by handle: B refuses the cookie at once (no cache).
    assert_eq!(
        admin(a, "DELETE", &format!("/sessions/{handle}")).await.0,
        204
    );
    let took = eventually(1, "a revocation on A holding on B", || {
        let mut b = through(&alice_a, b);
        async move { user_on(&mut b).await.is_none() }
    })
    .await;
    assert!(took < Duration::from_secs(1), "{took:?}");

    // Logout through B ends the session for A.
    let bob_a = login(a, "bob", &[]).await;
    let mut bob_b = through(&bob_a, b);
    assert_eq!(user_on(&mut bob_b).await.as_deref(), Some("bob"));
    let logout = bob_b
        .request(Method::POST, "/.cloakroom/logout")
        .body(empty())
        .unwrap();
    let r = bob_b.send(logout).await;
    assert!(
        r.status.is_success() || r.status.is_redirection(),
        "{}",
        r.status
    );
    let mut bob_a = through(&bob_a, a);
    assert_eq!(user_on(&mut bob_a).await, None, "a logout on B holds on A");

    // Revoke-all on B ends every session of the user on A.
    let carol: Vec<Browser> = vec![login(a, "carol", &[]).await, login(b, "carol", &[]).await];
    let (status, body) = admin(b, "DELETE", "/users/carol/sessions").await;
    assert_eq!((status, body.as_str()), (200, "{\"revoked\":2}"));
    for c in &carol {
        assert_eq!(user_on(&mut through(c, a)).await, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_5_replicas_sharing_one_redis_share_logins_jars_and_revocations() {
    let redis = RedisServer::start();
    let app = App::start("app").await;
    let store = redis_store(&redis, "shared:");
    let (a, b) = (replica(&app, &store).await, replica(&app, &store).await);
    replicas_share_sessions(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_5_replicas_sharing_a_redis_cluster_share_sessions() {
    let cluster = RedisCluster::start();
    let app = App::start("app").await;
    let seeds: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let store = format!(
        "backend = \"redis\"\nredis_cluster = [{}]\nkey_prefix = \"c:\"",
        seeds.join(", ")
    );
    let (a, b) = (replica(&app, &store).await, replica(&app, &store).await);
    replicas_share_sessions(&a, &b).await;
    // Every key is in the one slot of the `{sessions}` hash tag.
    let _dave = login(&a, "dave", &["sid=1; Path=/"]).await;
    let slot = cluster.nodes[0].cli(&["cluster", "keyslot", "c:{sessions}:all"]);
    let held: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.cli(&["cluster", "countkeysinslot", slot.trim()]))
        .collect();
    let sizes: Vec<String> = cluster.nodes.iter().map(|n| n.cli(&["dbsize"])).collect();
    assert_eq!(held, sizes, "keys outside the slot");
    assert_eq!(
        held.iter().filter(|n| n.trim() != "0").count(),
        1,
        "{held:?}"
    );
    assert!(
        held.iter().any(|n| n.trim().parse::<u32>().unwrap() >= 4),
        "{held:?}"
    );
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

fn metric(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .map(|l| l[name.len() + 1..].to_string())
}

fn outage_lines(proxy: &TestProxy, message: &str) -> usize {
    proxy
        .logs()
        .iter()
        .filter(|v| v["message"].as_str().is_some_and(|m| m.contains(message)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_5_a_redis_outage_fails_closed_and_the_proxy_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let app = App::start("app").await;
    let a = replica(&app, &redis_store(&redis, "outage:")).await;
    let mut alice = login(&a, "alice", &[]).await;
    assert_eq!(user_on(&mut alice).await.as_deref(), Some("alice"));
    assert_eq!(admin(&a, "GET", "/readyz").await.0, 200);

    redis.kill();
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
        "app",
        "on",
        ">app-pass-2",
        "~*",
        "&*",
        "+@all",
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
