//! Prometheus metrics (SPEC §11), registered once and served as text on the
//! admin listener's `/metrics`. Each metric is incremented in exactly one
//! place: the access log, the audit log, the store dispatch, the TLS
//! handshake and the jar; reloads and certificate expiry in
//! `Shared::reload` (and at start); `cloakroom_build_info` is constant.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::LazyLock;
use std::time::SystemTime;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub sessions_active: IntGauge,
    pub session_events: IntCounterVec,
    pub store_duration: HistogramVec,
    /// `store_duration` per operation, resolved once (no label hashing per call).
    pub store_ops: StoreOps,
    pub store_errors: IntCounter,
    /// 1 while the session store answers, 0 from its first failed call
    /// until one succeeds (set by `store::outage`).
    pub store_up: IntGauge,
    pub tls_handshakes: IntCounterVec,
    pub jar_rejected: IntCounterVec,
    /// `cloakroom_connections_refused_total{reason}`: accepted and closed at
    /// once (`max_connections` with nothing idle, `max_connections_per_client`)
    /// or cut off (`h2_flood`: GOAWAY `ENHANCE_YOUR_CALM`; `h1_target_too_long`:
    /// 414, `h1_chunk_size`: 400, both followed by a close).
    pub connections_refused: IntCounterVec,
    /// Idle keep-alive connections closed to admit a new one at the cap.
    pub connections_reclaimed: IntCounter,
    /// `cloakroom_login_forms_unread_total{reason}`: login forms the form
    /// provider forwarded without reading (SPEC §8.4a), so they bound nothing.
    pub login_forms_unread: IntCounterVec,
    /// `cloakroom_login_failure_keys{table}`: names (`user`) and addresses
    /// (`address`) with counted login failures (`crate::throttle`).
    pub login_failure_keys: IntGaugeVec,
    /// `cloakroom_config_reloads_total{result}`: see [`Metrics::config_reloads`].
    reloads_ok: IntCounter,
    reloads_error: IntCounter,
    /// `cloakroom_tls_certificate_expiry_timestamp_seconds{cert}`: one
    /// series per configured certificate (see [`set_certificate_expiry`]).
    cert_expiry: GaugeVec,
}

impl Metrics {
    /// The reload counter for a reload that succeeded or was rejected.
    pub fn config_reloads(&self, ok: bool) -> &IntCounter {
        if ok {
            &self.reloads_ok
        } else {
            &self.reloads_error
        }
    }
}

/// Sets one certificate expiry series per entry of `next` (name, notAfter)
/// and then removes the series of `previous` that `next` no longer names
/// (a `[[tls.sni]]` entry a reload dropped), so a scrape never sees a
/// configured certificate without its series. At start `previous` is empty;
/// reloads run one at a time.
pub fn set_certificate_expiry(previous: &[(String, SystemTime)], next: &[(String, SystemTime)]) {
    let gauge = &get().cert_expiry;
    for (name, t) in next {
        // A notAfter before 1970 reads as a negative timestamp.
        let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        gauge.with_label_values(&[name.as_str()]).set(secs);
    }
    for (name, _) in previous {
        if !next.iter().any(|(n, _)| n == name) {
            let _ = gauge.remove_label_values(&[name.as_str()]);
        }
    }
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    label: &str,
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &[label])
        .expect("valid metric definition");
    r.register(Box::new(h.clone()))
        .expect("metric names are unique");
    h
}

/// The store timing histogram of each operation.
pub struct StoreOps {
    pub load: Histogram,
    pub create: Histogram,
    pub update: Histogram,
    pub touch: Histogram,
    pub rotate: Histogram,
    pub delete: Histogram,
    pub purge: Histogram,
    pub count: Histogram,
    pub by_user: Histogram,
    pub by_handle: Histogram,
    pub delete_user: Histogram,
}

impl StoreOps {
    fn new(v: &HistogramVec) -> Self {
        let op = |name: &str| v.with_label_values(&[name]);
        StoreOps {
            load: op("load"),
            create: op("create"),
            update: op("update"),
            touch: op("touch"),
            rotate: op("rotate"),
            delete: op("delete"),
            purge: op("purge"),
            count: op("count"),
            by_user: op("by_user"),
            by_handle: op("by_handle"),
            delete_user: op("delete_user"),
        }
    }
}

/// `cloakroom_requests_total` for one route, with the counters of the
/// common status codes resolved up front; other codes take the labelled
/// lookup.
pub struct RequestCounters {
    route: String,
    common: Vec<(u16, IntCounter)>,
}

/// Statuses answered often enough to keep their counter at hand.
const COMMON_STATUSES: [u16; 16] = [
    200, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 500, 502, 504,
];

impl std::fmt::Debug for RequestCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestCounters")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl RequestCounters {
    /// Counters for `route` (`""`: requests that matched no route).
    pub fn new(route: &str) -> Self {
        let requests = &get().requests;
        let common = COMMON_STATUSES
            .iter()
            .map(|&code| {
                let status = http::StatusCode::from_u16(code).expect("a valid status code");
                (code, requests.with_label_values(&[route, status.as_str()]))
            })
            .collect();
        RequestCounters {
            route: route.to_owned(),
            common,
        }
    }

    pub fn inc(&self, status: http::StatusCode) {
        let code = status.as_u16();
        match self.common.iter().find(|(c, _)| *c == code) {
            Some((_, counter)) => counter.inc(),
            None => get()
                .requests
                .with_label_values(&[self.route.as_str(), status.as_str()])
                .inc(),
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    let sessions_active = IntGauge::new("cloakroom_sessions_active", "Sessions held by the store.")
        .expect("valid metric definition");
    r.register(Box::new(sessions_active.clone()))
        .expect("metric names are unique");
    let store_errors = counter(
        &r,
        "cloakroom_store_errors_total",
        "Session store operations that failed.",
    );
    let store_up = IntGauge::new(
        "cloakroom_store_up",
        "1 while the session store answers, 0 while it cannot be reached.",
    )
    .expect("valid metric definition");
    store_up.set(1);
    r.register(Box::new(store_up.clone()))
        .expect("metric names are unique");
    let store_duration = histogram_vec(
        &r,
        "cloakroom_store_operation_duration_seconds",
        "Session store operation time.",
        "op",
        vec![
            0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
        ],
    );
    let build_info = IntGaugeVec::new(
        Opts::new(
            "cloakroom_build_info",
            "Always 1; the version label names the running cloakroom.",
        ),
        &["version"],
    )
    .expect("valid metric definition");
    build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    r.register(Box::new(build_info))
        .expect("metric names are unique");
    let reloads = counter_vec(
        &r,
        "cloakroom_config_reloads_total",
        "Configuration reloads (SIGHUP or POST /reload) by result (ok, error).",
        &["result"],
    );
    let cert_expiry = GaugeVec::new(
        Opts::new(
            "cloakroom_tls_certificate_expiry_timestamp_seconds",
            "notAfter of each configured certificate's leaf, in seconds since the epoch.",
        ),
        &["cert"],
    )
    .expect("valid metric definition");
    r.register(Box::new(cert_expiry.clone()))
        .expect("metric names are unique");
    let login_failure_keys = IntGaugeVec::new(
        Opts::new(
            "cloakroom_login_failure_keys",
            "Entries in the failed-login tables: user names (table=user) and client addresses (table=address); expired entries are dropped when a table fills, and each holds at most 65536.",
        ),
        &["table"],
    )
    .expect("valid metric definition");
    r.register(Box::new(login_failure_keys.clone()))
        .expect("metric names are unique");
    Metrics {
        login_failure_keys,
        reloads_ok: reloads.with_label_values(&["ok"]),
        reloads_error: reloads.with_label_values(&["error"]),
        cert_expiry,
        requests: counter_vec(
            &r,
            "cloakroom_requests_total",
            "Requests answered, by route and status.",
            &["route", "status"],
        ),
        upstream_duration: histogram_vec(
            &r,
            "cloakroom_upstream_duration_seconds",
            "Time to the upstream's response headers.",
            "route",
            prometheus::DEFAULT_BUCKETS.to_vec(),
        ),
        sessions_active,
        session_events: counter_vec(
            &r,
            "cloakroom_session_events_total",
            "Session audit events.",
            &["event"],
        ),
        store_ops: StoreOps::new(&store_duration),
        store_duration,
        store_errors,
        store_up,
        tls_handshakes: counter_vec(
            &r,
            "cloakroom_tls_handshakes_total",
            "TLS handshakes by result (ok, error).",
            &["result"],
        ),
        jar_rejected: counter_vec(
            &r,
            "cloakroom_jar_rejected_total",
            "Upstream Set-Cookies dropped, by reason.",
            &["reason"],
        ),
        connections_refused: counter_vec(
            &r,
            "cloakroom_connections_refused_total",
            "Client connections refused at once (max_connections, per_client) or cut off for abuse (h2_flood, h1_target_too_long, h1_chunk_size), by reason.",
            &["reason"],
        ),
        connections_reclaimed: counter(
            &r,
            "cloakroom_connections_reclaimed_total",
            "Idle keep-alive client connections closed to admit a new one at max_connections.",
        ),
        login_forms_unread: counter_vec(
            &r,
            "cloakroom_login_forms_unread_total",
            "Login forms forwarded unread (provider = \"form\"), so binding nothing, by reason: cross_site, busy, too_large, too_slow.",
            &["reason"],
        ),
        registry: r,
    }
});

pub fn get() -> &'static Metrics {
    &METRICS
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&METRICS.registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
