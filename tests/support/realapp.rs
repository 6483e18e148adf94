//! Real third-party web apps, unchanged, as subprocesses on ephemeral
//! loopback ports: Django's admin (`runserver`) and Trac (`tracd`), each
//! set up in its own temporary directory the way their documentation says.
//! `scripts/test.sh` installs both into the test venv; a Python without
//! them is a test failure with instructions, never a skip.
//!
//! Every command runs with a deadline and every process is killed on drop.

use std::fs::File;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::flask::python;

/// Setup commands (startproject, migrate, initenv) take about a second on
/// an idle machine.
const SETUP_TIMEOUT: Duration = Duration::from_secs(90);
/// From spawn to the first HTTP answer.
const READY_TIMEOUT: Duration = Duration::from_secs(45);

/// A running app, killed on drop.
pub struct RealApp {
    pub name: &'static str,
    pub port: u16,
    /// The account to log in with.
    pub user: &'static str,
    pub password: &'static str,
    child: Child,
    dir: TempDir,
}

impl RealApp {
    /// A fresh project from `django-admin startproject` with its settings
    /// as generated (DEBUG on, the admin at `/admin/`), migrated, with a
    /// superuser from `createsuperuser --noinput`, served by `runserver`.
    pub async fn django() -> RealApp {
        require_app_modules(&["django"], "Django");
        let dir = tempfile::tempdir().unwrap();
        let (user, password) = ("admin", "cloakroom-compat-5");
        setup(
            dir.path(),
            &["-m", "django", "startproject", "mysite", "."],
            &[],
        );
        setup(
            dir.path(),
            &["manage.py", "migrate", "--noinput", "-v0"],
            &[],
        );
        setup(
            dir.path(),
            &["manage.py", "createsuperuser", "--noinput"],
            &[
                ("DJANGO_SUPERUSER_USERNAME", user),
                ("DJANGO_SUPERUSER_PASSWORD", password),
                ("DJANGO_SUPERUSER_EMAIL", "admin@example.com"),
            ],
        );
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let args = ["manage.py", "runserver", &addr, "--noreload"];
        let app = RealApp::spawn("django", dir, port, &args, (user, password));
        app.ready("/admin/login/").await
    }

    /// A fresh environment from `trac-admin initenv` (SQLite, no plugins),
    /// served by `tracd` with HTTP basic authentication at `/login` against
    /// an htpasswd file: stock Trac's way to log in.
    pub async fn trac() -> RealApp {
        require_app_modules(&["trac"], "Trac");
        let dir = tempfile::tempdir().unwrap();
        let (user, password) = ("alice", "wonderland");
        let env = dir.path().join("env");
        let env = env.to_str().unwrap();
        setup(
            dir.path(),
            &[
                "-m",
                "trac.admin.console",
                env,
                "initenv",
                "Compat",
                "sqlite:db/trac.db",
            ],
            &[],
        );
        // `{SHA}` is one of the htpasswd formats tracd reads without extras.
        let sha1 =
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
        let htpasswd = dir.path().join("htpasswd");
        let line = format!("{user}:{{SHA}}{}\n", B64.encode(sha1.as_ref()));
        std::fs::write(&htpasswd, line).unwrap();
        let port = free_port();
        let auth = format!("*,{},cloakroom", htpasswd.display());
        let port_arg = port.to_string();
        let args = [
            "-m",
            "trac.web.standalone",
            "--single-env",
            "--hostname",
            "127.0.0.1",
            "--port",
            &port_arg,
            "--basic-auth",
            &auth,
            env,
        ];
        let app = RealApp::spawn("trac", dir, port, &args, (user, password));
        app.ready("/").await
    }

    fn spawn(
        name: &'static str,
        dir: TempDir,
        port: u16,
        args: &[&str],
        (user, password): (&'static str, &'static str),
    ) -> RealApp {
        let log = File::create(dir.path().join("app.log")).unwrap();
        let child = Command::new(python())
            .args(args)
            .current_dir(dir.path())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", python().display()));
        RealApp {
            name,
            port,
            user,
            password,
            child,
            dir,
        }
    }

    /// Polls `GET path` until the app answers over HTTP, the process dies or
    /// the deadline passes.
    async fn ready(mut self, path: &str) -> RealApp {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if answers(self.port, path).await {
                return self;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited ({status}): {}", self.name, self.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not answer on port {} within {READY_TIMEOUT:?}: {}",
                self.name,
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the app wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("app.log")).unwrap_or_default()
    }
}

impl Drop for RealApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require_app_modules(modules: &[&str], what: &str) {
    let py = python();
    let ok = Command::new(&py)
        .arg("-c")
        .arg(format!("import {}", modules.join(", ")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import {modules:?}: run scripts/test.sh, which installs {what} into \
         target/venv, or point CLOAKROOM_TEST_PYTHON at a Python that has it",
        py.display()
    );
}

use super::free_port;

/// Runs `python ARGS…` in `dir` to completion within [`SETUP_TIMEOUT`],
/// its output into `setup.log` there.
fn setup(dir: &Path, args: &[&str], envs: &[(&str, &str)]) {
    let log_path = dir.join("setup.log");
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap();
    let mut child = Command::new(python())
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python().display()));
    let deadline = std::time::Instant::now() + SETUP_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("python {args:?} did not finish within {SETUP_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success(),
        "python {args:?} failed ({status}): {output}"
    );
}

/// Whether an HTTP/1.0 `GET path` gets a status line back.
async fn answers(port: u16, path: &str) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head.starts_with(b"HTTP/1."))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), attempt).await,
        Ok(Ok(true))
    )
}
