//! SPEC §7.5 on a Redis Cluster: two cloakroom replicas over a real
//! 3-node Cluster on loopback share sessions, keep every key in the one
//! slot of their hash tag, fail closed while the primary holding that slot
//! is down, and recover by themselves when it returns.

mod support;

use std::time::{Duration, Instant};

use support::redis::RedisCluster;
use support::replicas::*;
use support::session::*;

/// How many keys each node holds in the slot of `prefix`'s hash tag.
fn keys_in_slot(cluster: &RedisCluster, prefix: &str) -> Vec<String> {
    let key = format!("{prefix}{{sessions}}:all");
    let slot = cluster.nodes[0].cli(&["cluster", "keyslot", &key]);
    cluster
        .nodes
        .iter()
        .map(|n| n.cli(&["cluster", "countkeysinslot", slot.trim()]))
        .collect()
}

/// `[store]` lines for `cluster` under `prefix`.
fn cluster_store(cluster: &RedisCluster, prefix: &str) -> String {
    let seeds: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "backend = \"redis\"\nredis_cluster = [{}]\nkey_prefix = \"{prefix}\"",
        seeds.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_5_replicas_sharing_a_redis_cluster_share_sessions() {
    let cluster = RedisCluster::start();
    let app = App::start("app").await;
    let store = cluster_store(&cluster, "c:");
    let (a, b) = (replica(&app, &store).await, replica(&app, &store).await);
    replicas_share_sessions(&a, &b).await;
    // Every key is in the one slot of the `{sessions}` hash tag.
    let _dave = login(&a, "dave", &["sid=1; Path=/"]).await;
    let held = keys_in_slot(&cluster, "c:");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_5_the_slots_primary_down_fails_closed_and_the_proxy_recovers() {
    let mut cluster = RedisCluster::start();
    let app = App::start("app").await;
    let a = replica(&app, &cluster_store(&cluster, "co:")).await;
    let mut alice = login(&a, "alice", &[]).await;
    assert_eq!(user_on(&mut alice).await.as_deref(), Some("alice"));
    let owner = keys_in_slot(&cluster, "co:")
        .iter()
        .position(|n| n.trim() != "0")
        .expect("a node holds the sessions");

    cluster.nodes[owner].kill();
    let started = Instant::now();
    let r = alice.get("/").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let mut anon = Browser::new(&a);
    assert_eq!(anon.get("/public").await.status, 200);
    assert_eq!(admin(&a, "GET", "/readyz").await.0, 503);

    // The primary comes back (empty, with its slots): new sessions work.
    cluster.nodes[owner].restart();
    eventually(30, "/readyz after the primary returned", || async {
        admin(&a, "GET", "/readyz").await.0 == 200
    })
    .await;
    let mut bob = login(&a, "bob", &[]).await;
    assert_eq!(user_on(&mut bob).await.as_deref(), Some("bob"));
    assert_eq!(outage_lines(&a, "session store is unreachable"), 1);
    assert_eq!(outage_lines(&a, "session store is reachable again"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_an_acl_user_from_the_env_reaches_the_cluster() {
    let cluster = RedisCluster::start();
    // README's least privileges for an ACL user, plus the topology read.
    for n in &cluster.nodes {
        let ok = n.cli(&[
            "acl",
            "setuser",
            "app",
            "on",
            ">app-pass",
            "~acl:*",
            "+@read",
            "+@write",
            "+@scripting",
            "+@connection",
            "+cluster|slots",
        ]);
        assert_eq!(ok.trim(), "OK");
        assert_eq!(n.cli(&["acl", "setuser", "default", "off"]).trim(), "OK");
    }
    let app = App::start("app").await;
    let cfg = |pass: Option<&str>| {
        let cfg = replica_config(&app, &cluster_store(&cluster, "acl:"));
        match pass {
            Some(p) => cfg.env("CLOAKROOM_REDIS_PASSWORD", p),
            None => cfg,
        }
    };
    let a = support::TestProxy::start(&cfg(Some("app:app-pass"))).await;
    let b = support::TestProxy::start(&cfg(Some("app:app-pass"))).await;
    let alice = login(&a, "alice", &[]).await;
    assert_eq!(
        user_on(&mut through(&alice, &b)).await.as_deref(),
        Some("alice")
    );
    // Without credentials the default user is refused: fail closed.
    let c = support::TestProxy::start(&cfg(None)).await;
    assert_eq!(admin(&c, "GET", "/readyz").await.0, 503);
}
