//! Admission (SPEC §3 `max_connections`, `max_connections_per_client`):
//! which accepted connection may be served.
//!
//! Every accepted connection is admitted or refused at once; nothing waits
//! in the listen backlog behind connections that merely sit idle. At
//! `max_connections`, the longest-idle keep-alive connection is asked to
//! finish (HTTP/1.1 closes, HTTP/2 sends GOAWAY) and the new one is served
//! in its place; only when none is idle is the new one refused: accepted
//! and closed, counted in `cloakroom_connections_refused_total`. One peer
//! address may hold at most `max_connections_per_client`; peers in
//! `trusted_proxies` (a load balancer) are exempt.
//!
//! The table is one short-held mutex: an admission inserts an entry and
//! bumps two counters; only at the cap does it scan for the longest idle
//! connection. Its memory is one entry per open connection and one per
//! peer address with an open connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use super::supervise::Activity;

/// Open connections, shared by the listeners that count against one cap.
#[derive(Debug)]
pub struct Admission {
    limit: usize,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Entry>,
    per_peer: HashMap<IpAddr, usize>,
    /// Connections asked to finish to make room and not closed yet: the
    /// cap counts the others.
    leaving: usize,
}

#[derive(Debug)]
struct Entry {
    peer: IpAddr,
    /// Set once the connection serves HTTP (after its TLS handshake).
    activity: Option<Arc<Activity>>,
    leaving: bool,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// At `max_connections` with no idle connection to close.
    Full,
    /// The peer address holds `max_connections_per_client` already.
    PerClient,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::Full => "max_connections",
            Refused::PerClient => "per_client",
        }
    }
}

/// An admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
}

impl Admission {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Admission {
            limit,
            table: Mutex::new(Table::default()),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic elsewhere while holding the lock leaves counts that are
        // still consistent (every update is a single step).
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `peer`, which may hold at most
    /// `per_client` (`None`: no per-address cap), closing the longest-idle
    /// connection to make room at the cap.
    pub fn admit(
        self: &Arc<Self>,
        peer: IpAddr,
        per_client: Option<usize>,
    ) -> Result<Ticket, Refused> {
        let mut t = self.table();
        let held = t.per_peer.get(&peer).copied().unwrap_or(0);
        if per_client.is_some_and(|cap| held >= cap) {
            return Err(Refused::PerClient);
        }
        if t.conns.len() - t.leaving >= self.limit {
            let victim = t
                .conns
                .iter()
                .filter(|(_, e)| !e.leaving)
                .filter_map(|(id, e)| Some((e.activity.as_ref()?.idle_since()?, *id)))
                .min();
            let Some((_, id)) = victim else {
                return Err(Refused::Full);
            };
            let entry = t.conns.get_mut(&id).expect("the victim is in the table");
            entry.leaving = true;
            if let Some(a) = &entry.activity {
                a.shut_down_gracefully();
            }
            t.leaving += 1;
            crate::metrics::get().connections_reclaimed.inc();
        }
        let id = t.next_id;
        t.next_id += 1;
        t.conns.insert(
            id,
            Entry {
                peer,
                activity: None,
                leaving: false,
            },
        );
        *t.per_peer.entry(peer).or_insert(0) += 1;
        Ok(Ticket {
            admission: self.clone(),
            id,
        })
    }

    /// Open connections (those leaving included).
    pub fn open(&self) -> usize {
        self.table().conns.len()
    }
}

impl Ticket {
    /// The connection now serves HTTP: it can be chosen as idle.
    pub(super) fn attach(&self, activity: &Arc<Activity>) {
        if let Some(e) = self.admission.table().conns.get_mut(&self.id) {
            e.activity = Some(activity.clone());
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut t = self.admission.table();
        let Some(entry) = t.conns.remove(&self.id) else {
            return;
        };
        if entry.leaving {
            t.leaving -= 1;
        }
        if let Some(n) = t.per_peer.get_mut(&entry.peer) {
            *n -= 1;
            if *n == 0 {
                t.per_peer.remove(&entry.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn per_client_cap_counts_open_connections_of_one_address() {
        let a = Admission::new(100);
        let first = a.admit(ip(2), Some(2)).unwrap();
        let _second = a.admit(ip(2), Some(2)).unwrap();
        assert_eq!(a.admit(ip(2), Some(2)).unwrap_err(), Refused::PerClient);
        // Another address is not held back, nor is an exempt peer.
        let _other = a.admit(ip(3), Some(2)).unwrap();
        let exempt: Vec<_> = (0..5).map(|_| a.admit(ip(4), None).unwrap()).collect();
        drop(first);
        let _again = a.admit(ip(2), Some(2)).unwrap();
        assert_eq!(a.open(), 3 + exempt.len());
    }

    #[test]
    fn at_the_cap_without_an_idle_connection_a_new_one_is_refused() {
        let a = Admission::new(2);
        // Mid-handshake connections (no activity yet) are never idle.
        let _one = a.admit(ip(2), None).unwrap();
        let _two = a.admit(ip(2), None).unwrap();
        assert_eq!(a.admit(ip(3), None).unwrap_err(), Refused::Full);
        assert_eq!(a.open(), 2);
    }

    #[test]
    fn the_table_forgets_closed_connections_and_their_addresses() {
        let a = Admission::new(10);
        let tickets: Vec<_> = (2..8).map(|n| a.admit(ip(n), Some(1)).unwrap()).collect();
        drop(tickets);
        let t = a.table();
        assert!(t.conns.is_empty() && t.per_peer.is_empty() && t.leaving == 0);
    }
}
