//! Ports for test listeners that must be named before they start.

/// A loopback port free a moment ago, for a listener that must be named
/// before it starts (the OIDC provider registers cloakroom's callback URL
/// first; redis-server and the real apps are given a port). Taken below
/// the kernel's ephemeral range (`ip_local_port_range`, 32768 and up by
/// default), where neither `bind(…:0)` nor a connection's local port ever
/// lands, from a per-process start that moves on with each call: a port
/// from `bind(…:0)` could go to the next socket anyone opened before the
/// listener took it, and a CI run failed so ("Address already in use").
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u32, ephemeral_low.clamp(10_001, 65_536));
    let span = high - low;
    let seed = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span.min(5_000) {
        let port = (low + (seed + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below {high}");
}
