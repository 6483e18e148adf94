//! Audit events (SPEC §11): one line per lifecycle change of a session,
//! with a top-level `event`, the session's handle (never its id), the user
//! and the route, and the `cloakroom_session_events_total{event}` counter.

use super::codec::SessionKey;

/// Records one audit event.
pub fn audit(event: &str, key: Option<&SessionKey>, user: Option<&str>, route: Option<&str>) {
    crate::metrics::get()
        .session_events
        .with_label_values(&[event])
        .inc();
    let handle = key.map(|k| k.handle());
    tracing::info!(target: "audit", event, session = handle.as_ref().map(|h| h.as_str()), user, route);
}
