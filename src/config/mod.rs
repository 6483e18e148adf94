//! `proxy.toml`: a raw serde mirror ([`raw`]) validated once at load into the
//! typed [`Config`] the rest of the proxy uses. Validation collects every
//! problem, each naming file, line and key ([`ConfigError`]). A key that
//! only another provider or backend than the one chosen reads is a
//! [`ConfigWarning`], carried in [`Config::warnings`] for `check` to print
//! and the proxy to log.
//! [`restart_required`] names what a reload cannot apply.

mod error;
mod raw;
pub mod reference;
mod reload;
pub mod users;
mod validate;

pub use error::{ConfigError, ConfigErrors, ConfigWarning};
pub use reload::{restart_required, READ_AT_START};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::uri::Authority;
use ipnet::IpNet;

use crate::wire::origin::UpstreamOrigin;

/// The validated configuration. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from (reloads read it again).
    pub path: PathBuf,
    pub server: Server,
    pub tls: Tls,
    pub session: Session,
    pub store: Store,
    pub auth: Auth,
    pub identity: Identity,
    pub csrf: Csrf,
    pub routes: Vec<Route>,
    /// Keys set in the file that the chosen provider or backend does not
    /// read, in file order. They never make a load fail; see
    /// [`Config::log_warnings`].
    pub warnings: Vec<ConfigWarning>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub redirect_http: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub trusted_proxies: Vec<IpNet>,
    pub max_request_header_bytes: usize,
    pub request_header_timeout: Duration,
    pub client_idle_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub upstream_response_timeout: Duration,
    pub max_connections: usize,
    /// Open connections from one peer address outside `trusted_proxies`.
    pub max_connections_per_client: usize,
    pub shutdown_grace: Duration,
    pub hsts: Option<HeaderValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub self_signed_if_missing: bool,
    pub min_version: TlsVersion,
    pub sni: Vec<SniCert>,
}

#[derive(Debug, Clone)]
pub struct SniCert {
    pub hosts: Vec<HostPattern>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A host name pattern, lower-cased at load.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Any host (`""` in a route).
    Any,
    Exact(String),
    /// `*.example.com`, stored as the suffix `.example.com`.
    Wildcard(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub cookie_name: String,
    pub same_site: SameSite,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    pub persistent: bool,
    pub secret_env: String,
    pub fallback_secrets_env: String,
    pub secret_file: PathBuf,
    pub touch_interval: Duration,
    pub max_sessions: usize,
    /// Sessions one client address may create per minute.
    pub max_new_sessions_per_client: u32,
    pub max_jar_bytes: usize,
    pub passive_paths: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Redis,
    Memory,
}

/// `url` with any user and password replaced by `***`: how a Redis URL is
/// shown in errors and logs, which never carry its credentials.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".into();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// `[store]`. Its `Debug` shows the Redis URLs redacted.
#[derive(Clone)]
pub struct Store {
    pub backend: Backend,
    pub path: PathBuf,
    pub redis_url: String,
    pub redis_cluster: Vec<String>,
    pub key_prefix: String,
    pub redis_password_env: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured: a new field must be added here to compile.
        let Store {
            backend,
            path,
            redis_url,
            redis_cluster,
            key_prefix,
            redis_password_env,
        } = self;
        let cluster: Vec<String> = redis_cluster.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("Store")
            .field("backend", backend)
            .field("path", path)
            .field("redis_url", &redact_url(redis_url))
            .field("redis_cluster", &cluster)
            .field("key_prefix", key_prefix)
            .field("redis_password_env", redis_password_env)
            .finish()
    }
}

/// `auth.login_paths` by default: the login pages of the common frameworks
/// (plain apps, Flask, Django admin and allauth, Drupal, Devise, WordPress).
/// The first is where `/.cloakroom/login` sends the browser.
pub const DEFAULT_LOGIN_PATHS: [&str; 8] = [
    "/login",
    "/signin",
    "/auth/login",
    "/admin/login",
    "/accounts/login",
    "/user/login",
    "/users/sign_in",
    "/wp-login.php",
];

/// `auth.form_user_field` unset (SPEC §3).
pub const DEFAULT_FORM_USER_FIELD: &str = "username";

/// `auth.logout_paths` by default: the same frameworks' logout pages.
pub const DEFAULT_LOGOUT_PATHS: [&str; 7] = [
    "/logout",
    "/signout",
    "/auth/logout",
    "/admin/logout",
    "/accounts/logout",
    "/user/logout",
    "/users/sign_out",
];

/// Validation yields `None`, `Upstream` and `Local`; `Oidc` is not built yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    None,
    Local,
    Upstream,
    Oidc,
    Form,
}

#[derive(Debug, Clone)]
pub struct Auth {
    pub provider: Provider,
    pub users_file: PathBuf,
    pub upstream_login_header: HeaderName,
    pub upstream_logout_header: HeaderName,
    /// Path prefixes as written (SPEC §8.4); the first is the app's login
    /// page, a redirect target, so it keeps the operator's spelling.
    pub login_paths: Vec<String>,
    /// Normalised prefixes, never `/` (SPEC §8.7a).
    pub logout_paths: Vec<String>,
    /// `form`: the login form field that names the user (SPEC §8.4a).
    pub form_user_field: String,
    /// `form`: normalised prefixes of a successful login's redirect; never
    /// empty with that provider (SPEC §8.4a).
    pub form_success_paths: Vec<String>,
    pub max_failures_per_user: u32,
    pub max_failures_per_address: u32,
    pub failure_window: Duration,
    pub oidc_issuer: String,
    pub oidc_client_id: String,
    pub oidc_client_secret_env: String,
    pub oidc_scopes: Vec<String>,
    pub oidc_groups_claim: String,
    /// `provider = "local"`: the users file, read and validated with the
    /// config (so a reload re-reads it); empty for other providers.
    pub users: std::sync::Arc<users::Users>,
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub user_header: HeaderName,
    pub email_header: HeaderName,
    pub groups_header: HeaderName,
    pub strip_from_client: Vec<HeaderName>,
    /// SPEC §8.6a: the header carrying the signed identity JWT; `None` = off.
    pub assertion_header: Option<HeaderName>,
    pub assertion_algorithm: AssertionAlgorithm,
    /// The assertion signing key (PKCS#8 PEM, created 0600 when missing):
    /// `assertion-es256.key` or `assertion-eddsa.key` in the directory of
    /// `session.secret_file`, one file per algorithm.
    pub assertion_key: PathBuf,
}

/// The assertion's JWS algorithm, fixed by config (never read from a token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlgorithm {
    /// ECDSA P-256 with SHA-256 (RFC 7518 §3.4).
    Es256,
    /// Ed25519 (RFC 8037).
    EdDsa,
}

impl AssertionAlgorithm {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            AssertionAlgorithm::Es256 => "ES256",
            AssertionAlgorithm::EdDsa => "EdDSA",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfMode {
    Origin,
    Off,
}

#[derive(Debug, Clone)]
pub struct Csrf {
    pub mode: CsrfMode,
    /// Lower-cased `scheme://host[:port]` origins.
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAuth {
    Required,
    Optional,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieMode {
    Jar,
    Passthrough,
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Position in the file, used as the route's name in logs and metrics.
    pub index: usize,
    /// `host + path_prefix`, precomputed for logs and metrics.
    pub name: String,
    pub host: HostPattern,
    /// Normalised: starts with `/`, no trailing `/` unless it is `/`.
    pub path_prefix: String,
    pub upstream: Authority,
    /// `upstream` as a `Host` value, made once at load.
    pub upstream_host: HeaderValue,
    /// `http://authority` as written in the config, for messages.
    pub upstream_url: String,
    pub auth: RouteAuth,
    pub public_paths: Vec<String>,
    pub cookies: CookieMode,
    pub passthrough_cookies: Vec<String>,
    pub script_readable_cookies: Vec<String>,
    pub preserve_host: bool,
    /// SPEC §9.7: `Location`/`Content-Location` naming the upstream (or
    /// this host over http) point back at the client's origin.
    pub rewrite_location: bool,
    /// SPEC §9.6a: a same-origin `Origin`/`Referer` is sent as the
    /// upstream's own.
    pub translate_origin: bool,
    /// `upstream` for those two, made once at load.
    pub upstream_origin: UpstreamOrigin,
}

/// Problems that stop a file from being read at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
}

impl LoadError {
    /// The individual problems, for JSON answers (`POST /reload`).
    pub fn errors(&self) -> Vec<ConfigError> {
        match self {
            LoadError::Read { path, source } => vec![ConfigError {
                file: path.display().to_string(),
                line: 0,
                key: "(file)".into(),
                message: source.to_string(),
            }],
            LoadError::Invalid(e) => e.0.clone(),
        }
    }
}

/// RFC 6265 cookie-name token.
pub fn is_cookie_name(s: &str) -> bool {
    validate::is_token(s)
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::parse(path, &text)?)
    }

    /// Validates configuration text as if read from `path`; relative paths in
    /// it resolve against `path`'s directory.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        validate::parse(path, text)
    }

    /// Logs each of [`Config::warnings`] (at start and on every reload).
    pub fn log_warnings(&self) {
        for w in &self.warnings {
            tracing::warn!(file = %w.file, line = w.line, key = %w.key, warning = %w.message, "configuration key has no effect");
        }
    }
}
