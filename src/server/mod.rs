//! Listeners: the HTTPS accept loop (TLS handshake, then HTTP/1.1 or HTTP/2
//! by ALPN) and the optional plain-HTTP redirect listener. Connections are
//! admitted against `max_connections` and `max_connections_per_client`
//! ([`admission`]) and drained on shutdown. Other plain HTTP services (the
//! admin API) are handed to [`accept`] and [`serve_plain`] by the caller;
//! this module does not name them.

pub mod admission;
mod conn;
mod cork;
mod drain;
pub(crate) mod h1guard;
mod h2guard;
mod http2;
mod redirect;
mod supervise;
pub mod trim;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::state::Shared;
use admission::{Admission, Ticket};

pub use conn::serve_plain;
pub use drain::Drain;

/// True on the current-thread runtime (one CPU, `src/main.rs`): an HTTP/2
/// connection's streams then run on its own task ([`http2`]) and its writes
/// wait for the end of the round ([`cork`]).
fn on_one_thread() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

/// Accepts HTTPS connections until `stop` turns true.
pub async fn accept_https(
    listener: TcpListener,
    shared: Arc<Shared>,
    admission: Arc<Admission>,
    drain: Drain,
) {
    let policy = per_client_policy(shared.clone());
    accept(
        listener,
        admission,
        policy,
        drain.clone(),
        move |tcp, peer, ticket| conn::serve_tls(tcp, peer, ticket, shared.clone(), drain.clone()),
    )
    .await
}

/// Accepts plain-HTTP connections that are answered with a redirect.
pub async fn accept_redirect(
    listener: TcpListener,
    shared: Arc<Shared>,
    admission: Arc<Admission>,
    drain: Drain,
) {
    let policy = per_client_policy(shared.clone());
    accept(
        listener,
        admission,
        policy,
        drain.clone(),
        move |tcp, _peer, ticket| {
            let serve = redirect::serve(tcp, shared.clone(), drain.clone());
            async move {
                serve.await;
                drop(ticket);
            }
        },
    )
    .await
}

/// The per-address cap for a peer under the running config: none for a
/// peer in `trusted_proxies` (a load balancer carries many clients).
fn per_client_policy(shared: Arc<Shared>) -> impl Fn(IpAddr) -> Option<usize> {
    move |ip| {
        let state = shared.state();
        let server = &state.config.server;
        let trusted = server.trusted_proxies.iter().any(|net| net.contains(&ip));
        (!trusted).then_some(server.max_connections_per_client)
    }
}

/// Accepts connections on `listener` until the drain begins, admitting
/// each through `admission` (with the per-address cap `per_client` gives)
/// and spawning `serve` with its ticket; a refused connection is closed at
/// once. The admin listener is run through this with its own service.
pub async fn accept<P, F, Fut>(
    listener: TcpListener,
    admission: Arc<Admission>,
    per_client: P,
    drain: Drain,
    serve: F,
) where
    P: Fn(IpAddr) -> Option<usize>,
    F: Fn(TcpStream, SocketAddr, Ticket) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut stop = drain.subscribe();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let ticket = match admission.admit(peer.ip(), per_client(peer.ip())) {
                    Ok(t) => t,
                    Err(why) => {
                        crate::metrics::get()
                            .connections_refused
                            .with_label_values(&[why.label()])
                            .inc();
                        tracing::debug!(peer = %peer, reason = why.label(), "connection refused");
                        drop(tcp);
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve(tcp, peer, ticket));
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
