//! The container image (README "Running as a container"): the repository's
//! `Dockerfile`, built with podman and run for real.
//!
//! There is no Docker engine or registry here, so the build names local
//! stand-ins for its two public bases (`tests/container/bases.sh` makes them
//! with mmdebstrap: a bookworm Rust image and a distroless-like glibc
//! runtime) through the Dockerfile's build arguments; everything else is the
//! shipped file as written. Podman runs as root with `runc` and explicit
//! ulimits (a `CONTAINERS_CONF` this file writes), builds with `--format
//! docker` (the OCI format drops `HEALTHCHECK`), and gives each container
//! slirp4netns networking with `allow_host_loopback`, so the app and Redis
//! the containers stand in front of stay on this machine's loopback
//! (10.0.2.2 from inside) and each published port is bound to 127.0.0.1.
//!
//! The image is built once per test binary (about 3 minutes from scratch
//! on 2 cores: a fat-LTO release build). Where this machine cannot run a
//! step (not root, no podman), each test says so by name and returns.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use support::client::client_config;
use support::flask::Flask;
use support::redis::{free_port, RedisServer};
use support::session::{parse_set_cookie, set_cookies, Browser, COOKIE};
use support::within;

const IMAGE: &str = "localhost/cloakroom-test/cloakroom:latest";
const BUILDER: &str = "localhost/cloakroom-test/rust:bookworm";
const RUNTIME: &str = "localhost/cloakroom-test/cc:bookworm";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Why this machine cannot run the container tests, if it cannot.
fn unavailable() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        });
    if uid.as_deref() != Some("0") {
        return Some("podman and mmdebstrap run as root here; this test is not root".into());
    }
    for tool in ["podman", "mmdebstrap", "runc", "slirp4netns"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!(
                "{tool} is not installed (scripts/test.sh installs it)"
            ));
        }
    }
    None
}

/// Returns false (after saying why) when the test must skip.
fn can_run(test: &str) -> bool {
    match unavailable() {
        Some(why) => {
            eprintln!("SKIPPED container::{test}: {why}");
            false
        }
        None => true,
    }
}

/// The soft and hard `RLIMIT_NOFILE` of this process, from /proc.
fn nofile_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let hard = line.split_whitespace().nth(4).unwrap();
    hard.parse().unwrap_or(65536).min(65536)
}

/// `CONTAINERS_CONF` for every podman call: runc, cgroupfs, and ulimits
/// within what this process may grant (podman's default asks for more
/// open files than a sandbox's hard limit, and runc then fails).
fn containers_conf() -> &'static Path {
    static CONF: OnceLock<PathBuf> = OnceLock::new();
    CONF.get_or_init(|| {
        let dir = root().join("target/container-test");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("containers.conf");
        let n = nofile_limit();
        std::fs::write(
            &path,
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={n}:{n}\", \"nproc=4096:4096\"]\n\
                 [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n"
            ),
        )
        .unwrap();
        path
    })
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .env("CONTAINERS_CONF", containers_conf())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("podman {args:?}: {e}"))
}

/// `podman args…`, which must succeed; its stdout, trimmed.
fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Builds the image once: the stand-in bases, then `podman build` of the
/// repository's Dockerfile with the bases passed as build arguments.
fn image() -> &'static str {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let bases = Command::new("bash")
            .arg(root().join("tests/container/bases.sh"))
            .env("CONTAINERS_CONF", containers_conf())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if !bases.status.success() {
            return Err(format!(
                "tests/container/bases.sh failed:\n{}\n{}",
                String::from_utf8_lossy(&bases.stdout),
                String::from_utf8_lossy(&bases.stderr)
            ));
        }
        let context = root().to_str().unwrap();
        let out = podman(&[
            "build",
            "--format",
            "docker",
            "--build-arg",
            &format!("RUST_IMAGE={BUILDER}"),
            "--build-arg",
            &format!("RUNTIME_IMAGE={RUNTIME}"),
            "--build-arg",
            "REVISION=test",
            "--tag",
            IMAGE,
            context,
        ]);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "podman build failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    IMAGE
}

/// A container, removed (with its anonymous volumes) on drop.
struct Container {
    name: String,
}

impl Container {
    /// `podman run --detach` with loopback-only networking; `extra` holds
    /// more `run` options (volumes, ports, env).
    fn run(tag: &str, extra: &[&str]) -> Container {
        let name = format!("cloakroom-test-{tag}-{}", std::process::id());
        let _ = podman(&["rm", "--force", "--volumes", &name]);
        let mut args = vec![
            "run",
            "--detach",
            "--name",
            &name,
            "--network",
            "slirp4netns:allow_host_loopback=true",
        ];
        args.extend_from_slice(extra);
        args.push(image());
        podman_ok(&args);
        Container { name }
    }

    fn inspect(&self, format: &str) -> String {
        podman_ok(&["inspect", "--format", format, &self.name])
    }

    fn logs(&self) -> String {
        let out = podman(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Runs the image's HEALTHCHECK (podman runs it on a systemd timer,
    /// which this machine lacks) until it passes, within 30 s.
    fn wait_healthy(&self) {
        for _ in 0..60 {
            if podman(&["healthcheck", "run", &self.name]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("{} never turned healthy:\n{}", self.name, self.logs());
    }

    /// The uid and gid lines of the container's main process.
    fn process_ids(&self) -> (String, String) {
        let pid = self.inspect("{{.State.Pid}}");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        (field("Uid:"), field("Gid:"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--volumes", &self.name]);
    }
}

/// A named volume, removed on drop.
struct Volume(String);

impl Volume {
    fn create(tag: &str) -> Volume {
        let name = format!("cloakroom-test-{tag}-{}", std::process::id());
        let _ = podman(&["volume", "rm", "--force", &name]);
        podman_ok(&["volume", "create", &name]);
        Volume(name)
    }

    /// The volume's directory on this machine.
    fn host_path(&self) -> PathBuf {
        PathBuf::from(podman_ok(&[
            "volume",
            "inspect",
            "--format",
            "{{.Mountpoint}}",
            &self.0,
        ]))
    }

    fn mount(&self) -> String {
        format!("{}:/data", self.0)
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = podman(&["volume", "rm", "--force", &self.0]);
    }
}

/// A shipped config (`rel`) with each `(from, to)` replaced — each
/// replacement checked, so an edited file cannot leave this testing
/// something else — written into `dir` and returned as a read-only `-v`
/// mount over the image's default.
fn config_mount(dir: &Path, rel: &str, replace: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(root().join(rel)).unwrap();
    for (from, to) in replace {
        assert!(text.contains(from), "{rel} no longer holds {from:?}");
        text = text.replace(from, to);
    }
    let path = dir.join("proxy.toml");
    std::fs::write(&path, text).unwrap();
    format!("{}:/etc/cloakroom/proxy.toml:ro", path.display())
}

/// A browser for a container published on `127.0.0.1:port`, trusting the
/// certificates the containers made for themselves in their volumes.
fn browser(port: u16, certs: &[PathBuf]) -> Browser {
    let certs: Vec<&Path> = certs.iter().map(PathBuf::as_path).collect();
    Browser {
        addr: ([127, 0, 0, 1], port).into(),
        config: client_config(&certs, &[b"http/1.1"]),
        host: format!("localhost:{port}"),
        cookies: Vec::new(),
    }
}

/// Waits (up to 30 s) until the container's certificate exists and a
/// request through the published port gets an answer from the app.
async fn wait_answering(b: &mut Browser, cert: &Path, c: &Container) {
    for _ in 0..60 {
        if cert.exists() {
            b.config = client_config(&[cert], &[b"http/1.1"]);
            let r = within(5, "GET /login", b.get("/login")).await;
            if r.status == StatusCode::OK {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{} never answered through its port:\n{}", c.name, c.logs());
}

/// Logs in to the legacy app through `b`; the app's own cookie never
/// reaches the browser.
async fn log_in(b: &mut Browser, user: &str, password: &str) {
    let r = b
        .post("/login", &format!("username={user}&password={password}"))
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.header("location"), Some("/dashboard"));
    for sc in set_cookies(&r) {
        assert_eq!(parse_set_cookie(&sc).name, COOKIE, "leaked: {sc}");
    }
    assert!(b.session().is_some());
}

async fn dashboard(b: &mut Browser) -> (StatusCode, String) {
    let r = within(10, "GET /dashboard", b.get("/dashboard")).await;
    (r.status, r.text())
}

#[test]
fn image_is_built_as_designed() {
    if !can_run("image_is_built_as_designed") {
        return;
    }
    let image = image();
    let inspect: Value = serde_json::from_str(&podman_ok(&["image", "inspect", image])).unwrap();
    let inspect = &inspect[0];
    let config = &inspect["Config"];
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert!(config["ExposedPorts"]["8443/tcp"].is_object(), "{config}");
    assert!(config["Volumes"]["/data"].is_object(), "{config}");
    assert_eq!(config["WorkingDir"], "/etc/cloakroom");
    // Podman shows the Docker-format HEALTHCHECK beside the OCI config.
    let check = inspect["Healthcheck"]["Test"].to_string();
    assert!(check.contains("\"healthcheck\""), "{inspect}");
    let labels = &config["Labels"];
    for label in ["title", "source", "licenses", "version", "revision"] {
        let key = format!("org.opencontainers.image.{label}");
        assert!(labels[&key].is_string(), "no {key}: {config}");
    }
    assert_eq!(labels["org.opencontainers.image.revision"], "test");
    // The default config, as baked in, passes `cloakroom check` (WORKDIR
    // makes it the default path), and the runtime has no shell.
    let out = podman(&["run", "--rm", "--network", "none", image, "check"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 route)"));
    let out = podman(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        "true",
    ]);
    assert!(!out.status.success(), "the runtime image has a shell");
    let size: u64 = podman_ok(&["image", "inspect", "--format", "{{.Size}}", image])
        .parse()
        .unwrap();
    eprintln!("image size: {size} bytes");
    println!(
        "{}",
        podman_ok(&["history", "--format", "{{.Size}}\t{{.CreatedBy}}", image])
    );
    assert!(size < 64 << 20, "the runtime image grew to {size} bytes");
}

#[test]
fn default_image_starts_healthy_as_65532_and_stops_cleanly() {
    if !can_run("default_image_starts_healthy_as_65532_and_stops_cleanly") {
        return;
    }
    // Nothing mounted: the default config, an anonymous /data volume.
    let c = Container::run("default", &[]);
    c.wait_healthy();
    assert_eq!(c.inspect("{{.State.Health.Status}}"), "healthy");
    let (uid, gid) = c.process_ids();
    assert_eq!(uid, "65532 65532 65532 65532");
    assert_eq!(gid, "65532 65532 65532 65532");
    let logs = c.logs();
    // The app it names is not there: the start-up probe says so, once.
    assert!(
        logs.contains("upstream is not accepting connections"),
        "{logs}"
    );
    assert!(!logs.contains('\u{1b}'), "colour codes in a pipe: {logs}");
    // SIGTERM to PID 1 drains and exits 0, well inside podman's 10 s.
    podman_ok(&["stop", "--time", "10", &c.name]);
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "0", "{}", c.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_front_of_the_legacy_app_a_session_survives_a_restart() {
    if !can_run("in_front_of_the_legacy_app_a_session_survives_a_restart") {
        return;
    }
    let flask = Flask::start().await;
    let dir = tempfile::tempdir().unwrap();
    let upstream = format!("\"http://10.0.2.2:{}\"", flask.port);
    let conf = config_mount(
        dir.path(),
        "contrib/container/proxy.toml",
        &[("\"http://app:5000\"", &upstream)],
    );
    let data = Volume::create("data");
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8443");
    let c = Container::run(
        "legacy",
        &["-v", &data.mount(), "-v", &conf, "-p", &publish],
    );
    let cert = data.host_path().join("certs/cert.pem");
    let mut b = browser(port, &[]);
    wait_answering(&mut b, &cert, &c).await;

    log_in(&mut b, "alice", "wonderland").await;
    let (status, page) = dashboard(&mut b).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("alice"), "{page}");

    // The container restarts; the session (store and signing key live in
    // the /data volume) is still alive.
    podman_ok(&["restart", "--time", "10", &c.name]);
    c.wait_healthy();
    let (status, page) = dashboard(&mut b).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "after restart: {page}\n{}",
        c.logs()
    );
    assert!(page.contains("alice"), "{page}");
    let logs = c.logs();
    let made = logs.matches("generated a new session signing key").count();
    assert_eq!(made, 1, "the signing key was made again: {logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_sessions_through_redis() {
    if !can_run("two_replicas_share_sessions_through_redis") {
        return;
    }
    // README "Scaling out": examples/compose.yaml's two replicas with its
    // proxy.toml, one Redis, one signing key through the environment; the
    // service names become the host's loopback.
    let flask = Flask::start().await;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let upstream = format!("\"http://10.0.2.2:{}\"", flask.port);
    let redis_url = format!("\"redis://10.0.2.2:{}/0\"", redis.port);
    let conf = config_mount(
        dir.path(),
        "examples/compose/proxy.toml",
        &[
            ("\"http://app:5000\"", &upstream),
            ("\"redis://redis:6379/0\"", &redis_url),
        ],
    );
    let secret = "CLOAKROOM_SECRET=".to_string() + &"ab".repeat(32);

    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        let data = Volume::create(&format!("replica-{name}"));
        let port = free_port();
        let publish = format!("127.0.0.1:{port}:8443");
        let c = Container::run(
            &format!("replica-{name}"),
            &[
                "-v",
                &data.mount(),
                "-v",
                &conf,
                "-p",
                &publish,
                "-e",
                &secret,
            ],
        );
        let cert = data.host_path().join("certs/cert.pem");
        let mut b = browser(port, &[]);
        wait_answering(&mut b, &cert, &c).await;
        replicas.push((c, data, b, cert));
    }
    let certs: Vec<PathBuf> = replicas.iter().map(|r| r.3.clone()).collect();
    let ports: Vec<u16> = replicas.iter().map(|r| r.2.addr.port()).collect();

    // Log in through replica a, carry on through b.
    let mut b = browser(ports[0], &certs);
    log_in(&mut b, "alice", "wonderland").await;
    let cookies = b.cookies.clone();
    let mut other = browser(ports[1], &certs);
    other.cookies = cookies;
    let (status, page) = dashboard(&mut other).await;
    assert_eq!(status, StatusCode::OK, "through b: {page}");
    assert!(page.contains("alice"), "{page}");
    let keys = redis.cli(&["--scan"]);
    assert!(!keys.trim().is_empty(), "no session in Redis");
}

/// `podman-compose config` on examples/compose.yaml (with `envs`), as JSON.
fn compose_config(envs: &[(&str, &str)]) -> Result<Value, String> {
    let bin = root().join("target/venv/bin");
    let out = Command::new(bin.join("podman-compose"))
        .args(["-f", "examples/compose.yaml", "config"])
        .current_dir(root())
        .env_remove("CLOAKROOM_SECRET")
        .env_remove("CLOAKROOM_ADMIN_TOKEN")
        .envs(envs.iter().copied())
        .env("CONTAINERS_CONF", containers_conf())
        .stdin(Stdio::null())
        .output()
        .expect("podman-compose is missing: scripts/test.sh installs it into target/venv");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    // podman-compose prints YAML; the venv's PyYAML (its dependency) turns
    // it into JSON for serde.
    let mut py = Command::new(bin.join("python"))
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut py.stdin.take().unwrap(), &out.stdout).unwrap();
    let json = py.wait_with_output().unwrap();
    assert!(json.status.success(), "{json:?}");
    Ok(serde_json::from_slice(&json.stdout).unwrap())
}

#[test]
fn compose_file_wires_two_replicas_to_redis_and_the_app() {
    if Command::new("podman").arg("--version").output().is_err() {
        eprintln!("SKIPPED container::compose_file_wires_two_replicas_to_redis_and_the_app: podman is not installed");
        return;
    }
    // The shared secrets come from the environment, never the file: without
    // them the file does not resolve.
    let missing = compose_config(&[]).unwrap_err();
    assert!(missing.contains("CLOAKROOM_SECRET"), "{missing}");
    let secret = "c".repeat(43);
    let token = "t".repeat(43);
    let c = compose_config(&[
        ("CLOAKROOM_SECRET", secret.as_str()),
        ("CLOAKROOM_ADMIN_TOKEN", token.as_str()),
    ])
    .unwrap();
    let services = &c["services"];
    let mut published = Vec::new();
    for name in ["cloakroom-a", "cloakroom-b"] {
        let s = &services[name];
        assert_eq!(s["build"]["dockerfile"], "Dockerfile", "{name}: {s}");
        assert_eq!(s["environment"]["CLOAKROOM_SECRET"], secret.as_str());
        assert_eq!(s["environment"]["CLOAKROOM_ADMIN_TOKEN"], token.as_str());
        assert_eq!(s["depends_on"]["redis"]["condition"], "service_healthy");
        assert!(s["depends_on"]["app"].is_object(), "{name}: {s}");
        let volumes: Vec<&str> = s["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            volumes.contains(&"./compose/proxy.toml:/etc/cloakroom/proxy.toml:ro"),
            "{name}: {volumes:?}"
        );
        assert!(volumes.contains(&&*format!("{name}:/data")), "{volumes:?}");
        let port = s["ports"][0].as_str().unwrap();
        assert!(port.ends_with(":8443"), "{name}: {port}");
        published.push(port.to_string());
    }
    assert_ne!(published[0], published[1], "both replicas on one port");
    assert!(services["redis"]["healthcheck"]["test"].is_array());
    let app = services["app"]["command"].to_string();
    assert!(
        app.contains("legacy_app.py --host 0.0.0.0 --port 5000"),
        "{app}"
    );
    assert!(services["app"]["volumes"][0]
        .as_str()
        .unwrap()
        .starts_with("./legacy_app.py:"));
    // The replicas' config names those services and passes `check`.
    let conf = std::fs::read_to_string(root().join("examples/compose/proxy.toml")).unwrap();
    assert!(conf.contains("redis_url = \"redis://redis:6379/0\""));
    assert!(conf.contains("upstream = \"http://app:5000\""));
    assert!(conf.contains("secret_env = \"CLOAKROOM_SECRET\""));
    let out = support::run_cli(
        &["check", "--config", "examples/compose/proxy.toml"],
        root(),
    );
    assert!(out.status.success(), "{out:?}");
}
