//! Store outages, whatever the backend (SPEC §7.5, §11): every failed call
//! counts in `cloakroom_store_errors_total`, but only the first failure
//! after a success is logged (a warning) and only the first success after
//! a failure (an info line), with `cloakroom_store_up` following. The
//! requests that meet the outage get 503 without a log line each, so an
//! outage under load writes two lines, not one per request.

use std::sync::atomic::{AtomicBool, Ordering};

use super::StoreError;

/// Whether the last store call failed. Process-wide, as the one store a
/// process opens and the metric it drives are.
static DOWN: AtomicBool = AtomicBool::new(false);

/// Records the outcome of one store call `op`.
pub fn observe<T>(op: &'static str, r: &Result<T, StoreError>) {
    let m = crate::metrics::get();
    match r {
        Err(e @ StoreError::Unavailable { .. }) => {
            m.store_errors.inc();
            if !DOWN.swap(true, Ordering::Relaxed) {
                m.store_up.set(0);
                let cause = std::error::Error::source(e).map(ToString::to_string);
                tracing::warn!(
                    op,
                    error = cause.as_deref().unwrap_or(""),
                    "the session store is unreachable; requests that need a session get 503 until it answers again"
                );
            }
        }
        // Read first: the common case (no outage) writes nothing shared.
        _ if DOWN.load(Ordering::Relaxed) && DOWN.swap(false, Ordering::Relaxed) => {
            m.store_up.set(1);
            tracing::info!(op, "the session store is reachable again");
        }
        _ => {}
    }
}
