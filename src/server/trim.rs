//! Memory that comes back after a burst of connections (issue 17).
//!
//! An open connection holds about 29 KiB of heap (TLS and HTTP buffers).
//! When thousands close, glibc's malloc keeps the freed memory in its
//! arenas for reuse, so the process stays at its peak RSS for good; more
//! bursts spread across the worker threads' arenas and take it higher.
//! `malloc_trim(0)` hands every arena's free pages back to the kernel. It
//! walks the arenas under their locks, so it runs only after a burst: when
//! the open connections have fallen by [`AFTER_CLOSED`] from their peak,
//! checked every [`CHECK_EVERY`], on the blocking pool. The alternatives
//! measured (`docs/security.md`) — fewer arenas, jemalloc, mimalloc — are
//! recorded there. Without glibc this does nothing.

use std::time::Duration;

use super::Drain;

const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Connections closed since the peak that make a trim worth its walk.
const AFTER_CLOSED: usize = 1024;

/// Watches `drain`'s connection count and trims the heap after a burst.
pub fn spawn(drain: Drain) {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (peak, live) = (drain.take_peak(), drain.live());
            if peak.saturating_sub(live) < AFTER_CLOSED {
                continue;
            }
            if let Ok(released) = tokio::task::spawn_blocking(trim).await {
                tracing::debug!(
                    peak,
                    live,
                    released,
                    "heap trimmed after a burst of connections"
                );
            }
        }
    });
}

/// Returns free heap pages to the kernel; true if any were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}
