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

/// Records one login attempt at the proxy's own form (SPEC §8.5): `event`
/// is `login` (the session's handle then names the new session) or
/// `login_failed`; `outcome` is `success`, `wrong_password`,
/// `unknown_user` or `locked`. `user` is the name as typed, when it is a
/// valid identity value (never a control character in a log line); the
/// password is not a parameter.
pub fn login_attempt(
    event: &str,
    outcome: &str,
    key: Option<&SessionKey>,
    user: Option<&str>,
    client: std::net::IpAddr,
) {
    crate::metrics::get()
        .session_events
        .with_label_values(&[event])
        .inc();
    let handle = key.map(|k| k.handle());
    tracing::info!(target: "audit", event, outcome, provider = "local", session = handle.as_ref().map(|h| h.as_str()), user, client = %client);
}
