//! The raw serde mirror of `proxy.toml`. Every leaf keeps its span so that
//! validation can name the line; nothing outside `config` sees these types.

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub session: RawSession,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub identity: RawIdentity,
    #[serde(default)]
    pub csrf: RawCsrf,
    #[serde(default)]
    pub route: Vec<Spanned<RawRoute>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: S<String>,
    pub redirect_http: S<String>,
    pub admin_listen: S<String>,
    pub trusted_proxies: S<Vec<Spanned<String>>>,
    pub max_request_header_bytes: S<i64>,
    pub request_header_timeout: S<String>,
    pub client_idle_timeout: S<String>,
    pub upstream_connect_timeout: S<String>,
    pub upstream_response_timeout: S<String>,
    pub max_connections: S<i64>,
    pub max_connections_per_client: S<i64>,
    pub shutdown_grace: S<String>,
    pub hsts: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub cert: S<String>,
    pub key: S<String>,
    pub self_signed_if_missing: S<bool>,
    pub min_version: S<String>,
    #[serde(default)]
    pub sni: Vec<Spanned<RawSni>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSni {
    pub hosts: S<Vec<Spanned<String>>>,
    pub cert: S<String>,
    pub key: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSession {
    pub cookie_name: S<String>,
    pub same_site: S<String>,
    pub idle_timeout: S<String>,
    pub absolute_timeout: S<String>,
    pub persistent: S<bool>,
    pub secret_env: S<String>,
    pub fallback_secrets_env: S<String>,
    pub secret_file: S<String>,
    pub touch_interval: S<String>,
    pub max_sessions: S<i64>,
    pub max_new_sessions_per_client: S<i64>,
    pub max_jar_bytes: S<i64>,
    pub passive_paths: S<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    pub backend: S<String>,
    pub path: S<String>,
    pub redis_url: S<String>,
    pub redis_cluster: S<Vec<Spanned<String>>>,
    pub key_prefix: S<String>,
    pub redis_password_env: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub provider: S<String>,
    pub users_file: S<String>,
    pub upstream_login_header: S<String>,
    pub upstream_logout_header: S<String>,
    pub login_paths: S<Vec<Spanned<String>>>,
    pub form_user_field: S<String>,
    pub form_success_paths: S<Vec<Spanned<String>>>,
    pub logout_paths: S<Vec<Spanned<String>>>,
    pub max_failures_per_user: S<i64>,
    pub max_failures_per_address: S<i64>,
    pub failure_window: S<String>,
    pub oidc_issuer: S<String>,
    pub oidc_client_id: S<String>,
    pub oidc_client_secret_env: S<String>,
    pub oidc_scopes: S<Vec<Spanned<String>>>,
    pub oidc_groups_claim: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {
    pub user_header: S<String>,
    pub email_header: S<String>,
    pub groups_header: S<String>,
    pub strip_from_client: S<Vec<Spanned<String>>>,
    pub assertion_header: S<String>,
    pub assertion_algorithm: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCsrf {
    pub mode: S<String>,
    pub allowed_origins: S<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub host: S<String>,
    pub path_prefix: S<String>,
    pub upstream: S<String>,
    pub auth: S<String>,
    pub public_paths: S<Vec<Spanned<String>>>,
    pub cookies: S<String>,
    pub passthrough_cookies: S<Vec<Spanned<String>>>,
    pub script_readable_cookies: S<Vec<Spanned<String>>>,
    pub preserve_host: S<bool>,
    pub rewrite_location: S<bool>,
    pub translate_origin: S<bool>,
}
