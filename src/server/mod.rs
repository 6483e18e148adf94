//! Listeners: the HTTPS accept loop (TLS handshake, then HTTP/1.1 or HTTP/2
//! by ALPN) and the optional plain-HTTP redirect listener. Connections are
//! counted against `max_connections` and drained on shutdown. Other plain
//! HTTP services (the admin API) are handed to [`accept`] and
//! [`serve_plain`] by the caller; this module does not name them.

mod conn;
mod drain;
mod redirect;
mod supervise;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::state::Shared;

pub use conn::serve_plain;
pub use drain::Drain;

/// Accepts HTTPS connections until `stop` turns true.
pub async fn accept_https(
    listener: TcpListener,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    drain: Drain,
) {
    accept(listener, limit, drain.clone(), move |tcp, peer| {
        conn::serve_tls(tcp, peer, shared.clone(), drain.clone())
    })
    .await
}

/// Accepts plain-HTTP connections that are answered with a redirect.
pub async fn accept_redirect(
    listener: TcpListener,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    drain: Drain,
) {
    accept(listener, limit, drain.clone(), move |tcp, _peer| {
        redirect::serve(tcp, shared.clone(), drain.clone())
    })
    .await
}

/// Accepts connections on `listener` and spawns `serve` for each, holding
/// one of `limit`'s permits per open connection, until the drain begins.
/// The admin listener is run through this with its own service.
pub async fn accept<F, Fut>(listener: TcpListener, limit: Arc<Semaphore>, drain: Drain, serve: F)
where
    F: Fn(tokio::net::TcpStream, std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut stop = drain.subscribe();
    loop {
        // Waiting for a permit before accepting leaves excess connections in
        // the kernel's backlog instead of costing us memory.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = stop.wait_for(|s| *s) => return,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                let fut = serve(tcp, peer);
                tokio::spawn(async move {
                    fut.await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A receiver that never fires, for connections outside a drain.
pub fn never() -> watch::Receiver<bool> {
    watch::channel(false).1
}
