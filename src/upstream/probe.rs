//! The first-run check: at start and after a reload, each route's upstream
//! is tried once with a TCP connect, in a spawned task (listening never
//! waits for it). An upstream that does not accept is one warning naming
//! the route and the address; the default route to the bundled legacy app
//! also says how to start it. Nothing else changes: requests to such a
//! route get 502 until the upstream answers (SPEC §9.4).

use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::{Config, Route};

/// A connect that takes longer than this counts as not accepting.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How to start what the shipped `proxy.toml` points at (README, "Try it
/// with the legacy app").
const LEGACY_APP_HINT: &str = "start the bundled legacy app: python3 -m venv target/venv && target/venv/bin/pip install flask, then target/venv/bin/python examples/legacy_app.py";

/// One upstream address and the routes that send to it.
struct Target {
    addr: String,
    routes: Vec<(String, String)>,
    hint: Option<&'static str>,
}

/// Probes every route's upstream in the background; a no-op outside a
/// tokio runtime.
pub fn spawn(config: &Config) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    for target in targets(&config.routes) {
        runtime.spawn(probe(target));
    }
}

/// Routes grouped by upstream address, so each address is tried once.
fn targets(routes: &[Route]) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for route in routes {
        let addr = format!(
            "{}:{}",
            route.upstream.host(),
            route.upstream.port_u16().unwrap_or(80)
        );
        let named = (route.name.clone(), route.upstream_url.clone());
        match out.iter_mut().find(|t| t.addr == addr) {
            Some(t) => t.routes.push(named),
            None => out.push(Target {
                hint: hint(&addr),
                addr,
                routes: vec![named],
            }),
        }
    }
    out
}

/// The legacy-app hint, for the address the shipped config proxies to.
fn hint(addr: &str) -> Option<&'static str> {
    matches!(addr, "127.0.0.1:5000" | "localhost:5000").then_some(LEGACY_APP_HINT)
}

async fn probe(target: Target) {
    let error = match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(&*target.addr)).await {
        Ok(Ok(_)) => return,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no connection within {PROBE_TIMEOUT:?}"),
    };
    for (route, upstream) in &target.routes {
        match target.hint {
            Some(hint) => tracing::warn!(
                route = %route,
                upstream = %upstream,
                error = %error,
                hint,
                "upstream is not accepting connections; requests to this route get 502 until it does"
            ),
            None => tracing::warn!(
                route = %route,
                upstream = %upstream,
                error = %error,
                "upstream is not accepting connections; requests to this route get 502 until it does"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_shipped_default_upstream_gets_the_legacy_app_hint() {
        assert_eq!(hint("127.0.0.1:5000"), Some(LEGACY_APP_HINT));
        assert_eq!(hint("localhost:5000"), Some(LEGACY_APP_HINT));
        assert_eq!(hint("127.0.0.1:5001"), None);
        assert_eq!(hint("app.internal:5000"), None);
        assert!(LEGACY_APP_HINT.contains("examples/legacy_app.py"));
    }
}
