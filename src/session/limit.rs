//! `session.max_new_sessions_per_client` (SPEC §3): how many sessions one
//! client address may create per minute, so one client cannot evict every
//! other anonymous session at `max_sessions`.
//!
//! A generic cell rate algorithm per client: each creation moves the
//! client's "theoretical arrival time" one emission interval (a minute over
//! the limit) forward, and a creation is refused while that time is more
//! than a minute ahead; the refusal says when the next one would pass. One
//! `u64` per client, dropped once its time has passed. IPv6 clients are
//! counted per /64 (one host usually holds the whole prefix).
//!
//! The table holds at most [`MAX_CLIENTS`] addresses. When it is full,
//! entries whose time has passed are dropped; if none has, a new address
//! is refused (fail closed: the store's capacity is what is protected), and
//! this is logged at most once a minute.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

const MINUTE_MS: u64 = 60_000;

/// The most client addresses tracked at once.
pub const MAX_CLIENTS: usize = 100_000;

#[derive(Debug)]
pub struct NewSessionLimit {
    capacity: usize,
    inner: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// Per client: the theoretical arrival time, in ms.
    tat: HashMap<ClientKey, u64>,
    last_full_warning: Option<u64>,
}

/// The client, as counted: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    V4(u32),
    V6(u64),
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4.into()),
                None => ClientKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// A creation refused: the client may create its next session in this
/// many seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

impl Default for NewSessionLimit {
    fn default() -> Self {
        Self::with_capacity(MAX_CLIENTS)
    }
}

impl NewSessionLimit {
    pub fn with_capacity(capacity: usize) -> Self {
        NewSessionLimit {
            capacity,
            inner: Mutex::new(Table::default()),
        }
    }

    /// Takes one creation for `client` at `now` (ms) under `per_minute`.
    pub fn take(&self, client: IpAddr, per_minute: u32, now: u64) -> Result<(), RetryAfter> {
        let interval = MINUTE_MS / u64::from(per_minute.max(1));
        let key = ClientKey::from(client);
        let mut t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !t.tat.contains_key(&key) && t.tat.len() >= self.capacity {
            t.tat.retain(|_, tat| *tat > now);
            if t.tat.len() >= self.capacity {
                if t.last_full_warning.is_none_or(|at| now >= at + MINUTE_MS) {
                    t.last_full_warning = Some(now);
                    tracing::warn!(
                        clients = self.capacity,
                        "new-session limit table is full; refusing sessions from new client addresses"
                    );
                }
                return Err(RetryAfter(1));
            }
        }
        let tat = t.tat.entry(key).or_insert(now);
        let start = (*tat).max(now);
        let next = start + interval;
        if next > now + MINUTE_MS {
            let wait_ms = next - MINUTE_MS - now;
            return Err(RetryAfter(wait_ms.div_ceil(1000).max(1)));
        }
        *tat = next;
        Ok(())
    }

    /// Client addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tat
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_minutes_worth_passes_then_the_next_waits() {
        let l = NewSessionLimit::default();
        let now = 1_000_000;
        for i in 0..6 {
            assert!(l.take(ip("192.0.2.1"), 6, now).is_ok(), "creation {i}");
        }
        // The 7th in the same instant waits one interval (10 s).
        assert_eq!(l.take(ip("192.0.2.1"), 6, now), Err(RetryAfter(10)));
        // Another client is not affected.
        assert!(l.take(ip("192.0.2.2"), 6, now).is_ok());
        // After the interval one more passes, and only one.
        assert!(l.take(ip("192.0.2.1"), 6, now + 10_000).is_ok());
        assert!(l.take(ip("192.0.2.1"), 6, now + 10_000).is_err());
    }

    #[test]
    fn ipv6_is_counted_per_64_and_mapped_v4_as_v4() {
        let l = NewSessionLimit::default();
        assert!(l.take(ip("2001:db8:1:2::1"), 1, 0).is_ok());
        assert!(l.take(ip("2001:db8:1:2::ffff"), 1, 0).is_err());
        assert!(l.take(ip("2001:db8:1:3::1"), 1, 0).is_ok());
        assert!(l.take(ip("192.0.2.9"), 1, 0).is_ok());
        assert!(l.take(ip("::ffff:192.0.2.9"), 1, 0).is_err());
    }

    #[test]
    fn a_full_table_drops_what_has_passed_and_refuses_new_clients_otherwise() {
        let l = NewSessionLimit::with_capacity(3);
        for n in 1..=3 {
            assert!(l.take(ip(&format!("192.0.2.{n}")), 60, 0).is_ok());
        }
        // Full, and every entry is still ahead of now (1 s each).
        assert_eq!(l.take(ip("192.0.2.4"), 60, 500), Err(RetryAfter(1)));
        // Tracked clients keep their own budget.
        assert!(l.take(ip("192.0.2.1"), 60, 500).is_ok());
        // Once the others' time has passed they are dropped to make room.
        assert!(l.take(ip("192.0.2.4"), 60, 5_000).is_ok());
        assert!(l.tracked() <= 3);
    }
}
