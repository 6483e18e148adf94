//! The access line, formatted straight into the log writer's buffer.
//!
//! Through `tracing`'s formatter an access line cost about 10 k
//! instructions (a third of a proxied HTTP/1.1 request): the timestamp
//! formatted field by field, every value through `fmt::Debug` and a
//! visitor, ANSI painting calls even with colours off. This writes the
//! same bytes, in both formats, from a per-thread buffer, with the
//! timestamp's date and time of day formatted once per second. Whether the
//! line is written is still `tracing`'s decision (`RUST_LOG`, see
//! [`super::access_enabled`]); with colours on (stdout a terminal) lines
//! go through `tracing` as before. The tests below hold the bytes to what
//! `tracing` writes for the same event.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::MakeWriter;

use super::batch::Lines;
use super::AccessLine;

/// Where access lines go when they skip `tracing`'s formatter.
pub(super) struct Direct {
    pub(super) lines: Lines,
    pub(super) json: bool,
}

/// One thread's line buffer and its last formatted second.
struct Scratch {
    line: Vec<u8>,
    second: u64,
    /// `YYYY-MM-DDTHH:MM:SS` of `second`.
    stamp: String,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch { line: Vec::new(), second: u64::MAX, stamp: String::new() })
    };
}

impl Direct {
    /// Formats and queues one access line.
    pub(super) fn write(&self, line: &AccessLine<'_>, duration_ms: f64) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let s = &mut *s;
            if s.second != now.as_secs() {
                s.second = now.as_secs();
                s.stamp.clear();
                let t = UNIX_EPOCH + std::time::Duration::from_secs(now.as_secs());
                let _ = write!(s.stamp, "{}", humantime::format_rfc3339_seconds(t));
                s.stamp.pop(); // the `Z`
            }
            s.line.clear();
            let sub = now.subsec_micros();
            match self.json {
                true => json(&mut s.line, &s.stamp, sub / 1000, line, duration_ms),
                false => text(&mut s.line, &s.stamp, sub, line, duration_ms),
            }
            let _ = self.lines.make_writer().write_all(&s.line);
            // A rare huge path must not keep its buffer on every thread.
            if s.line.capacity() > 16 * 1024 {
                s.line = Vec::new();
            }
        });
    }
}

/// `tracing`'s full format without colours: `2026-12-06T23:26:46.383216Z
///  INFO access: route="/" method="GET" …`, fields in the order of the
/// event, strings as `{:?}`, absent ones left out.
fn text(out: &mut Vec<u8>, stamp: &str, micros: u32, l: &AccessLine<'_>, duration_ms: f64) {
    let _ = write!(out, "{stamp}.{micros:06}Z  INFO access: ");
    if let Some(route) = l.route {
        let _ = write!(out, "route={route:?} ");
    }
    let _ = write!(
        out,
        "method={:?} path={:?} status={} duration_ms={:?}",
        l.method,
        l.path,
        l.status.as_u16(),
        duration_ms
    );
    if let Some(session) = l.session {
        let _ = write!(out, " session={session:?}");
    }
    if let Some(user) = l.user {
        let _ = write!(out, " user={user:?}");
    }
    out.push(b'\n');
}

/// [`super::JsonLine`]'s object for an access event: its keys in
/// `serde_json::Map`'s (sorted) order, `route`, `session` and `user` null
/// when absent.
fn json(out: &mut Vec<u8>, stamp: &str, millis: u32, l: &AccessLine<'_>, duration_ms: f64) {
    let number = serde_json::Number::from_f64(duration_ms);
    out.extend_from_slice(b"{\"duration_ms\":");
    match number {
        Some(n) => {
            let _ = serde_json::to_writer(&mut *out, &n);
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"level\":\"INFO\",\"method\":");
    string(out, Some(l.method));
    out.extend_from_slice(b",\"path\":");
    string(out, Some(l.path));
    out.extend_from_slice(b",\"route\":");
    string(out, l.route);
    out.extend_from_slice(b",\"session\":");
    string(out, l.session);
    let _ = write!(
        out,
        ",\"status\":{},\"target\":\"access\",\"time\":\"{stamp}.{millis:03}Z\",\"user\":",
        l.status.as_u16()
    );
    string(out, l.user);
    out.extend_from_slice(b"}\n");
}

/// A JSON string (serde_json's escaping) or `null`.
fn string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            let _ = serde_json::to_writer(&mut *out, s);
        }
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `tracing`'s formatter writes for the access event, as
    /// `telemetry::init` configures it (colours off).
    fn through_tracing(line: &AccessLine<'_>, duration_ms: f64, json: bool) -> String {
        let out = Captured::default();
        let writer = {
            let out = out.clone();
            move || out.clone()
        };
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(writer)
            .with_max_level(tracing::Level::INFO);
        let run = || super::super::access_event(line, duration_ms);
        match json {
            true => tracing::subscriber::with_default(
                builder.event_format(super::super::JsonLine).finish(),
                run,
            ),
            false => tracing::subscriber::with_default(builder.with_target(true).finish(), run),
        }
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn direct(line: &AccessLine<'_>, duration_ms: f64, json: bool) -> String {
        let mut buf = Vec::new();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let mut stamp = String::new();
        let t = UNIX_EPOCH + std::time::Duration::from_secs(now.as_secs());
        write!(stamp, "{}", humantime::format_rfc3339_seconds(t)).unwrap();
        stamp.pop();
        match json {
            true => super::json(&mut buf, &stamp, now.subsec_millis(), line, duration_ms),
            false => super::text(&mut buf, &stamp, now.subsec_micros(), line, duration_ms),
        }
        String::from_utf8(buf).unwrap()
    }

    /// The line with its timestamp replaced by `T`.
    fn untimed(s: &str, json: bool) -> String {
        match json {
            true => {
                let at = s.find("\"time\":\"").expect("a time key") + 8;
                let end = at + s[at..].find('"').unwrap();
                assert_eq!(end - at, 24, "{s}");
                format!("{}T{}", &s[..at], &s[end..])
            }
            false => {
                assert_eq!(s.as_bytes()[26], b'Z', "{s}");
                format!("T{}", &s[27..])
            }
        }
    }

    /// `GET /`, 200, no route, session or user.
    fn get_root() -> AccessLine<'static> {
        AccessLine {
            route: None,
            method: "GET",
            path: "/",
            status: http::StatusCode::OK,
            duration: None,
            session: None,
            user: None,
        }
    }

    #[test]
    fn the_same_bytes_as_tracing_writes_in_both_formats() {
        let lines = [
            AccessLine {
                route: Some("/"),
                ..get_root()
            },
            AccessLine {
                route: None,
                method: "POST",
                path: "/a\"b\\c/%2F/zoë\u{1}\t",
                status: http::StatusCode::NOT_FOUND,
                duration: None,
                session: Some("h_0123456789abcdef"),
                user: Some("al\"ice\u{7f}\u{2028}é"),
            },
            AccessLine {
                route: Some("app \u{0}"),
                method: "PATCH",
                path: "/x",
                status: http::StatusCode::BAD_GATEWAY,
                duration: None,
                session: None,
                user: Some("bob"),
            },
        ];
        for json in [false, true] {
            for line in &lines {
                for ms in [0.0, 0.001, 10.898, 1234.5, 1e7] {
                    let want = through_tracing(line, ms, json);
                    let got = direct(line, ms, json);
                    assert_eq!(
                        untimed(&got, json),
                        untimed(&want, json),
                        "json {json}, {ms} ms"
                    );
                }
            }
        }
    }

    #[test]
    fn the_stamp_is_the_seconds_of_now() {
        let (lines, _guard) = super::super::batch::start(Captured::default());
        let d = Direct { lines, json: false };
        let line = get_root();
        let before = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        d.write(&line, 1.0);
        let after = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        let stamp = SCRATCH.with(|s| String::from_utf8(s.borrow().line[..27].to_vec()).unwrap());
        assert!(
            before <= stamp && stamp <= after,
            "{before} <= {stamp} <= {after}"
        );
    }
}
