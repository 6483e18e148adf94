//! Cloakroom replicas for the redis store's process tests
//! (`tests/redis_store.rs`, `tests/redis_cluster.rs`): the config that
//! makes a [`TestProxy`] one replica among several sharing a Redis, and the
//! checks made across replicas.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::body::empty;
use super::redis::RedisServer;
use super::session::*;
use super::{ProxyConfig, TestProxy};

pub const TOKEN: &str = "test-admin-token-0123456789";
/// The same signing key on every replica (64 hex digits).
pub const SECRET: &str = "8f1e6c0d2b4a59687f3e1d0c9b8a79685f4e3d2c1b0a99887766554433221100";

/// A replica's config: upstream logins, `/` needs a session, `/login` and
/// `/public` do not; the admin API on; the shared secret and `store` lines.
pub fn replica_config(app: &App, store: &str) -> ProxyConfig {
    let route = "auth = \"required\"\npublic_paths = [\"/login\", \"/public\"]";
    config(
        app,
        "touch_interval = \"1s\"",
        "provider = \"upstream\"",
        route,
    )
    .store(store)
    .admin()
    .env("CLOAKROOM_ADMIN_TOKEN", TOKEN)
    .env("CLOAKROOM_SECRET", SECRET)
}

/// A replica started with [`replica_config`], once it is ready: its
/// `/readyz` answers 200, so its store client has reached Redis (a Cluster
/// client learns the slot map on its first call).
pub async fn replica(app: &App, store: &str) -> TestProxy {
    let proxy = TestProxy::start(&replica_config(app, store)).await;
    eventually(10, "the replica's /readyz answers 200", || async {
        admin(&proxy, "GET", "/readyz").await.0 == 200
    })
    .await;
    proxy
}

pub fn redis_store(redis: &RedisServer, prefix: &str) -> String {
    format!(
        "backend = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"",
        redis.url()
    )
}

/// A browser logged in as `user` through `proxy`, its jar holding `jar`.
pub async fn login(proxy: &TestProxy, user: &str, jar: &[&str]) -> Browser {
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
pub fn through(b: &Browser, proxy: &TestProxy) -> Browser {
    let mut other = Browser::new(proxy);
    other.cookies = b.cookies.clone();
    other
}

/// The user the upstream was told about, when `/` let the request through.
pub async fn user_on(b: &mut Browser) -> Option<String> {
    let r = b.get("/").await;
    match r.status.as_u16() {
        200 => r.echo().one("x-forwarded-user").map(str::to_string),
        401 => None,
        s => panic!("GET / answered {s}: {}", r.text()),
    }
}

/// One admin API call: (status, body).
pub async fn admin(proxy: &TestProxy, method: &str, target: &str) -> (u16, String) {
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
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F) -> Duration
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
pub async fn replicas_share_sessions(a: &TestProxy, b: &TestProxy) {
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

pub fn metric(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .map(|l| l[name.len() + 1..].to_string())
}

pub fn outage_lines(proxy: &TestProxy, message: &str) -> usize {
    proxy
        .logs()
        .iter()
        .filter(|v| v["message"].as_str().is_some_and(|m| m.contains(message)))
        .count()
}
