//! Sessions: the server-side record behind the browser's one signed cookie
//! (SPEC §4–§8), and every rule about it.
//!
//! [`codec`] signs and verifies cookie values; [`cookies`] scans the
//! request's `Cookie` header once and writes the upstream's; [`request`] is
//! one request's session state and its transitions; [`capture`] is the
//! decision taken on the upstream's response; [`csrf`] refuses
//! cross-site requests riding on the session cookie; [`jar`] keeps upstream
//! cookies and [`setcookie`] parses and rewrites `Set-Cookie`; [`manager`]
//! creates, rotates, touches and ends sessions over any [`store`] backend,
//! each change logged by [`audit`].

pub mod audit;
pub mod capture;
pub mod codec;
mod cookie_date;
pub mod cookies;
pub mod csrf;
pub mod jar;
pub mod manager;
pub mod request;
pub mod setcookie;
pub mod store;

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Session as SessionConfig;
use jar::Jar;

pub use codec::{Keyring, SessionId, SessionKey, VerifyCache};
pub use manager::Manager;
pub use request::SessionState;
pub use store::{SessionStore, StoreError};

/// The current time in unix milliseconds: every session time is one.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Who a session belongs to, once someone logged in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub user: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
}

impl Identity {
    /// An identity value from an upstream or provider (SPEC §8.4): at most
    /// 256 bytes, no control characters.
    pub fn valid_value(v: &str) -> bool {
        !v.is_empty() && v.len() <= 256 && !v.chars().any(char::is_control)
    }
}

/// A session as stored. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub created: u64,
    /// Creation or the last login: the absolute timeout counts from here.
    pub started: u64,
    pub last_seen: u64,
    /// When the session ends unless used again; kept current by the manager
    /// on every write so stores can expire entries without the config.
    pub expires_at: u64,
    pub identity: Option<Identity>,
    /// One jar per route, keyed by the route's name.
    pub jars: Vec<(String, Jar)>,
    pub client_ip: String,
    pub user_agent: String,
    pub route: String,
}

/// Why a session is no longer live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Idle,
    Absolute,
}

impl Session {
    pub fn new(now: u64, client_ip: String, user_agent: &str, route: &str) -> Self {
        let mut ua = user_agent.to_string();
        if ua.len() > 256 {
            let mut cut = 256;
            while !ua.is_char_boundary(cut) {
                cut -= 1;
            }
            ua.truncate(cut);
        }
        Session {
            created: now,
            started: now,
            last_seen: now,
            expires_at: now,
            identity: None,
            jars: Vec::new(),
            client_ip,
            user_agent: ua,
            route: route.to_string(),
        }
    }

    /// When the session ends unless used again (unix ms).
    pub fn deadline(&self, cfg: &SessionConfig) -> u64 {
        let idle = self
            .last_seen
            .saturating_add(cfg.idle_timeout.as_millis() as u64);
        let absolute = self.absolute_deadline(cfg);
        idle.min(absolute)
    }

    pub fn absolute_deadline(&self, cfg: &SessionConfig) -> u64 {
        self.started
            .saturating_add(cfg.absolute_timeout.as_millis() as u64)
    }

    /// `Some` when the session has ended by `now` (SPEC §7.1, §7.2).
    pub fn ended(&self, cfg: &SessionConfig, now: u64) -> Option<Ended> {
        if now >= self.absolute_deadline(cfg) {
            Some(Ended::Absolute)
        } else if now
            >= self
                .last_seen
                .saturating_add(cfg.idle_timeout.as_millis() as u64)
        {
            Some(Ended::Idle)
        } else {
            None
        }
    }

    pub fn jar(&self, route: &str) -> Option<&Jar> {
        self.jars.iter().find(|(r, _)| r == route).map(|(_, j)| j)
    }

    pub fn jar_mut(&mut self, route: &str) -> &mut Jar {
        let i = match self.jars.iter().position(|(r, _)| r == route) {
            Some(i) => i,
            None => {
                self.jars.push((route.to_string(), Jar::default()));
                self.jars.len() - 1
            }
        };
        &mut self.jars[i].1
    }

    pub fn user(&self) -> Option<&str> {
        self.identity.as_ref().map(|i| i.user.as_str())
    }

    /// A login (any provider) binds `identity` at `now`: the absolute
    /// timeout restarts. False when it is the identity already bound, with
    /// the same groups: then nothing changes (SPEC §4.6). The caller
    /// rotates the session when this returns true.
    pub fn bind_identity(&mut self, identity: Identity, now: u64) -> bool {
        if self.identity.as_ref() == Some(&identity) {
            return false;
        }
        self.identity = Some(identity);
        self.started = now;
        self.last_seen = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn cfg(extra: &str) -> SessionConfig {
        let text = format!("[session]\n{extra}\n[[route]]\nupstream = \"http://127.0.0.1:1\"\n");
        Config::parse(Path::new("/x/p.toml"), &text)
            .unwrap()
            .session
    }

    #[test]
    fn idle_timeout_with_a_controllable_clock() {
        let c = cfg("idle_timeout = \"2s\"\ntouch_interval = \"1s\"");
        let mut s = Session::new(1_000, "127.0.0.1".into(), "ua", "/");
        assert_eq!(s.ended(&c, 2_999), None);
        assert_eq!(s.ended(&c, 3_000), Some(Ended::Idle));
        s.last_seen = 2_500;
        assert_eq!(s.ended(&c, 3_000), None);
        assert_eq!(s.deadline(&c), 4_500);
    }

    #[test]
    fn absolute_timeout_counts_from_the_last_login() {
        let c = cfg("idle_timeout = \"10s\"\nabsolute_timeout = \"20s\"\ntouch_interval = \"1s\"");
        let mut s = Session::new(0, "127.0.0.1".into(), "ua", "/");
        s.last_seen = 19_000;
        assert_eq!(s.ended(&c, 20_000), Some(Ended::Absolute));
        s.started = 15_000;
        assert_eq!(s.ended(&c, 20_000), None);
        assert_eq!(s.deadline(&c), 29_000);
    }

    #[test]
    fn s8_4_identity_values_are_bounded_and_printable() {
        assert!(Identity::valid_value("alice"));
        assert!(!Identity::valid_value(&"a".repeat(257)));
        assert!(!Identity::valid_value("a\u{7}b"));
        assert!(!Identity::valid_value(""));
    }

    #[test]
    fn user_agent_is_bounded() {
        let s = Session::new(0, "ip".into(), &"é".repeat(300), "/");
        assert!(s.user_agent.len() <= 256);
    }
}
