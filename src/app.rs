//! Assembly, at the top of the house: build the [`State`] from a [`Config`],
//! open the session store and keys, bind the listeners and hand each its
//! service (proxy, redirect, admin), reload on SIGHUP, drain on
//! SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::admin::{Admin, Token};
use crate::config::{Config, LoadError};
use crate::server::admission::Admission;
use crate::server::{self, Drain};
use crate::session::codec::KeyError;
use crate::session::{Keyring, Manager};
use crate::state::{Shared, State, StateError};
use crate::store::{OpenError, SessionStore, Store};
use crate::tls::{self, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] LoadError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] OpenError),
    #[error("session keys: {0}")]
    Keys(#[from] KeyError),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// How often ended sessions are purged from the store (SPEC §7.3, §10).
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// Bound sockets, so tests can pass listeners on port 0.
pub struct Listeners {
    pub https: TcpListener,
    pub redirect: Option<TcpListener>,
    pub admin: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(config: &Config) -> Result<Listeners, AppError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| AppError::Bind { addr, source })
        };
        Ok(Listeners {
            https: bind(config.server.listen).await?,
            redirect: match config.server.redirect_http {
                Some(a) => Some(bind(a).await?),
                None => None,
            },
            admin: match config.server.admin_listen {
                Some(a) => Some(bind(a).await?),
                None => None,
            },
        })
    }
}

/// Loads the config, prepares first-run files, and serves until SIGTERM or
/// SIGINT; SIGHUP reloads.
pub async fn run(config_path: &Path) -> Result<(), AppError> {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed first: a SIGHUP must never kill a starting proxy.
    let mut hup = signal(SignalKind::hangup()).map_err(AppError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(AppError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(AppError::Signals)?;
    let config = Config::load(config_path)?;
    config.log_warnings();
    if tls::ensure_default_cert(&config.tls)? {
        tracing::warn!(cert = %config.tls.cert.display(), "generated a self-signed certificate for localhost; browsers will warn until you provide a real one");
    }
    let state = State::build(config)?;
    let sessions = Manager::new(
        Store::open(&state.config)?,
        Keyring::load(&state.config.session)?,
    );
    let listeners = Listeners::bind(&state.config).await?;
    let shared = Shared::new(state, sessions);
    let signals = {
        let shared = shared.clone();
        async move {
            loop {
                tokio::select! {
                    // Off the async workers: a reload reads files (the
                    // config, certificates, the users file).
                    _ = hup.recv() => {
                        let shared = shared.clone();
                        if let Err(e) = tokio::task::spawn_blocking(move || shared.reload_logged()).await {
                            tracing::error!(error = %e, "the reload task failed; the running configuration is kept");
                        }
                    }
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                }
            }
        }
    };
    serve(shared, listeners, signals).await;
    Ok(())
}

/// Serves on bound listeners until `stop` completes, then drains in-flight
/// requests for up to `server.shutdown_grace`.
pub async fn serve(
    shared: Arc<Shared>,
    listeners: Listeners,
    stop: impl std::future::Future<Output = ()>,
) {
    let state = shared.state();
    let admission = Admission::new(state.config.server.max_connections);
    let drain = Drain::new();
    let log_addr = |kind: &str, l: &TcpListener| {
        if let Ok(addr) = l.local_addr() {
            tracing::info!(listener = kind, addr = %addr, "listening");
        }
    };
    log_addr("https", &listeners.https);
    if let Ok(addr) = listeners.https.local_addr() {
        shared.set_https_port(addr.port());
    }
    tokio::spawn(server::accept_https(
        listeners.https,
        shared.clone(),
        admission.clone(),
        drain.clone(),
    ));
    if let Some(r) = listeners.redirect {
        log_addr("redirect", &r);
        tokio::spawn(server::accept_redirect(
            r,
            shared.clone(),
            admission.clone(),
            drain.clone(),
        ));
    }
    // The admin listener lives through the drain (its `/readyz` fails
    // then) and stops when the drain ends.
    let admin_life = Drain::new();
    if let Some(a) = listeners.admin {
        log_addr("admin", &a);
        let admin = Admin::new(shared.clone(), Token::from_env(), drain.clone());
        let life = admin_life.clone();
        // Its own small limit: the admin port must answer while the proxy is full.
        tokio::spawn(server::accept(
            a,
            Admission::new(64),
            |_| None,
            admin_life.clone(),
            move |tcp, _peer, ticket| {
                let serve = crate::admin::serve(tcp, admin.clone(), life.clone());
                async move {
                    serve.await;
                    drop(ticket);
                }
            },
        ));
    }
    shared.sessions.spawn_purge(PURGE_EVERY);
    server::trim::spawn(drain.clone());
    // After the listeners: a missing upstream is worth a warning on first
    // run, never a delay.
    crate::upstream::probe::spawn(&state.config);
    drop(state);
    stop.await;
    let grace = shared.state().config.server.shutdown_grace;
    tracing::info!(connections = drain.live(), grace = ?grace, "shutting down: draining in-flight requests");
    let left = drain.shutdown(grace).await;
    admin_life.shutdown(std::time::Duration::ZERO).await;
    shared.close_tunnels();
    if left > 0 {
        tracing::warn!(
            connections = left,
            "shutdown grace ended; closing remaining connections"
        );
    }
    if let Err(e) = shared.sessions.store.flush().await {
        tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "session store flush failed; the last changes may be lost");
    }
    tracing::info!("stopped");
}

/// The config path a relative `--config` names, for messages.
pub fn config_path(arg: Option<PathBuf>) -> PathBuf {
    arg.unwrap_or_else(|| PathBuf::from("proxy.toml"))
}
