//! Logging: human-readable lines by default, one JSON object per line when
//! `CLOAKROOM_LOG_FORMAT=json`, with every field at the top level. The
//! access log is one line per request (SPEC §11); it never holds a cookie
//! value, a session id or a query string.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

mod access;
mod batch;

/// Access lines written without `tracing`'s formatter (colours off).
static DIRECT: std::sync::OnceLock<access::Direct> = std::sync::OnceLock::new();

/// Keeps the log writer thread alive; dropping it writes what is pending.
pub struct LogGuard(#[allow(dead_code)] batch::Guard);

/// Installs the global subscriber. Lines are written by a dedicated thread
/// in batches ([`batch`]), so a slow stdout never blocks the runtime; a
/// logging thread waits rather than drops when too much is pending, so no
/// audit line is lost. Keep the guard until exit.
pub fn init() -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("CLOAKROOM_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let (writer, guard) = batch::start(std::io::stdout());
    // Colour only for a person at a terminal: a container runtime, journald
    // or a log shipper reading a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    if !ansi {
        let lines = writer.clone();
        let _ = DIRECT.set(access::Direct { lines, json });
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let _ = if json {
        builder.event_format(JsonLine).try_init()
    } else {
        builder.with_target(true).try_init()
    };
    LogGuard(guard)
}

/// One request, as logged.
pub struct AccessLine<'a> {
    pub route: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub status: http::StatusCode,
    /// Measured only when the access line is written ([`access_enabled`]).
    pub duration: Option<Duration>,
    pub session: Option<&'a str>,
    pub user: Option<&'a str>,
}

/// Whether access lines are written (`RUST_LOG` lets `access` through).
pub fn access_enabled() -> bool {
    tracing::enabled!(target: "access", tracing::Level::INFO)
}

pub fn access(line: AccessLine<'_>, counters: &crate::metrics::RequestCounters) {
    counters.inc(line.status);
    let duration_ms = line.duration.unwrap_or_default().as_secs_f64() * 1000.0;
    let duration_ms = (duration_ms * 1000.0).round() / 1000.0;
    match DIRECT.get() {
        Some(direct) => {
            if access_enabled() {
                direct.write(&line, duration_ms);
            }
        }
        None => access_event(&line, duration_ms),
    }
}

/// The access line as a `tracing` event.
fn access_event(line: &AccessLine<'_>, duration_ms: f64) {
    tracing::info!(
        target: "access",
        route = line.route,
        method = line.method,
        path = line.path,
        status = line.status.as_u16(),
        duration_ms,
        session = line.session,
        user = line.user,
    );
}

/// Keys the access line always carries, `null` when unknown.
const ACCESS_KEYS: [&str; 3] = ["route", "session", "user"];

struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut map = Map::new();
        map.insert(
            "time".into(),
            Value::String(humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
        );
        map.insert(
            "level".into(),
            Value::String(meta.level().as_str().to_string()),
        );
        map.insert("target".into(), Value::String(meta.target().to_string()));
        event.record(&mut JsonVisitor(&mut map));
        if meta.target() == "access" || meta.target() == "audit" {
            for key in ACCESS_KEYS {
                map.entry(key).or_insert(Value::Null);
            }
        }
        writeln!(writer, "{}", Value::Object(map))
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(
            field.name().into(),
            serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number),
        );
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}
