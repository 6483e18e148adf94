//! Raw → typed conversion. Each check records an error (file, line, key,
//! what would be valid) and carries on with a default, so one `check` run
//! reports every problem in the file. Keys read only by a feature this
//! build lacks are accepted with a warning ([`Ctx::not_built`]).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::uri::{Authority, Uri};
use ipnet::IpNet;
use toml::Spanned;

use super::error::{Collector, ConfigErrors};
use super::raw::{self, S};
use super::users::{self, Users};
use super::*;

pub(super) fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut c = Ctx {
        errs: Collector::new(path, text),
        base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let raw: raw::RawFile = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            c.errs.push_toml(&e);
            return Err(ConfigErrors(c.errs.errors));
        }
    };
    let server = c.server(raw.server);
    let tls = c.tls(raw.tls);
    let session = c.session(raw.session);
    let mut config = Config {
        path: path.to_path_buf(),
        server,
        tls,
        store: c.store(raw.store),
        auth: c.auth(raw.auth),
        identity: c.identity(raw.identity, &session.secret_file),
        session,
        csrf: c.csrf(raw.csrf),
        routes: c.routes(raw.route),
        warnings: Vec::new(),
    };
    config.warnings = c.errs.finish()?;
    // Checks run table by table; the operator reads the file top to bottom.
    config.warnings.sort_by_key(|w| w.line);
    Ok(config)
}

/// An OIDC issuer: `https://host[:port][/path]`, or `http://` on a
/// loopback host (127.0.0.0/8, ::1, localhost); no query or fragment.
fn check_issuer(text: &str) -> Result<(), &'static str> {
    let uri: Uri = text.parse().map_err(|_| "is not a URL")?;
    let host = uri.host().ok_or("has no host")?;
    if uri.query().is_some() || text.contains('#') {
        return Err("must have no query or fragment");
    }
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if loopback => Ok(()),
        Some("http") => Err("must be https (plain http is allowed only for a loopback issuer)"),
        _ => Err("must be an https URL"),
    }
}

struct Ctx<'a> {
    errs: Collector<'a>,
    base: PathBuf,
}

fn at<T>(v: &Spanned<T>) -> Option<usize> {
    Some(v.span().start)
}

impl Ctx<'_> {
    fn err(&mut self, at: Option<usize>, key: &str, msg: impl Into<String>) {
        self.errs.push(at, key, msg);
    }

    /// A `[store]` key read only by the redis backend, set with another.
    fn redis_only<T>(&mut self, key: &str, v: &S<T>) {
        if let Some(v) = v {
            let msg = "has no effect: it is read only with store.backend = \"redis\"";
            self.errs.warn(at(v), key, msg.to_string());
        }
    }

    fn string(&mut self, v: S<String>, default: &str) -> String {
        v.map(Spanned::into_inner)
            .unwrap_or_else(|| default.to_string())
    }

    fn flag(&mut self, v: S<bool>, default: bool) -> bool {
        v.map(Spanned::into_inner).unwrap_or(default)
    }

    fn duration(&mut self, key: &str, v: S<String>, default: &str) -> Duration {
        let Some(v) = v else {
            return humantime::parse_duration(default).expect("defaults are valid");
        };
        match humantime::parse_duration(v.get_ref().trim()) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                self.err(
                    at(&v),
                    key,
                    format!(
                        "{:?} is not a duration; write a positive number with a unit, e.g. \"90s\", \"30m\", \"12h\", \"7d\"",
                        v.get_ref()
                    ),
                );
                humantime::parse_duration(default).expect("defaults are valid")
            }
        }
    }

    fn count(&mut self, key: &str, v: S<i64>, default: u64, min: u64, max: u64) -> u64 {
        let Some(v) = v else { return default };
        match u64::try_from(*v.get_ref()) {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.err(
                    at(&v),
                    key,
                    format!(
                        "{} is out of range; expected a whole number from {min} to {max}",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    fn choice<T: Copy>(&mut self, key: &str, v: S<String>, default: T, options: &[(&str, T)]) -> T {
        let Some(v) = v else { return default };
        if let Some((_, t)) = options
            .iter()
            .find(|(name, _)| *name == v.get_ref().as_str())
        {
            return *t;
        }
        let valid: Vec<String> = options.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        self.err(
            at(&v),
            key,
            format!(
                "{:?} is not valid; expected one of {}",
                v.get_ref(),
                valid.join(", ")
            ),
        );
        default
    }

    /// `""` → `None`; otherwise an `ip:port` socket address.
    fn addr(&mut self, key: &str, v: S<String>, default: &str) -> Option<SocketAddr> {
        let (text, pos) = match &v {
            Some(v) => (v.get_ref().trim().to_string(), at(v)),
            None => (default.to_string(), None),
        };
        if text.is_empty() {
            return None;
        }
        match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(pos, key, format!("{text:?} is not a listen address; expected ip:port, e.g. \"0.0.0.0:8443\" or \"[::1]:8443\""));
                None
            }
        }
    }

    fn path(&mut self, v: S<String>, default: &str) -> PathBuf {
        let p = PathBuf::from(self.string(v, default));
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }

    fn list(&mut self, v: S<Vec<Spanned<String>>>) -> Vec<Spanned<String>> {
        v.map(Spanned::into_inner).unwrap_or_default()
    }

    fn header_name(&mut self, key: &str, v: S<String>, default: &str) -> HeaderName {
        let Some(v) = v else {
            return HeaderName::from_str(default).expect("defaults are valid");
        };
        match HeaderName::from_bytes(v.get_ref().trim().as_bytes()) {
            Ok(h) => h,
            Err(_) => {
                self.err(
                    at(&v),
                    key,
                    format!(
                        "{:?} is not a header name; use letters, digits and '-'",
                        v.get_ref()
                    ),
                );
                HeaderName::from_str(default).expect("defaults are valid")
            }
        }
    }

    /// Path prefixes: each must start with `/`.
    fn path_list(&mut self, key: &str, v: S<Vec<Spanned<String>>>) -> Vec<String> {
        let mut out = Vec::new();
        for p in self.list(v) {
            if p.get_ref().starts_with('/')
                && !p.get_ref().chars().any(|c| c.is_control() || c == ' ')
            {
                out.push(p.into_inner());
            } else {
                self.err(
                    at(&p),
                    key,
                    format!(
                        "{:?} is not a path prefix; it must start with '/' and hold no spaces",
                        p.get_ref()
                    ),
                );
            }
        }
        out
    }

    /// `auth.logout_paths`, normalised as request paths are (SPEC §3), so
    /// the check per request is one prefix scan. `/` is refused: every
    /// session would end with its first answered request.
    fn logout_paths(&mut self, v: S<Vec<Spanned<String>>>) -> Vec<String> {
        let key = "auth.logout_paths";
        let Some(v) = v else {
            return DEFAULT_LOGOUT_PATHS.map(String::from).to_vec();
        };
        let mut out = Vec::new();
        for p in v.into_inner() {
            match self.normalised_prefix(key, &p) {
                Some(n) if n != "/" => out.push(n),
                Some(_) => self.err(
                    at(&p),
                    key,
                    format!(
                        "{:?} would end every session at its first answered request; list the app's logout pages (e.g. \"/logout\"), or [] to turn this off",
                        p.get_ref()
                    ),
                ),
                None => {}
            }
        }
        out
    }

    /// A path prefix normalised as request paths are; an error naming
    /// `key` when it is not one.
    fn normalised_prefix(&mut self, key: &str, p: &Spanned<String>) -> Option<String> {
        let n = crate::wire::path::normalise_prefix(p.get_ref());
        if n.is_none() {
            let msg = format!(
                "{:?} is not a path prefix; it must start with '/' and hold no spaces",
                p.get_ref()
            );
            self.err(at(p), key, msg);
        }
        n
    }

    fn cookie_names(&mut self, key: &str, v: S<Vec<Spanned<String>>>) -> Vec<String> {
        let mut out = Vec::new();
        for n in self.list(v) {
            if is_token(n.get_ref()) {
                out.push(n.into_inner());
            } else {
                self.err(
                    at(&n),
                    key,
                    format!("{:?} is not a cookie name (an RFC 6265 token)", n.get_ref()),
                );
            }
        }
        out
    }

    fn server(&mut self, r: raw::RawServer) -> Server {
        let listen = self.addr("server.listen", r.listen, "0.0.0.0:8443");
        let mut trusted = Vec::new();
        for t in self.list(r.trusted_proxies) {
            let s = t.get_ref().trim();
            let parsed = IpNet::from_str(s)
                .ok()
                .or_else(|| IpAddr::from_str(s).ok().map(IpNet::from));
            match parsed {
                Some(n) => trusted.push(n.trunc()),
                None => self.err(
                    at(&t),
                    "server.trusted_proxies",
                    format!("{s:?} is not a CIDR; expected e.g. \"10.0.0.0/8\" or \"192.0.2.7\""),
                ),
            }
        }
        let hsts = match r.hsts {
            None => Some(HeaderValue::from_static("max-age=31536000")),
            Some(v) if v.get_ref().is_empty() => None,
            Some(v) => {
                match HeaderValue::from_str(v.get_ref()) {
                    Ok(h) => Some(h),
                    Err(_) => {
                        self.err(at(&v), "server.hsts", "not a valid header value; e.g. \"max-age=31536000\" or \"\" to disable");
                        None
                    }
                }
            }
        };
        Server {
            listen: listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8443))),
            redirect_http: self.addr("server.redirect_http", r.redirect_http, ""),
            admin_listen: self.addr("server.admin_listen", r.admin_listen, "127.0.0.1:9901"),
            trusted_proxies: trusted,
            max_request_header_bytes: self.count(
                "server.max_request_header_bytes",
                r.max_request_header_bytes,
                16384,
                1024,
                1 << 20,
            ) as usize,
            request_header_timeout: self.duration(
                "server.request_header_timeout",
                r.request_header_timeout,
                "10s",
            ),
            client_idle_timeout: self.duration(
                "server.client_idle_timeout",
                r.client_idle_timeout,
                "60s",
            ),
            upstream_connect_timeout: self.duration(
                "server.upstream_connect_timeout",
                r.upstream_connect_timeout,
                "5s",
            ),
            upstream_response_timeout: self.duration(
                "server.upstream_response_timeout",
                r.upstream_response_timeout,
                "60s",
            ),
            max_connections: self.count(
                "server.max_connections",
                r.max_connections,
                10000,
                1,
                1_000_000,
            ) as usize,
            max_connections_per_client: self.count(
                "server.max_connections_per_client",
                r.max_connections_per_client,
                512,
                1,
                1_000_000,
            ) as usize,
            shutdown_grace: self.duration("server.shutdown_grace", r.shutdown_grace, "30s"),
            hsts,
        }
    }

    fn tls(&mut self, r: raw::RawTls) -> Tls {
        let cert_at = r.cert.as_ref().and_then(at);
        let cert = self.path(r.cert, "certs/cert.pem");
        let key = self.path(r.key, "certs/key.pem");
        let self_signed = self.flag(r.self_signed_if_missing, true);
        if !self_signed {
            for (k, p) in [("tls.cert", &cert), ("tls.key", &key)] {
                if !p.is_file() {
                    self.err(cert_at, k, format!("{} does not exist; provide it or set tls.self_signed_if_missing = true", p.display()));
                }
            }
        } else if cert.is_file() != key.is_file() {
            self.err(
                cert_at,
                "tls.cert",
                format!(
                    "only one of {} and {} exists; provide both or neither",
                    cert.display(),
                    key.display()
                ),
            );
        }
        let min_version = self.choice(
            "tls.min_version",
            r.min_version,
            TlsVersion::V1_2,
            &[("1.2", TlsVersion::V1_2), ("1.3", TlsVersion::V1_3)],
        );
        let mut sni = Vec::new();
        for (i, entry) in r.sni.into_iter().enumerate() {
            let pos = at(&entry);
            let e = entry.into_inner();
            let k = format!("tls.sni[{i}]");
            let mut hosts = Vec::new();
            for h in self.list(e.hosts) {
                match host_pattern(h.get_ref()) {
                    Some(HostPattern::Any) | None => self.err(at(&h), &format!("{k}.hosts"), format!("{:?} is not a host name; expected e.g. \"app.example.com\" or \"*.example.com\"", h.get_ref())),
                    Some(p) => hosts.push(p),
                }
            }
            if hosts.is_empty() {
                self.err(pos, &format!("{k}.hosts"), "needs at least one host name");
            }
            let has = (e.cert.is_some(), e.key.is_some());
            let cert = self.path(e.cert, "");
            let key = self.path(e.key, "");
            for (name, p, given) in [("cert", &cert, has.0), ("key", &key, has.1)] {
                if !given {
                    self.err(pos, &format!("{k}.{name}"), "is required: a PEM file path");
                } else if !p.is_file() {
                    self.err(
                        pos,
                        &format!("{k}.{name}"),
                        format!("{} does not exist", p.display()),
                    );
                }
            }
            sni.push(SniCert { hosts, cert, key });
        }
        Tls {
            cert,
            key,
            self_signed_if_missing: self_signed,
            min_version,
            sni,
        }
    }

    fn session(&mut self, r: raw::RawSession) -> Session {
        let name_at = r.cookie_name.as_ref().and_then(at);
        let cookie_name = self.string(r.cookie_name, "__Host-cloakroom");
        if !is_token(&cookie_name) {
            self.err(name_at, "session.cookie_name", format!("{cookie_name:?} is not a cookie name (an RFC 6265 token, e.g. \"__Host-cloakroom\")"));
        }
        let idle_at = r.idle_timeout.as_ref().and_then(at);
        let touch_at = r.touch_interval.as_ref().and_then(at);
        let idle = self.duration("session.idle_timeout", r.idle_timeout, "30m");
        let absolute = self.duration("session.absolute_timeout", r.absolute_timeout, "12h");
        let touch = self.duration("session.touch_interval", r.touch_interval, "60s");
        if idle > absolute {
            self.err(
                idle_at,
                "session.idle_timeout",
                "is longer than session.absolute_timeout; it would never apply",
            );
        }
        if touch >= idle {
            self.err(
                touch_at,
                "session.touch_interval",
                "must be shorter than session.idle_timeout",
            );
        }
        Session {
            cookie_name,
            same_site: self.choice(
                "session.same_site",
                r.same_site,
                SameSite::Lax,
                &[
                    ("strict", SameSite::Strict),
                    ("lax", SameSite::Lax),
                    ("none", SameSite::None),
                ],
            ),
            idle_timeout: idle,
            absolute_timeout: absolute,
            persistent: self.flag(r.persistent, false),
            secret_env: self.string(r.secret_env, "CLOAKROOM_SECRET"),
            fallback_secrets_env: self.string(r.fallback_secrets_env, "CLOAKROOM_SECRET_FALLBACKS"),
            secret_file: self.path(r.secret_file, "data/secret.key"),
            touch_interval: touch,
            max_sessions: self.count(
                "session.max_sessions",
                r.max_sessions,
                1_000_000,
                1,
                1 << 32,
            ) as usize,
            max_new_sessions_per_client: self.count(
                "session.max_new_sessions_per_client",
                r.max_new_sessions_per_client,
                600,
                1,
                60_000,
            ) as u32,
            max_jar_bytes: self.count(
                "session.max_jar_bytes",
                r.max_jar_bytes,
                65536,
                64,
                16 << 20,
            ) as usize,
            passive_paths: self.path_list("session.passive_paths", r.passive_paths),
        }
    }

    fn store(&mut self, r: raw::RawStore) -> Store {
        let backend = self.choice(
            "store.backend",
            r.backend,
            Backend::Embedded,
            &[
                ("embedded", Backend::Embedded),
                ("redis", Backend::Redis),
                ("memory", Backend::Memory),
            ],
        );
        if backend != Backend::Redis {
            self.redis_only("store.redis_url", &r.redis_url);
            self.redis_only("store.redis_cluster", &r.redis_cluster);
            self.redis_only("store.key_prefix", &r.key_prefix);
            self.redis_only("store.redis_password_env", &r.redis_password_env);
        }
        if let Some(p) = &r.key_prefix {
            if p.get_ref().contains(['{', '}']) {
                self.err(at(p), "store.key_prefix", format!("{:?} holds a brace; cloakroom adds its own Redis Cluster hash tag after the prefix, so use letters, digits and ':' (e.g. \"cloakroom:\")", p.get_ref()));
            }
        }
        let mut cluster = Vec::new();
        for u in self.list(r.redis_cluster) {
            if is_redis_url(u.get_ref()) {
                cluster.push(u.into_inner());
            } else {
                self.err(
                    at(&u),
                    "store.redis_cluster",
                    format!(
                        "{:?} is not a Redis URL; expected redis://host:port or rediss://host:port",
                        redact_url(u.get_ref())
                    ),
                );
            }
        }
        let url_at = r.redis_url.as_ref().and_then(at);
        let redis_url = self.string(r.redis_url, "redis://127.0.0.1:6379/0");
        if !is_redis_url(&redis_url) {
            self.err(
                url_at,
                "store.redis_url",
                format!(
                    "{:?} is not a Redis URL; expected redis://host:port/db or rediss://…",
                    redact_url(&redis_url)
                ),
            );
        }
        Store {
            backend,
            path: self.path(r.path, "data/sessions.db"),
            redis_url,
            redis_cluster: cluster,
            key_prefix: self.string(r.key_prefix, "cloakroom:"),
            redis_password_env: self.string(r.redis_password_env, "CLOAKROOM_REDIS_PASSWORD"),
        }
    }

    fn auth(&mut self, mut r: raw::RawAuth) -> Auth {
        let provider_at = r.provider.as_ref().and_then(at);
        let provider = self.provider(r.provider.take());
        let login_paths = match r.login_paths {
            None => DEFAULT_LOGIN_PATHS.map(String::from).to_vec(),
            some => self.path_list("auth.login_paths", some),
        };
        let logout_paths = self.logout_paths(r.logout_paths);
        if provider != Provider::Local {
            self.local_only("auth.users_file", &r.users_file);
            self.local_only("auth.max_failures_per_user", &r.max_failures_per_user);
            self.local_only("auth.max_failures_per_address", &r.max_failures_per_address);
            self.local_only("auth.failure_window", &r.failure_window);
        }
        let users_at = r.users_file.as_ref().and_then(at);
        if provider != Provider::Oidc {
            for (key, set) in [
                ("auth.oidc_issuer", r.oidc_issuer.as_ref().map(at)),
                ("auth.oidc_client_id", r.oidc_client_id.as_ref().map(at)),
                (
                    "auth.oidc_client_secret_env",
                    r.oidc_client_secret_env.as_ref().map(at),
                ),
                ("auth.oidc_scopes", r.oidc_scopes.as_ref().map(at)),
                (
                    "auth.oidc_groups_claim",
                    r.oidc_groups_claim.as_ref().map(at),
                ),
            ] {
                if let Some(pos) = set {
                    let msg = "has no effect: it is read only with auth.provider = \"oidc\"";
                    self.errs.warn(pos, key, msg.to_string());
                }
            }
        } else {
            self.oidc_required(&r.oidc_issuer, &r.oidc_client_id, provider_at);
        }
        let (form_user_field, form_success_paths) = match provider {
            Provider::Form => (
                self.form_user_field(r.form_user_field),
                self.form_success_paths(r.form_success_paths, provider_at),
            ),
            _ => {
                self.form_only("auth.form_user_field", &r.form_user_field);
                self.form_only("auth.form_success_paths", &r.form_success_paths);
                (DEFAULT_FORM_USER_FIELD.to_string(), Vec::new())
            }
        };
        let auth = Auth {
            provider,
            users_file: self.path(r.users_file, "users.toml"),
            upstream_login_header: self.header_name(
                "auth.upstream_login_header",
                r.upstream_login_header,
                "X-Cloakroom-Login",
            ),
            upstream_logout_header: self.header_name(
                "auth.upstream_logout_header",
                r.upstream_logout_header,
                "X-Cloakroom-Logout",
            ),
            login_paths,
            logout_paths,
            form_user_field,
            form_success_paths,
            max_failures_per_user: self.count(
                "auth.max_failures_per_user",
                r.max_failures_per_user,
                5,
                1,
                1_000_000,
            ) as u32,
            max_failures_per_address: self.count(
                "auth.max_failures_per_address",
                r.max_failures_per_address,
                20,
                1,
                1_000_000,
            ) as u32,
            failure_window: self.duration("auth.failure_window", r.failure_window, "15m"),
            oidc_issuer: self.string(r.oidc_issuer, ""),
            oidc_client_id: self.string(r.oidc_client_id, ""),
            oidc_client_secret_env: self
                .string(r.oidc_client_secret_env, "CLOAKROOM_OIDC_CLIENT_SECRET"),
            oidc_scopes: self
                .list(r.oidc_scopes)
                .into_iter()
                .map(Spanned::into_inner)
                .collect::<Vec<_>>(),
            oidc_groups_claim: self.string(r.oidc_groups_claim, "groups"),
            users: Arc::default(),
        };
        let mut auth = auth;
        if auth.oidc_scopes.is_empty() {
            auth.oidc_scopes = vec!["openid".into(), "email".into(), "profile".into()];
        }
        if provider == Provider::Local {
            auth.users = self.users(&auth.users_file, users_at);
        }
        auth
    }

    /// Loads `auth.users_file` for `provider = "local"`: its own problems
    /// name the users file; a file that cannot be read names this key.
    fn users(&mut self, path: &Path, at: Option<usize>) -> Arc<Users> {
        match users::load(path) {
            Ok(u) => Arc::new(u),
            Err(errors) => {
                for e in errors {
                    if e.key == "(file)" {
                        let msg = format!("{}: {}", path.display(), e.message);
                        self.err(at, "auth.users_file", msg);
                    } else {
                        self.errs.errors.push(e);
                    }
                }
                Arc::default()
            }
        }
    }

    /// A key read only with `provider = "local"`, set with another.
    fn local_only<T>(&mut self, key: &str, v: &S<T>) {
        if let Some(v) = v {
            let msg = "has no effect: it is read only with auth.provider = \"local\"";
            self.errs.warn(at(v), key, msg.to_string());
        }
    }

    /// `provider = "oidc"` needs an issuer (an `https` URL, or `http` on a
    /// loopback host: a test or sidecar issuer) and a client id.
    fn oidc_required(
        &mut self,
        issuer: &S<String>,
        client_id: &S<String>,
        provider_at: Option<usize>,
    ) {
        match issuer {
            Some(v) => {
                if let Err(why) = check_issuer(v.get_ref()) {
                    self.err(at(v), "auth.oidc_issuer", format!("{:?} {why}", v.get_ref()));
                }
            }
            None => self.err(provider_at, "auth.oidc_issuer", "is required with provider = \"oidc\": the issuer URL, e.g. \"https://accounts.example.com\""),
        }
        match client_id {
            Some(v) if !v.get_ref().trim().is_empty() => {}
            Some(v) => self.err(
                at(v),
                "auth.oidc_client_id",
                "must not be empty with provider = \"oidc\"",
            ),
            None => self.err(
                provider_at,
                "auth.oidc_client_id",
                "is required with provider = \"oidc\": the client id registered at the issuer",
            ),
        }
    }

    /// Every provider SPEC §3 names is built.
    fn provider(&mut self, v: S<String>) -> Provider {
        self.choice(
            "auth.provider",
            v,
            Provider::None,
            &[
                ("none", Provider::None),
                ("upstream", Provider::Upstream),
                ("local", Provider::Local),
                ("oidc", Provider::Oidc),
                ("form", Provider::Form),
            ],
        )
    }

    /// An `[auth]` key read only by the form provider, set with another.
    fn form_only<T>(&mut self, key: &str, v: &S<T>) {
        if let Some(v) = v {
            let msg = "has no effect: it is read only with auth.provider = \"form\"";
            self.errs.warn(at(v), key, msg.to_string());
        }
    }

    /// `auth.form_user_field`: a form field name, as the form sends it.
    fn form_user_field(&mut self, v: S<String>) -> String {
        let Some(v) = v else {
            return DEFAULT_FORM_USER_FIELD.to_string();
        };
        let name = v.get_ref();
        if name.is_empty() || name.chars().any(|c| c.is_control() || c == '"') {
            self.err(
                at(&v),
                "auth.form_user_field",
                format!("{name:?} is not a form field name; write the name attribute of the login form's user input, e.g. \"username\" or \"email\""),
            );
        }
        v.into_inner()
    }

    /// `auth.form_success_paths`, required with `provider = "form"` (SPEC
    /// §8.4a) and normalised as request paths are.
    fn form_success_paths(
        &mut self,
        v: S<Vec<Spanned<String>>>,
        provider_at: Option<usize>,
    ) -> Vec<String> {
        let key = "auth.form_success_paths";
        let required = "is required with provider = \"form\" and must not be empty: list the path prefixes of the redirect the app answers a successful login with (e.g. [\"/dashboard\"]), since many apps also redirect after a failed one";
        let Some(v) = v else {
            self.err(provider_at, key, required);
            return Vec::new();
        };
        if v.get_ref().is_empty() {
            self.err(at(&v), key, required);
            return Vec::new();
        }
        let mut out = Vec::new();
        for p in v.into_inner() {
            out.extend(self.normalised_prefix(key, &p));
        }
        out
    }

    fn identity(&mut self, r: raw::RawIdentity, secret_file: &Path) -> Identity {
        let mut strip = Vec::new();
        for h in self.list(r.strip_from_client) {
            match HeaderName::from_bytes(h.get_ref().trim().as_bytes()) {
                Ok(n) => strip.push(n),
                Err(_) => self.err(
                    at(&h),
                    "identity.strip_from_client",
                    format!("{:?} is not a header name", h.get_ref()),
                ),
            }
        }
        let assertion = match r.assertion_header {
            Some(v) if v.get_ref().is_empty() => None,
            None => None,
            some => {
                Some(self.header_name("identity.assertion_header", some, "X-Cloakroom-Assertion"))
            }
        };
        if let Some(v) = r
            .assertion_algorithm
            .as_ref()
            .filter(|_| assertion.is_none())
        {
            let msg =
                "has no effect: identity.assertion_header is empty, so no assertion is signed";
            self.errs
                .warn(at(v), "identity.assertion_algorithm", msg.to_string());
        }
        let algorithm = self.choice(
            "identity.assertion_algorithm",
            r.assertion_algorithm,
            AssertionAlgorithm::Es256,
            &[
                ("ES256", AssertionAlgorithm::Es256),
                ("EdDSA", AssertionAlgorithm::EdDsa),
            ],
        );
        let key_name = match algorithm {
            AssertionAlgorithm::Es256 => "assertion-es256.key",
            AssertionAlgorithm::EdDsa => "assertion-eddsa.key",
        };
        let assertion_key = secret_file
            .parent()
            .map_or_else(|| PathBuf::from(key_name), |d| d.join(key_name));
        Identity {
            user_header: self.header_name(
                "identity.user_header",
                r.user_header,
                "X-Forwarded-User",
            ),
            email_header: self.header_name(
                "identity.email_header",
                r.email_header,
                "X-Forwarded-Email",
            ),
            groups_header: self.header_name(
                "identity.groups_header",
                r.groups_header,
                "X-Forwarded-Groups",
            ),
            strip_from_client: strip,
            assertion_header: assertion,
            assertion_algorithm: algorithm,
            assertion_key,
        }
    }

    fn csrf(&mut self, r: raw::RawCsrf) -> Csrf {
        let mode = self.choice(
            "csrf.mode",
            r.mode,
            CsrfMode::Origin,
            &[("origin", CsrfMode::Origin), ("off", CsrfMode::Off)],
        );
        let mut origins = Vec::new();
        for o in self.list(r.allowed_origins) {
            match normalise_origin(o.get_ref()) {
                Some(n) => origins.push(n),
                None => self.err(
                    at(&o),
                    "csrf.allowed_origins",
                    format!(
                        "{:?} is not an origin; expected scheme://host[:port] with no path",
                        o.get_ref()
                    ),
                ),
            }
        }
        Csrf {
            mode,
            allowed_origins: origins,
        }
    }

    fn routes(&mut self, routes: Vec<Spanned<raw::RawRoute>>) -> Vec<Route> {
        if routes.is_empty() {
            self.err(
                None,
                "route",
                "at least one [[route]] with an upstream is required",
            );
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, r) in routes.into_iter().enumerate() {
            let pos = at(&r);
            let r = r.into_inner();
            let k = format!("route[{i}]");
            let host_at = r.host.as_ref().and_then(at);
            let host_text = self.string(r.host, "");
            let host = host_pattern(&host_text).unwrap_or_else(|| {
                self.err(host_at, &format!("{k}.host"), format!("{host_text:?} is not a host; expected \"\", \"app.example.com\" or \"*.example.com\""));
                HostPattern::Any
            });
            let prefix_at = r.path_prefix.as_ref().and_then(at);
            let prefix_text = self.string(r.path_prefix, "/");
            let path_prefix = match crate::wire::path::normalise_prefix(&prefix_text) {
                Some(p) => p,
                None => {
                    self.err(
                        prefix_at,
                        &format!("{k}.path_prefix"),
                        format!("{prefix_text:?} is not a path prefix; it must start with '/'"),
                    );
                    "/".to_string()
                }
            };
            let upstream = match &r.upstream {
                None => {
                    self.err(
                        pos,
                        &format!("{k}.upstream"),
                        "is required: e.g. \"http://127.0.0.1:5000\"",
                    );
                    None
                }
                Some(u) => {
                    let parsed = parse_upstream(u.get_ref());
                    if parsed.is_none() {
                        self.err(at(u), &format!("{k}.upstream"), format!("{:?} is not an upstream; expected http://host:port with no path (upstreams speak plain HTTP/1.1)", u.get_ref()));
                    }
                    parsed
                }
            };
            if !seen.insert((host.clone(), path_prefix.clone())) {
                self.err(prefix_at.or(pos), &format!("{k}.path_prefix"), format!("another route already has host {host_text:?} and path_prefix {path_prefix:?}; each pair must be unique"));
            }
            let upstream_url = r.upstream.map(Spanned::into_inner).unwrap_or_default();
            let upstream_origin =
                UpstreamOrigin::new(upstream.as_ref().map_or("127.0.0.1:5000", |a| a.as_str()))
                    .expect("parse_upstream admits only authorities UpstreamOrigin accepts");
            out.push(Route {
                index: i,
                name: format!("{host_text}{path_prefix}"),
                host,
                path_prefix,
                upstream_host: HeaderValue::from_str(
                    upstream.as_ref().map_or("127.0.0.1:5000", |a| a.as_str()),
                )
                .expect("an authority is a valid header value"),
                upstream: upstream.unwrap_or_else(|| Authority::from_static("127.0.0.1:5000")),
                upstream_url,
                auth: self.choice(
                    &format!("{k}.auth"),
                    r.auth,
                    RouteAuth::None,
                    &[
                        ("required", RouteAuth::Required),
                        ("optional", RouteAuth::Optional),
                        ("none", RouteAuth::None),
                    ],
                ),
                public_paths: self.path_list(&format!("{k}.public_paths"), r.public_paths),
                cookies: self.choice(
                    &format!("{k}.cookies"),
                    r.cookies,
                    CookieMode::Jar,
                    &[
                        ("jar", CookieMode::Jar),
                        ("passthrough", CookieMode::Passthrough),
                    ],
                ),
                passthrough_cookies: self
                    .cookie_names(&format!("{k}.passthrough_cookies"), r.passthrough_cookies),
                script_readable_cookies: self.cookie_names(
                    &format!("{k}.script_readable_cookies"),
                    r.script_readable_cookies,
                ),
                preserve_host: self.flag(r.preserve_host, false),
                rewrite_location: self.flag(r.rewrite_location, true),
                translate_origin: self.flag(r.translate_origin, true),
                upstream_origin,
            });
        }
        out
    }
}

/// RFC 6265 cookie-name token: visible ASCII minus separators.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

fn is_redis_url(s: &str) -> bool {
    s.starts_with("redis://")
        || s.starts_with("rediss://")
        || s.starts_with("redis+unix://")
        || s.starts_with("unix://")
}

/// `""` → any; `*.example.com` → wildcard; a DNS name → exact. Lower-cased.
pub(crate) fn host_pattern(s: &str) -> Option<HostPattern> {
    let s = s.trim().to_ascii_lowercase();
    if s.is_empty() {
        return Some(HostPattern::Any);
    }
    let (wild, name) = match s.strip_prefix("*.") {
        Some(rest) => (true, rest.to_string()),
        None => (false, s.clone()),
    };
    let ok = !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    match (ok, wild) {
        (false, _) => None,
        (true, true) => Some(HostPattern::Wildcard(format!(".{name}"))),
        (true, false) => Some(HostPattern::Exact(name)),
    }
}

fn parse_upstream(s: &str) -> Option<Authority> {
    let uri: Uri = s.trim().parse().ok()?;
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let path_ok = matches!(uri.path(), "" | "/") && uri.query().is_none();
    let auth = uri.authority()?.clone();
    let comparable = UpstreamOrigin::new(auth.as_str()).is_some();
    (path_ok && !auth.as_str().contains('@') && comparable).then_some(auth)
}

/// `scheme://host[:port]`, lower-cased, or `None` when not an origin.
pub(crate) fn normalise_origin(s: &str) -> Option<String> {
    let uri: Uri = s.trim().parse().ok()?;
    let scheme = uri.scheme_str()?;
    if !(scheme == "http" || scheme == "https")
        || !matches!(uri.path(), "" | "/")
        || uri.query().is_some()
    {
        return None;
    }
    Some(format!(
        "{scheme}://{}",
        uri.authority()?.as_str().to_ascii_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match Config::parse(Path::new("/nonexistent/proxy.toml"), text) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    const ROUTE: &str = "[[route]]\nupstream = \"http://127.0.0.1:5000\"\n";

    #[test]
    fn minimal_config_is_valid_with_spec_defaults() {
        let c = Config::parse(Path::new("/x/proxy.toml"), ROUTE).unwrap();
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:8443");
        assert_eq!(c.session.cookie_name, "__Host-cloakroom");
        assert_eq!(c.session.idle_timeout, Duration::from_secs(1800));
        assert_eq!(c.routes[0].path_prefix, "/");
        assert_eq!(c.tls.cert, PathBuf::from("/x/certs/cert.pem"));
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = errors(&format!(
            "[server]\nlisten = \"0.0.0.0:1\"\nbogus = 1\n{ROUTE}"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains(":3: server.bogus:"), "{e:?}");
        assert!(e[0].contains("unknown field"), "{e:?}");
    }

    #[test]
    fn every_semantic_error_is_collected() {
        let text = format!("[server]\nrequest_header_timeout = \"soon\"\ntrusted_proxies = [\"10.0.0.0/33\"]\n[session]\nsame_site = \"sometimes\"\n{ROUTE}[[route]]\npath_prefix = \"/api\"\n");
        let e = errors(&text);
        assert!(
            e.iter()
                .any(|e| e.contains(":2: server.request_header_timeout:")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|e| e.contains(":3: server.trusted_proxies:")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.contains(":5: session.same_site:") && e.contains("\"lax\"")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.contains("route[1].upstream: is required")),
            "{e:?}"
        );
    }

    #[test]
    fn duplicate_routes_are_an_error() {
        let e = errors(&format!("{ROUTE}{ROUTE}"));
        assert!(
            e.iter()
                .any(|e| e.contains("route[1].path_prefix") && e.contains("unique")),
            "{e:?}"
        );
        let e = errors(&format!("{ROUTE}[[route]]\npath_prefix = \"/app/\"\nupstream = \"http://a:1\"\n[[route]]\npath_prefix = \"/app\"\nupstream = \"http://a:1\"\n"));
        assert_eq!(e.len(), 1, "{e:?}");
    }

    #[test]
    fn no_route_is_an_error() {
        assert!(errors("")[0].contains("route"));
    }

    #[test]
    fn upstream_must_be_plain_http_authority() {
        for bad in ["https://a:1", "http://a:1/base", "a:1", "http://u@a:1"] {
            let e = errors(&format!("[[route]]\nupstream = \"{bad}\"\n"));
            assert!(
                e.iter().any(|e| e.contains(":2: route[0].upstream")),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn s9_7_s9_6a_route_rewrite_keys_default_on_and_must_be_booleans() {
        let c = Config::parse(Path::new("/x/proxy.toml"), ROUTE).unwrap();
        let r = &c.routes[0];
        assert!(r.rewrite_location && r.translate_origin);
        assert_eq!(r.upstream_origin.origin(), "http://127.0.0.1:5000");
        let text = format!("{ROUTE}rewrite_location = false\ntranslate_origin = false\n");
        let c = Config::parse(Path::new("/x/proxy.toml"), &text).unwrap();
        assert!(!c.routes[0].rewrite_location && !c.routes[0].translate_origin);
        let e = errors(&format!("{ROUTE}rewrite_location = \"yes\"\n"));
        assert!(
            e.iter().any(|e| e.contains(":3: route.rewrite_location")),
            "{e:?}"
        );
    }

    #[test]
    fn missing_cert_without_self_signed_is_an_error() {
        let e = errors(&format!(
            "[tls]\ncert = \"nope.pem\"\nself_signed_if_missing = false\n{ROUTE}"
        ));
        assert!(
            e.iter()
                .any(|e| e.contains("tls.cert") && e.contains("does not exist")),
            "{e:?}"
        );
    }

    #[test]
    fn host_patterns() {
        assert_eq!(host_pattern(""), Some(HostPattern::Any));
        assert_eq!(
            host_pattern("App.Example.com"),
            Some(HostPattern::Exact("app.example.com".into()))
        );
        assert_eq!(
            host_pattern("*.example.com"),
            Some(HostPattern::Wildcard(".example.com".into()))
        );
        assert_eq!(host_pattern("a b"), None);
        assert_eq!(host_pattern("*."), None);
    }

    fn warnings(text: &str) -> Vec<String> {
        let c = Config::parse(Path::new("/x/proxy.toml"), text).unwrap();
        c.warnings.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn s3_the_provider_is_one_of_the_five() {
        let e = errors(&format!("[auth]\nprovider = \"ldap\"\n{ROUTE}"));
        assert!(
            e[0].contains(":2: auth.provider: ")
                && e[0].contains(
                    "expected one of \"none\", \"upstream\", \"local\", \"oidc\", \"form\""
                ),
            "{e:?}"
        );
        for p in ["none", "upstream"] {
            assert!(errors(&format!("[auth]\nprovider = \"{p}\"\n{ROUTE}")).is_empty());
        }
    }

    #[test]
    fn s8_4a_form_needs_success_paths_and_a_field_name() {
        let form = |extra: &str| errors(&format!("[auth]\nprovider = \"form\"\n{extra}{ROUTE}"));
        let e = form("");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains(":2: auth.form_success_paths: is required with provider = \"form\""),
            "{e:?}"
        );
        let e = form("form_success_paths = []\n");
        assert!(
            e[0].contains(":3: auth.form_success_paths: is required"),
            "{e:?}"
        );
        let e = form("form_success_paths = [\"dashboard\"]\n");
        assert!(
            e[0].contains(":3: auth.form_success_paths: \"dashboard\" is not a path prefix"),
            "{e:?}"
        );
        let e = form("form_success_paths = [\"/dashboard\"]\nform_user_field = \"\"\n");
        assert!(
            e[0].contains(":4: auth.form_user_field: \"\" is not a form field name"),
            "{e:?}"
        );
        assert!(form(
            "form_success_paths = [\"/dashboard/\", \"/a/./b\"]\nform_user_field = \"email\"\n"
        )
        .is_empty());
        let c = Config::parse(
            Path::new("/x/proxy.toml"),
            &format!("[auth]\nprovider = \"form\"\nform_success_paths = [\"/dashboard/\", \"/a/./b\"]\n{ROUTE}"),
        )
        .unwrap();
        assert_eq!(c.auth.provider, Provider::Form);
        assert_eq!(c.auth.form_success_paths, ["/dashboard", "/a/b"]);
        assert_eq!(c.auth.form_user_field, "username");
        let w = warnings(&format!("[auth]\nform_success_paths = [\"/d\"]\n{ROUTE}"));
        assert!(
            w[0].contains(":2: auth.form_success_paths: has no effect: it is read only with auth.provider = \"form\""),
            "{w:?}"
        );
    }

    #[test]
    fn s8_6_oidc_needs_an_issuer_and_a_client_id_and_https_off_loopback() {
        let oidc = |extra: &str| format!("[auth]\nprovider = \"oidc\"\n{extra}\n{ROUTE}");
        let e = errors(&oidc(""));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains(":2: auth.oidc_issuer: is required"), "{e:?}");
        assert!(
            e[1].contains(":2: auth.oidc_client_id: is required"),
            "{e:?}"
        );
        for (issuer, ok) in [
            ("https://accounts.example.com", true),
            ("https://example.com/realms/x", true),
            ("http://127.0.0.1:9000", true),
            ("http://localhost:9000/op", true),
            ("http://[::1]:9000", true),
            ("http://accounts.example.com", false),
            ("https://example.com/?a=b", false),
            ("ftp://example.com", false),
            ("example.com", false),
        ] {
            let text = oidc(&format!(
                "oidc_issuer = \"{issuer}\"\noidc_client_id = \"c\""
            ));
            assert_eq!(
                errors(&text).is_empty(),
                ok,
                "{issuer}: {:?}",
                errors(&text)
            );
        }
        let text = oidc(
            "oidc_issuer = \"https://i.example\"\noidc_client_id = \"c\"\n\
             oidc_scopes = [\"openid\", \"groups\"]\noidc_groups_claim = \"roles\"",
        );
        assert!(warnings(&text).is_empty(), "{:?}", warnings(&text));
        let c = Config::parse(Path::new("/x/proxy.toml"), &text).unwrap();
        assert_eq!(c.auth.provider, Provider::Oidc);
        assert_eq!(c.auth.oidc_scopes, ["openid", "groups"]);
        let e = errors(&oidc("oidc_issuer = \"https://i\"\noidc_client_id = \" \""));
        assert!(
            e[0].contains("auth.oidc_client_id: must not be empty"),
            "{e:?}"
        );
    }

    #[test]
    fn s3_store_backend_defaults_to_embedded() {
        let c = Config::parse(Path::new("/x/proxy.toml"), ROUTE).unwrap();
        assert_eq!(c.store.backend, Backend::Embedded);
        assert_eq!(c.store.path, Path::new("/x/data/sessions.db"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = Config::parse(
            Path::new("/x/proxy.toml"),
            &format!("[store]\npath = \"s.db\"\n{ROUTE}"),
        )
        .unwrap();
        assert_eq!(c.store.path, Path::new("/x/s.db"));
        assert!(c.warnings.is_empty(), "store.path is read now");
    }

    #[test]
    fn redis_urls_are_shown_without_their_credentials() {
        use crate::config::redact_url as redact;
        assert_eq!(redact("redis://u:p%40ss@h:6379/0"), "redis://***@h:6379/0");
        assert_eq!(redact("rediss://:secret@h"), "rediss://***@h");
        assert_eq!(redact("redis://h:6379/0?x=a@b"), "redis://h:6379/0?x=a@b");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("secret"), "(not a URL)");
        let e = errors(&format!(
            "[store]\nbackend = \"redis\"\nredis_url = \"http://u:hunter2@r\"\n\
             redis_cluster = [\"tcp://:hunter2@c\"]\n{ROUTE}"
        ));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().all(|e| !e.contains("hunter2")), "{e:?}");
        let text =
            format!("[store]\nbackend = \"redis\"\nredis_url = \"redis://u:hunter2@r\"\n{ROUTE}");
        let c = Config::parse(Path::new("/x/proxy.toml"), &text).unwrap();
        let shown = format!("{:?}", c.store);
        assert!(
            !shown.contains("hunter2") && shown.contains("***@r"),
            "{shown}"
        );
    }

    #[test]
    fn s3_store_redis_is_accepted_and_its_keys_read() {
        let text = format!(
            "[store]\nbackend = \"redis\"\nredis_url = \"rediss://r:6380/2\"\n\
             redis_cluster = [\"redis://a:7000\", \"redis://b:7001\"]\n\
             key_prefix = \"app1:\"\nredis_password_env = \"P\"\n{ROUTE}"
        );
        assert!(errors(&text).is_empty(), "{:?}", errors(&text));
        assert!(warnings(&text).is_empty(), "{:?}", warnings(&text));
        let e = errors(&format!(
            "[store]\nbackend = \"redis\"\nkey_prefix = \"a{{b}}:\"\n{ROUTE}"
        ));
        assert!(
            e[0].contains("store.key_prefix") && e[0].contains("hash tag"),
            "{e:?}"
        );
    }

    #[test]
    fn s3_keys_of_features_not_built_warn_with_file_line_and_key() {
        let text = format!(
            "[store]\nbackend = \"memory\"\npath = \"s.db\"\nredis_url = \"redis://r\"\n\
             redis_cluster = []\nkey_prefix = \"p:\"\nredis_password_env = \"P\"\n\
             [auth]\nprovider = \"upstream\"\nusers_file = \"u.toml\"\n\
             max_failures_per_user = 3\nmax_failures_per_address = 9\nfailure_window = \"5m\"\n\
             oidc_issuer = \"https://i\"\noidc_client_id = \"c\"\noidc_client_secret_env = \"S\"\n\
             oidc_scopes = [\"openid\"]\noidc_groups_claim = \"g\"\n\
             form_user_field = \"user\"\nform_success_paths = [\"/home\"]\n\
             [identity]\nassertion_algorithm = \"EdDSA\"\n{ROUTE}"
        );
        let w = warnings(&text);
        let keys = [
            "store.redis_url",
            "store.redis_cluster",
            "store.key_prefix",
            "store.redis_password_env",
            "auth.users_file",
            "auth.max_failures_per_user",
            "auth.max_failures_per_address",
            "auth.failure_window",
            "auth.oidc_issuer",
            "auth.oidc_client_id",
            "auth.oidc_client_secret_env",
            "auth.oidc_scopes",
            "auth.oidc_groups_claim",
            "auth.form_user_field",
            "auth.form_success_paths",
            "identity.assertion_algorithm",
        ];
        assert_eq!(w.len(), keys.len(), "{w:#?}");
        for (w, key) in w.iter().zip(keys) {
            let line = text
                .lines()
                .position(|l| l.starts_with(key.split('.').nth(1).unwrap()));
            let built = key.starts_with("store.redis")
                || key == "store.key_prefix"
                || key.starts_with("auth.form_")
                || LOCAL_KEYS.contains(&key)
                || key == "identity.assertion_algorithm"
                || key.starts_with("auth.oidc");
            let yet = if built { "" } else { " yet" };
            let want = format!(
                "/x/proxy.toml:{}: {key}: has no effect{yet}: ",
                line.unwrap() + 1
            );
            assert!(w.starts_with(&want), "{w} / {want}");
        }
        assert!(w[0].contains("store.backend = \"redis\""), "{}", w[0]);
        assert!(w[4].contains("auth.provider = \"local\""), "{}", w[4]);
        assert!(w[8].contains("provider = \"oidc\""), "{}", w[8]);
        assert!(w[13].contains("provider = \"form\""), "{}", w[13]);
        assert!(
            w[15].contains("identity.assertion_header is empty"),
            "{}",
            w[15]
        );
    }

    const LOCAL_KEYS: [&str; 4] = [
        "auth.users_file",
        "auth.max_failures_per_user",
        "auth.max_failures_per_address",
        "auth.failure_window",
    ];

    #[test]
    fn s8_5_local_reads_the_users_file_beside_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let hash = crate::password::hash(b"pw").unwrap();
        let users = format!("[[user]]\nname = \"alice\"\npassword_hash = \"{hash}\"\n");
        std::fs::write(dir.path().join("people.toml"), users).unwrap();
        let text = format!("[auth]\nprovider = \"local\"\nusers_file = \"people.toml\"\n{ROUTE}");
        let path = dir.path().join("proxy.toml");
        let c = Config::parse(&path, &text).unwrap();
        assert_eq!(c.auth.provider, Provider::Local);
        assert!(c.auth.users.get("alice").is_some());
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // A missing file names the key in proxy.toml; a bad one its own line.
        let missing = text.replace("people.toml", "nobody.toml");
        let e = Config::parse(&path, &missing).unwrap_err().to_string();
        assert!(
            e.contains("proxy.toml:3: auth.users_file: ") && e.contains("nobody.toml"),
            "{e}"
        );
        std::fs::write(dir.path().join("people.toml"), "[[user]]\nname = \"bob\"\n").unwrap();
        let e = Config::parse(&path, &text).unwrap_err().to_string();
        assert!(
            e.contains("people.toml:1: user[1].password_hash: is required"),
            "{e}"
        );
    }

    #[test]
    fn s8_6a_assertion_header_and_algorithm_are_read_without_warnings() {
        let text = format!(
            "[session]\nsecret_file = \"keys/s.key\"\n\
             [identity]\nassertion_header = \"X-Assertion\"\nassertion_algorithm = \"EdDSA\"\n{ROUTE}"
        );
        let c = Config::parse(Path::new("/x/proxy.toml"), &text).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.identity.assertion_header.unwrap().as_str(), "x-assertion");
        assert_eq!(c.identity.assertion_algorithm, AssertionAlgorithm::EdDsa);
        assert_eq!(
            c.identity.assertion_key,
            Path::new("/x/keys/assertion-eddsa.key")
        );
        let off = Config::parse(Path::new("/x/proxy.toml"), ROUTE).unwrap();
        assert_eq!(off.identity.assertion_algorithm, AssertionAlgorithm::Es256);
        assert!(off.identity.assertion_header.is_none());
        assert!(warnings(&format!("[identity]\nassertion_header = \"\"\n{ROUTE}")).is_empty());
        let e = errors(&format!(
            "[identity]\nassertion_header = \"X-A\"\nassertion_algorithm = \"HS256\"\n{ROUTE}"
        ));
        assert!(e[0].contains("identity.assertion_algorithm"), "{e:?}");
    }

    #[test]
    fn s3_defaults_and_the_shipped_proxy_toml_have_no_warnings() {
        assert!(warnings(ROUTE).is_empty());
        assert!(warnings(include_str!("../../proxy.toml")).is_empty());
    }

    #[test]
    fn s3_login_and_logout_paths_default_to_the_spec_lists() {
        let c = Config::parse(Path::new("/x/proxy.toml"), ROUTE).unwrap();
        let login = [
            "/login",
            "/signin",
            "/auth/login",
            "/admin/login",
            "/accounts/login",
            "/user/login",
            "/users/sign_in",
            "/wp-login.php",
        ];
        let logout = [
            "/logout",
            "/signout",
            "/auth/logout",
            "/admin/logout",
            "/accounts/logout",
            "/user/logout",
            "/users/sign_out",
        ];
        assert_eq!(c.auth.login_paths, login);
        assert_eq!(c.auth.logout_paths, logout);
        let text = format!("[auth]\nlogin_paths = []\nlogout_paths = []\n{ROUTE}");
        let c = Config::parse(Path::new("/x/proxy.toml"), &text).unwrap();
        assert!(c.auth.login_paths.is_empty() && c.auth.logout_paths.is_empty());
    }

    #[test]
    fn s8_7a_logout_paths_are_normalised_prefixes() {
        let text = format!(
            "[auth]\nlogout_paths = [\"/accounts/logout/\", \"//a/./b//\", \"/x/../bye\"]\n{ROUTE}"
        );
        let c = Config::parse(Path::new("/x/proxy.toml"), &text).unwrap();
        assert_eq!(c.auth.logout_paths, ["/accounts/logout", "/a/b", "/bye"]);
        let e = errors(&format!(
            "[auth]\nlogout_paths = [\n  \"logout\",\n  \"/\",\n  \"/a b\",\n  \"/x/..\",\n]\n{ROUTE}"
        ));
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].contains(":3: auth.logout_paths: \"logout\" is not a path prefix"));
        assert!(e[1].contains(":4: auth.logout_paths: \"/\" would end every session"));
        assert!(e[2].contains(":5: auth.logout_paths: \"/a b\" is not a path prefix"));
        assert!(e[3].contains(":6: auth.logout_paths: \"/x/..\" would end every session"));
    }

    #[test]
    fn bad_cookie_name_is_an_error() {
        let e = errors(&format!("[session]\ncookie_name = \"a;b\"\n{ROUTE}"));
        assert!(e[0].contains(":2: session.cookie_name"), "{e:?}");
    }
}
