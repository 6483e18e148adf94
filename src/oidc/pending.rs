//! Logins started and not yet finished (SPEC §8.6): `state` → the nonce,
//! the PKCE verifier, the redirect URI, the return path and the session
//! the login was started from. Taken once by the callback, whatever the
//! outcome; abandoned ones expire after [`TTL`]. Bounded at [`MAX`]: when
//! full, expired entries go first, then the oldest.
//!
//! Kept in this process's memory: a callback must reach the replica that
//! started the login (sticky routing in front of several replicas).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

use crate::session::SessionKey;

/// How long a login may take at the issuer.
pub const TTL: Duration = Duration::from_secs(600);
/// The most logins pending at once.
pub const MAX: usize = 10_000;

/// One login in flight.
#[derive(Debug)]
pub struct Pending {
    /// The session the login was started from: only it may finish it.
    pub session: SessionKey,
    pub nonce: String,
    pub verifier: String,
    pub redirect_uri: String,
    /// A same-origin relative path, checked when the login started.
    pub return_to: String,
    started: Instant,
}

impl Pending {
    pub fn new(
        session: SessionKey,
        nonce: String,
        verifier: String,
        redirect_uri: String,
        return_to: String,
    ) -> Pending {
        Pending {
            session,
            nonce,
            verifier,
            redirect_uri,
            return_to,
            started: Instant::now(),
        }
    }

    /// RFC 7636 S256: base64url(SHA-256(verifier)).
    pub fn challenge(&self) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, self.verifier.as_bytes());
        B64.encode(d)
    }
}

/// The pending logins, keyed by SHA-256 of `state` (the state itself is
/// not kept).
#[derive(Default)]
pub struct PendingLogins(Mutex<HashMap<[u8; 32], Pending>>);

fn key(state: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, state.as_bytes());
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    k
}

impl PendingLogins {
    pub fn insert(&self, state: &str, login: Pending) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX {
            map.retain(|_, p| p.started.elapsed() < TTL);
        }
        if map.len() >= MAX {
            if let Some(oldest) = map.iter().min_by_key(|(_, p)| p.started).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(key(state), login);
    }

    /// Takes the login `state` names, once; `None` when unknown, used or
    /// expired.
    pub fn take(&self, state: &str) -> Option<Pending> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(&key(state))
            .filter(|p| p.started.elapsed() < TTL)
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(n: u8) -> Pending {
        Pending::new(
            SessionKey([n; 32]),
            "n".into(),
            "v".into(),
            "r".into(),
            "/".into(),
        )
    }

    #[test]
    fn s8_6_state_is_single_use_and_the_map_is_bounded() {
        let p = PendingLogins::default();
        p.insert("s1", login(1));
        assert!(p.take("s2").is_none());
        assert_eq!(p.take("s1").unwrap().session, SessionKey([1; 32]));
        assert!(p.take("s1").is_none(), "used once");
        for i in 0..MAX + 5 {
            p.insert(&format!("k{i}"), login(0));
        }
        assert_eq!(p.len(), MAX);
        assert!(p.take("k0").is_none(), "the oldest went first");
        assert!(p.take(&format!("k{}", MAX + 4)).is_some());
    }
}
