//! The session calls of the admin API (SPEC §10): the listing of a user's
//! live sessions and revocation, through the session manager (which logs
//! `revoked` once per session and keeps `cloakroom_sessions_active`).
//!
//! Times are RFC 3339 in UTC to the second (`2025-01-31T09:30:00Z`), as
//! `/.cloakroom/session` gives `expires_at`; `expires_at` is when the session
//! ends unless used again, under the running config. A jar entry is one
//! live cookie of any route's jar: `{name, path, bytes}`, `bytes` being the
//! length of name plus value; a value never leaves the proxy.

use std::time::{Duration, UNIX_EPOCH};

use http::{Response, StatusCode};
use serde::Serialize;

use crate::config::Session as SessionConfig;
use crate::reply::{json, no_content, ProxyBody};
use crate::session::{now_ms, Session, SessionKey, StoreError};
use crate::state::Sessions;

/// One session as `GET /sessions` lists it.
#[derive(Serialize)]
struct Listed<'a> {
    handle: String,
    user: Option<&'a str>,
    created: String,
    last_seen: String,
    expires_at: String,
    client_ip: &'a str,
    user_agent: &'a str,
    route: &'a str,
    jar: Vec<JarEntry<'a>>,
}

#[derive(Serialize)]
struct JarEntry<'a> {
    name: &'a str,
    path: &'a str,
    bytes: usize,
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn listed<'a>(key: &SessionKey, s: &'a Session, cfg: &SessionConfig, now: u64) -> Listed<'a> {
    Listed {
        handle: key.handle().to_string(),
        user: s.user(),
        created: rfc3339(s.created),
        last_seen: rfc3339(s.last_seen),
        expires_at: rfc3339(s.deadline(cfg)),
        client_ip: &s.client_ip,
        user_agent: &s.user_agent,
        route: &s.route,
        jar: s
            .jars
            .iter()
            .flat_map(|(_, jar)| jar.cookies())
            .filter(|c| c.expires.is_none_or(|t| t > now))
            .map(|c| JarEntry {
                name: &c.name,
                path: &c.path,
                bytes: c.bytes(),
            })
            .collect(),
    }
}

/// `GET /sessions?user=NAME`: a JSON array, oldest session first.
pub async fn list(sessions: &Sessions, user: &str, cfg: &SessionConfig) -> Response<ProxyBody> {
    let found = match sessions.sessions_of(user, cfg).await {
        Ok(found) => found,
        Err(e) => return unavailable(&e),
    };
    let now = now_ms();
    let body: Vec<Listed> = found
        .iter()
        .map(|(key, s)| listed(key, s, cfg, now))
        .collect();
    match serde_json::to_vec(&body) {
        Ok(text) => json(StatusCode::OK, text),
        Err(e) => {
            tracing::error!(error = %e, "cannot write the session list");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// `DELETE /sessions/{handle}`: 204, or 404 when no live session has it.
pub async fn revoke(
    sessions: &Sessions,
    handle: &[u8; 8],
    cfg: &SessionConfig,
) -> Response<ProxyBody> {
    match sessions.revoke_handle(handle, cfg).await {
        Ok(true) => no_content(),
        Ok(false) => error(StatusCode::NOT_FOUND, "no such session"),
        Err(e) => unavailable(&e),
    }
}

/// `DELETE /users/{name}/sessions`: `{"revoked": N}`, N live sessions.
pub async fn revoke_user(
    sessions: &Sessions,
    user: &str,
    cfg: &SessionConfig,
) -> Response<ProxyBody> {
    match sessions.revoke_user(user, cfg).await {
        Ok(n) => json(
            StatusCode::OK,
            serde_json::json!({ "revoked": n }).to_string(),
        ),
        Err(e) => unavailable(&e),
    }
}

/// `{"error": "..."}` with a status.
pub fn error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    json(status, serde_json::json!({ "error": message }).to_string())
}

fn unavailable(e: &StoreError) -> Response<ProxyBody> {
    tracing::warn!(error = %e, "admin API: the session store failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the session store is unavailable",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::session::setcookie::SetCookie;
    use crate::session::SessionId;
    use std::path::Path;

    #[test]
    fn s10_listing_shows_jar_sizes_never_values() {
        let cfg = Config::parse(
            Path::new("/x/p.toml"),
            "[session]\nidle_timeout = \"30m\"\n[[route]]\nupstream = \"http://127.0.0.1:1\"\n",
        )
        .unwrap()
        .session;
        let t0 = 1_700_000_000_000;
        let mut s = Session::new(t0, "192.0.2.7".into(), "curl/8", "app");
        for raw in ["sid=SECRETVALUE; Path=/", "gone=x; Max-Age=1"] {
            let sc = SetCookie::parse(raw).unwrap();
            s.jar_mut("app").store(&sc, "/", t0, 65_536);
        }
        let key = SessionId::generate().unwrap().key();
        let v = serde_json::to_value(listed(&key, &s, &cfg, t0 + 5_000)).unwrap();
        assert_eq!(v["handle"], key.handle().to_string());
        assert_eq!(v["created"], "2023-11-14T22:13:20Z");
        assert_eq!(v["expires_at"], "2023-11-14T22:43:20Z");
        assert_eq!(v["client_ip"], "192.0.2.7");
        assert_eq!(
            v["jar"],
            serde_json::json!([{"name": "sid", "path": "/", "bytes": 14}])
        );
        assert!(!v.to_string().contains("SECRETVALUE"));
    }
}
