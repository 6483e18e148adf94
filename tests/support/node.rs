//! Runs a Node script under `tests/browser/` (playwright-core driving
//! Debian's Chromium) and reads the one-line JSON report it prints last.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// What a script printed, and how it exited.
pub struct NodeRun {
    pub code: Option<i32>,
    pub report: Value,
    pub stderr: String,
}

impl NodeRun {
    /// The report's `failures`: the expectations the script saw broken.
    pub fn failures(&self) -> Vec<&str> {
        self.report["failures"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

/// Runs `node tests/browser/SCRIPT ARGS…` with extra environment variables,
/// in its own process group so that a timeout takes Chromium down with it.
/// Blocking: call it from `spawn_blocking`.
pub fn run_node(script: &str, args: &[&str], envs: &[(&str, &str)], limit: Duration) -> NodeRun {
    use std::os::unix::process::CommandExt;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("tests/browser/node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser` (scripts/test.sh does)"
    );
    let child = Command::new("node")
        .arg(root.join("tests/browser").join(script))
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            panic!("node {script} {args:?} did not finish within {limit:?}");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "{script} printed no JSON report (exit {:?}); stdout: {stdout}; stderr: {stderr}",
                out.status.code()
            )
        });
    NodeRun {
        code: out.status.code(),
        report,
        stderr,
    }
}
