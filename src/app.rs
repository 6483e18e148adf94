//! Assembly: build the runtime [`State`] from a [`Config`], bind listeners,
//! serve, reload on SIGHUP, drain on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::config::{Config, LoadError};
use crate::identity::IdentityHeaders;
use crate::metrics::RequestCounters;
use crate::proxy::route::RouteTable;
use crate::server::{self, Drain};
use crate::session::codec::KeyError;
use crate::session::{Keyring, Manager};
use crate::store::{OpenError, Store};
use crate::tls::{self, TlsError};
use crate::upstream::Upstream;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] LoadError),
    #[error(transparent)]
    Tls(#[from] TlsError),
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

/// Everything a request needs that a reload may replace, swapped whole.
#[derive(Debug)]
pub struct State {
    pub config: Arc<Config>,
    pub routes: RouteTable,
    pub tls: Arc<ServerConfig>,
    pub upstream: Upstream,
    pub identity: IdentityHeaders,
    /// `cloakroom_upstream_duration_seconds` per route, by route index.
    pub upstream_timers: Vec<prometheus::Histogram>,
    /// `cloakroom_requests_total` per route index, then one for no route.
    pub request_counters: Vec<RequestCounters>,
}

impl State {
    /// Builds the state; certificates must exist (see [`tls::ensure_default_cert`]).
    pub fn build(config: Config) -> Result<State, AppError> {
        Ok(State {
            routes: RouteTable::new(&config.routes),
            tls: tls::server_config(&config.tls)?,
            upstream: Upstream::new(&config),
            identity: IdentityHeaders::new(&config),
            upstream_timers: config
                .routes
                .iter()
                .map(|r| {
                    crate::metrics::get()
                        .upstream_duration
                        .with_label_values(&[r.name.as_str()])
                })
                .collect(),
            request_counters: config
                .routes
                .iter()
                .map(|r| r.name.as_str())
                .chain([""])
                .map(RequestCounters::new)
                .collect(),
            config: Arc::new(config),
        })
    }
}

/// Shared by every connection for the life of the process.
pub struct Shared {
    state: ArcSwap<State>,
    /// Sessions outlive reloads: the store and keys are opened once.
    pub sessions: Arc<Manager>,
    /// Turns true when websocket tunnels must close (shutdown).
    closing: watch::Sender<bool>,
    /// The port the HTTPS listener is bound to (redirects point at it).
    https_port: AtomicU16,
}

impl Shared {
    pub fn new(state: State, sessions: Manager) -> Arc<Self> {
        let port = state.config.server.listen.port();
        Arc::new(Shared {
            state: ArcSwap::from_pointee(state),
            sessions: Arc::new(sessions),
            closing: watch::channel(false).0,
            https_port: AtomicU16::new(port),
        })
    }

    pub fn state(&self) -> Arc<State> {
        self.state.load_full()
    }

    pub fn https_port(&self) -> u16 {
        self.https_port.load(Ordering::Relaxed)
    }

    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Re-reads the config file and certificates and swaps them in. On any
    /// error the running state is kept. Listener addresses and
    /// `max_connections` apply at the next restart.
    pub fn reload(&self) -> Result<(), AppError> {
        let current = self.state();
        let config = Config::load(&current.config.path)?;
        tls::ensure_default_cert(&config.tls)?;
        let next = State::build(config)?;
        let (old, new) = (&current.config.server, &next.config.server);
        if old.listen != new.listen
            || old.redirect_http != new.redirect_http
            || old.max_connections != new.max_connections
        {
            tracing::warn!(
                "listen addresses and max_connections changed; they apply at the next restart"
            );
        }
        let routes = next.config.routes.len();
        self.state.store(Arc::new(next));
        tracing::info!(routes, "configuration reloaded");
        Ok(())
    }

    fn reload_logged(&self) {
        if let Err(e) = self.reload() {
            tracing::error!(error = %e, "reload rejected; the running configuration is kept");
        }
    }
}

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
                    _ = hup.recv() => shared.reload_logged(),
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
    let limit = Arc::new(Semaphore::new(state.config.server.max_connections));
    let drain = Drain::new();
    let log_addr = |kind: &str, l: &TcpListener| {
        if let Ok(addr) = l.local_addr() {
            tracing::info!(listener = kind, addr = %addr, "listening");
        }
    };
    log_addr("https", &listeners.https);
    if let Ok(addr) = listeners.https.local_addr() {
        shared.https_port.store(addr.port(), Ordering::Relaxed);
    }
    tokio::spawn(server::accept_https(
        listeners.https,
        shared.clone(),
        limit.clone(),
        drain.clone(),
    ));
    if let Some(r) = listeners.redirect {
        log_addr("redirect", &r);
        tokio::spawn(server::accept_redirect(
            r,
            shared.clone(),
            limit.clone(),
            drain.clone(),
        ));
    }
    if let Some(a) = listeners.admin {
        log_addr("admin", &a);
        // Its own small limit: the admin port must answer while the proxy is full.
        tokio::spawn(server::accept_admin(
            a,
            shared.clone(),
            Arc::new(Semaphore::new(64)),
            drain.clone(),
        ));
    }
    shared.sessions.spawn_purge(PURGE_EVERY);
    drop(state);
    stop.await;
    let grace = shared.state().config.server.shutdown_grace;
    tracing::info!(connections = drain.live(), grace = ?grace, "shutting down: draining in-flight requests");
    let left = drain.shutdown(grace).await;
    shared.closing.send_replace(true);
    if left > 0 {
        tracing::warn!(
            connections = left,
            "shutdown grace ended; closing remaining connections"
        );
    }
    tracing::info!("stopped");
}

/// The config path a relative `--config` names, for messages.
pub fn config_path(arg: Option<PathBuf>) -> PathBuf {
    arg.unwrap_or_else(|| PathBuf::from("proxy.toml"))
}
