//! Per-process state: the [`State`] a request reads (config, routes,
//! certificates, upstream pools, identity header names, per-route metrics),
//! swapped whole on reload, and the [`Shared`] handle every connection holds,
//! which also owns what outlives a reload (the session manager).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio::sync::watch;

use crate::config::{restart_required, Config, ConfigError, LoadError, Provider};
use crate::identity::assertion::{Assertion, AssertionError};
use crate::identity::IdentityHeaders;
use crate::metrics::RequestCounters;
use crate::oidc::{OidcError, RelyingParty};
use crate::password::Verifier;
use crate::route::RouteTable;
use crate::session::Manager;
use crate::store::{SessionStore, Store};
use crate::throttle::Failures;
use crate::tls::{self, TlsError};
use crate::upstream::Upstream;

/// Why a configuration could not become a [`State`].
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Config(#[from] LoadError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Assertion(#[from] AssertionError),
    #[error(transparent)]
    Oidc(#[from] OidcError),
}

impl StateError {
    /// The individual problems, each naming a file, line and key, for JSON
    /// answers (`POST /reload`). A certificate problem names the PEM file
    /// and the key `tls`.
    pub fn errors(&self) -> Vec<ConfigError> {
        match self {
            StateError::Config(e) => e.errors(),
            StateError::Tls(e) => {
                let file = match e {
                    TlsError::Cert { path, .. }
                    | TlsError::Key { path, .. }
                    | TlsError::SelfSigned { path, .. } => path.display().to_string(),
                    TlsError::Rustls(_) => String::new(),
                };
                vec![ConfigError {
                    file,
                    line: 0,
                    key: "tls".into(),
                    message: e.to_string(),
                }]
            }
            StateError::Oidc(e) => vec![ConfigError {
                file: String::new(),
                line: 0,
                key: "auth.oidc_issuer".into(),
                message: e.to_string(),
            }],
            StateError::Assertion(e) => vec![ConfigError {
                file: String::new(),
                line: 0,
                key: "identity.assertion_header".into(),
                message: e.to_string(),
            }],
        }
    }
}

/// Everything a request needs that a reload may replace, swapped whole.
#[derive(Debug)]
pub struct State {
    pub config: Arc<Config>,
    pub routes: RouteTable,
    pub tls: Arc<ServerConfig>,
    /// Each certificate's notAfter, for the expiry metric ([`tls::Certificates`]).
    pub cert_not_after: Vec<(String, SystemTime)>,
    pub upstream: Upstream,
    pub identity: IdentityHeaders,
    /// The identity assertion's signing key (SPEC §8.6a), when configured.
    pub assertion: Option<Assertion>,
    /// The OIDC relying party with `provider = "oidc"`; kept by a reload
    /// that does not change its settings (pending logins survive).
    pub oidc: Option<Arc<RelyingParty>>,
    /// `cloakroom_upstream_duration_seconds` per route, by route index.
    pub upstream_timers: Vec<prometheus::Histogram>,
    /// `cloakroom_requests_total` per route index, then one for no route.
    pub request_counters: Vec<RequestCounters>,
}

impl State {
    /// Builds the state; certificates must exist (see [`tls::ensure_default_cert`]).
    /// Reads (or first creates) the assertion key file.
    pub fn build(config: Config) -> Result<State, StateError> {
        let certificates = tls::server_config(&config.tls)?;
        let oidc = match config.auth.provider {
            Provider::Oidc => Some(Arc::new(RelyingParty::new(&config.auth)?)),
            _ => None,
        };
        Ok(State {
            oidc,
            assertion: Assertion::load(&config.identity)?,
            routes: RouteTable::new(&config.routes),
            tls: certificates.config,
            cert_not_after: certificates.not_after,
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

/// The process's sessions, over the configured store backend.
pub type Sessions = Manager<Store>;

/// Shared by every connection for the life of the process.
pub struct Shared {
    state: ArcSwap<State>,
    /// Sessions outlive reloads: the store and keys are opened once.
    pub sessions: Arc<Sessions>,
    /// Turns true when websocket tunnels must close (shutdown).
    closing: watch::Sender<bool>,
    /// The port the HTTPS listener is bound to (redirects point at it).
    https_port: AtomicU16,
    /// Held through a reload: SIGHUP and `POST /reload` take turns.
    reloading: Mutex<()>,
    /// `provider = "local"`: password checks on a bounded blocking pool,
    /// and the failed-login counts, which a reload keeps.
    pub passwords: Verifier,
    pub failures: Failures,
}

impl Shared {
    pub fn new(state: State, sessions: Sessions) -> Arc<Self> {
        let port = state.config.server.listen.port();
        crate::metrics::set_certificate_expiry(&[], &state.cert_not_after);
        Arc::new(Shared {
            state: ArcSwap::from_pointee(state),
            sessions: Arc::new(sessions),
            closing: watch::channel(false).0,
            https_port: AtomicU16::new(port),
            reloading: Mutex::new(()),
            passwords: Verifier::default(),
            failures: Failures::default(),
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

    /// Records the port the HTTPS listener really bound (port 0 in tests).
    pub fn set_https_port(&self, port: u16) {
        self.https_port.store(port, Ordering::Relaxed);
    }

    /// Closes every websocket tunnel (the end of a shutdown).
    pub fn close_tunnels(&self) {
        self.closing.send_replace(true);
    }

    /// Re-reads the config file and certificates and swaps them in. On any
    /// error the running state is kept. `session.max_sessions` is applied
    /// to the store; keys read only at start (listeners,
    /// `max_connections`, the store, the session keys) keep their running
    /// values, with a warning naming each one that changed; returns those
    /// keys. The new routes' upstreams are probed in the background
    /// ([`crate::upstream::probe`]). Blocks on file reads: call it off the
    /// async workers when a request waits on it. Counted in
    /// `cloakroom_config_reloads_total`.
    pub fn reload(&self) -> Result<Vec<&'static str>, StateError> {
        // Guards no data, so a poisoned lock is still good.
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let result = self.reload_locked();
        crate::metrics::get().config_reloads(result.is_ok()).inc();
        result
    }

    /// [`Shared::reload`] while holding the reload lock.
    fn reload_locked(&self) -> Result<Vec<&'static str>, StateError> {
        let current = self.state();
        let config = Config::load(&current.config.path)?;
        tls::ensure_default_cert(&config.tls)?;
        let mut next = State::build(config)?;
        if let (Some(running), Some(_)) = (&current.oidc, &next.oidc) {
            if running.same_settings(&next.config.auth) {
                next.oidc = Some(running.clone());
            }
        }
        next.config.log_warnings();
        let kept = restart_required(&current.config, &next.config);
        for key in &kept {
            tracing::warn!(
                key,
                "changed, but read only at start: the running value is kept until the next restart"
            );
        }
        self.sessions
            .store
            .set_max_sessions(next.config.session.max_sessions);
        let routes = next.config.routes.len();
        crate::metrics::set_certificate_expiry(&current.cert_not_after, &next.cert_not_after);
        crate::upstream::probe::spawn(&next.config);
        self.state.store(Arc::new(next));
        tracing::info!(routes, "configuration reloaded");
        Ok(kept)
    }

    pub fn reload_logged(&self) {
        if let Err(e) = self.reload() {
            tracing::error!(error = %e, "reload rejected; the running configuration is kept");
        }
    }
}
