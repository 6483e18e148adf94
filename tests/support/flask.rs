//! The real `examples/legacy_app.py` (Flask, client-side sessions), or
//! another app under `examples/`, as a subprocess on an ephemeral loopback
//! port.
//!
//! Python comes from `CLOAKROOM_TEST_PYTHON` (set by `scripts/test.sh` to
//! its venv) or else `target/venv/bin/python`. A Python without Flask is a
//! test failure with instructions, never a silent skip.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::within;

/// The legacy app, killed on drop.
pub struct Flask {
    pub port: u16,
    child: Child,
    dir: TempDir,
}

/// The Python interpreter to run the app with.
pub fn python() -> PathBuf {
    match std::env::var_os("CLOAKROOM_TEST_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/venv/bin/python"),
    }
}

/// Fails the test unless `python()` can import each module.
pub fn require_modules(modules: &[&str]) {
    let py = python();
    let out = Command::new(&py)
        .arg("-c")
        .arg(format!("import {}", modules.join(", ")))
        .stdin(Stdio::null())
        .output();
    let ok = matches!(&out, Ok(o) if o.status.success());
    assert!(
        ok,
        "{} cannot import {modules:?} ({}). Run scripts/test.sh, which installs \
         Flask and flask-sock into target/venv, or point CLOAKROOM_TEST_PYTHON \
         at a Python that has them.",
        py.display(),
        match &out {
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => e.to_string(),
        }
    );
}

impl Flask {
    /// Starts the app and waits (up to 20 s) until it accepts connections.
    pub async fn start() -> Flask {
        Flask::start_example("legacy_app.py").await
    }

    /// Starts `examples/<file>`, which takes `--port` like the legacy app.
    pub async fn start_example(file: &str) -> Flask {
        require_modules(&["flask"]);
        // A free port: bind :0, note it, release it for the app.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let log = File::create(dir.path().join("flask.log")).unwrap();
        let app = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(file);
        let child = Command::new(python())
            .arg(app)
            .arg("--port")
            .arg(port.to_string())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python().display()));
        let mut flask = Flask { port, child, dir };
        flask.wait_ready().await;
        flask
    }

    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the Flask app exited ({status}): {}", self.log());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Flask app did not listen within 20 s: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the app wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("flask.log")).unwrap_or_default()
    }
}

impl Drop for Flask {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a masked websocket text frame and reads one unmasked text frame
/// back (RFC 6455 §5.2; short payloads only).
pub async fn ws_text<S: AsyncReadExt + AsyncWriteExt + Unpin>(io: &mut S, text: &str) -> String {
    io.write_all(&super::session::ws_frame(text)).await.unwrap();
    let mut head = [0u8; 2];
    within(10, "websocket reply", io.read_exact(&mut head))
        .await
        .unwrap();
    assert_eq!(head[0], 0x81, "not a final text frame: {head:?}");
    let len = usize::from(head[1] & 0x7f);
    assert!(
        head[1] & 0x80 == 0 && len < 126,
        "unexpected frame {head:?}"
    );
    let mut payload = vec![0u8; len];
    within(10, "websocket payload", io.read_exact(&mut payload))
        .await
        .unwrap();
    String::from_utf8(payload).unwrap()
}
