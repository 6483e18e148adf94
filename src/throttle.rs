//! Failed-login counters for `provider = "local"` (SPEC §3, §8.5): per user
//! name and per client address, each within `failure_window` from the first
//! counted failure. After `max_failures_*` failures every attempt for that
//! name or from that address is refused (429 with `Retry-After`) until the
//! window has passed, whatever the password.
//!
//! Memory is bounded: each map holds at most [`MAX_ENTRIES`] keys. Expired
//! entries are purged when a map is full; when it is still full, a key it
//! does not hold is refused as if locked (fail closed: evicting a live
//! counter would let a flood of fresh names or addresses reset a victim's
//! count). An IPv6 client counts by its /64, the unit one host usually
//! gets, so one host cannot mint fresh addresses to escape its limit.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Keys each map may hold.
pub const MAX_ENTRIES: usize = 65_536;

/// The configured limits (read from the running config on each attempt,
/// so a reload applies them).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_user: u32,
    pub per_address: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    first: Instant,
    count: u32,
}

#[derive(Debug)]
struct Counts<K> {
    map: HashMap<K, Entry>,
    cap: usize,
    /// Whether the map was full at its last check (logged on each change).
    full: bool,
    /// `cloakroom_login_failure_keys{table}`: the map's size.
    size: prometheus::IntGauge,
}

impl<K: Hash + Eq + Clone> Counts<K> {
    fn new(cap: usize, table: &str) -> Self {
        Counts {
            map: HashMap::new(),
            cap,
            full: false,
            size: crate::metrics::get()
                .login_failure_keys
                .with_label_values(&[table]),
        }
    }

    /// How long `key` must wait, or `None` when it may try.
    fn locked(&mut self, key: &K, max: u32, window: Duration, now: Instant) -> Option<Duration> {
        if let Some(e) = self.map.get(key) {
            let until = e.first + window;
            return (until > now && e.count >= max).then(|| until - now);
        }
        if self.map.len() < self.cap {
            return None;
        }
        self.map.retain(|_, e| e.first + window > now);
        self.size.set(self.map.len() as i64);
        let full = self.map.len() >= self.cap;
        if full != self.full {
            self.full = full;
            match full {
                true => tracing::warn!(entries = self.cap, "failed-login table full: new names or addresses are refused until entries expire"),
                false => tracing::info!("failed-login table has room again"),
            }
        }
        full.then(|| {
            self.map
                .values()
                .map(|e| (e.first + window).saturating_duration_since(now))
                .min()
                .unwrap_or(window)
        })
    }

    fn fail(&mut self, key: &K, window: Duration, now: Instant) {
        let room = self.map.len() < self.cap;
        match self.map.get_mut(key) {
            Some(e) if e.first + window > now => e.count = e.count.saturating_add(1),
            Some(e) => {
                *e = Entry {
                    first: now,
                    count: 1,
                }
            }
            None if room => {
                self.map.insert(
                    key.clone(),
                    Entry {
                        first: now,
                        count: 1,
                    },
                );
                self.size.set(self.map.len() as i64);
            }
            // Full: `locked` refused this key before it got here, unless
            // the map filled in between; the attempt was still answered.
            None => {}
        }
    }
}

/// The two failure tables, shared by every connection for the life of the
/// process (a reload keeps the counts).
#[derive(Debug)]
pub struct Failures {
    users: Mutex<Counts<String>>,
    addresses: Mutex<Counts<IpAddr>>,
}

impl Default for Failures {
    fn default() -> Self {
        Failures::with_capacity(MAX_ENTRIES)
    }
}

impl Failures {
    pub fn with_capacity(cap: usize) -> Self {
        Failures {
            users: Mutex::new(Counts::new(cap, "user")),
            addresses: Mutex::new(Counts::new(cap, "address")),
        }
    }

    /// `Err(retry_after)` when the name or the address is locked out.
    pub fn check(
        &self,
        user: &str,
        addr: IpAddr,
        limits: Limits,
        now: Instant,
    ) -> Result<(), Duration> {
        let by_user =
            lock(&self.users).locked(&user.to_string(), limits.per_user, limits.window, now);
        let by_addr = lock(&self.addresses).locked(
            &address_key(addr),
            limits.per_address,
            limits.window,
            now,
        );
        match by_user.max(by_addr) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts one failed attempt against the name and the address.
    pub fn failed(&self, user: &str, addr: IpAddr, limits: Limits, now: Instant) {
        lock(&self.users).fail(&user.to_string(), limits.window, now);
        lock(&self.addresses).fail(&address_key(addr), limits.window, now);
    }

    /// A successful login clears the name's count (not the address's: an
    /// attacker with one account of their own must not reset it).
    pub fn succeeded(&self, user: &str) {
        let mut users = lock(&self.users);
        if users.map.remove(user).is_some() {
            users.size.set(users.map.len() as i64);
        }
    }
}

/// Held for a map lookup only, never across an await; a panic elsewhere
/// leaves counts that are still counts.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The key an address counts under: itself for IPv4, its /64 for IPv6.
pub fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        per_user: 3,
        per_address: 5,
        window: Duration::from_secs(60),
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn s8_5_a_name_locks_after_n_failures_until_the_window_passes() {
        let f = Failures::default();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..3 {
            assert!(f.check("alice", a, LIMITS, t0).is_ok(), "attempt {i}");
            f.failed("alice", a, LIMITS, t0 + Duration::from_secs(i));
        }
        let wait = f
            .check(
                "alice",
                ip("192.0.2.2"),
                LIMITS,
                t0 + Duration::from_secs(10),
            )
            .unwrap_err();
        assert_eq!(
            wait,
            Duration::from_secs(50),
            "from the first counted failure"
        );
        assert!(f.check("bob", ip("192.0.2.2"), LIMITS, t0).is_ok());
        assert!(f
            .check("alice", a, LIMITS, t0 + Duration::from_secs(60))
            .is_ok());
        // A new window starts at the next failure.
        f.failed("alice", a, LIMITS, t0 + Duration::from_secs(61));
        assert!(f
            .check("alice", a, LIMITS, t0 + Duration::from_secs(62))
            .is_ok());
    }

    #[test]
    fn s8_5_an_address_locks_across_names_and_ipv6_counts_by_64() {
        let f = Failures::default();
        let t0 = Instant::now();
        for i in 0..5 {
            f.failed(&format!("u{i}"), ip(&format!("2001:db8::{i}")), LIMITS, t0);
        }
        assert!(f.check("new", ip("2001:db8::ffff"), LIMITS, t0).is_err());
        assert!(f.check("new", ip("2001:db8:0:1::1"), LIMITS, t0).is_ok());
        f.succeeded("u1");
        assert!(
            f.check("u1", ip("2001:db8::1"), LIMITS, t0).is_err(),
            "the address stays counted"
        );
    }

    #[test]
    fn a_full_table_refuses_new_keys_and_recovers_when_entries_expire() {
        let f = Failures::with_capacity(4);
        let t0 = Instant::now();
        for i in 0..4 {
            f.failed(&format!("u{i}"), ip(&format!("192.0.2.{i}")), LIMITS, t0);
        }
        assert!(
            f.check("u0", ip("192.0.2.0"), LIMITS, t0).is_ok(),
            "known keys still count"
        );
        assert!(
            f.check("fresh", ip("192.0.2.0"), LIMITS, t0).is_err(),
            "fail closed"
        );
        assert!(f
            .check("fresh", ip("192.0.2.9"), LIMITS, t0 + LIMITS.window)
            .is_ok());
        assert!(lock(&f.users).map.len() <= 4);
    }
}
