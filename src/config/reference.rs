//! The configuration reference: one descriptor per `proxy.toml` key, the
//! source of `docs/configuration.md` and `docs/proxy.schema.json`
//! (`cloakroom config-reference [--schema]`). Tests beside it tie the table
//! to the raw serde mirror (every field has a row, every row a field) and
//! each default to what validation yields when the key is left out; whether
//! a reload applies a key comes from [`READ_AT_START`].

use serde_json::{json, Map, Value};

use super::reload::READ_AT_START;

/// A value's type as written in `proxy.toml`.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    String,
    Bool,
    Integer {
        min: u64,
        max: u64,
    },
    /// A string such as `"90s"`, `"30m"`, `"12h"`, `"7d"` (humantime).
    Duration,
    StringList,
    /// One of the listed strings.
    Choice(&'static [&'static str]),
}

/// One key of `proxy.toml`.
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    /// `section.key`; keys of the arrays of tables are `tls.sni.KEY` and
    /// `route.KEY`.
    pub key: &'static str,
    pub ty: Ty,
    /// The default as a TOML literal; `None` for a key with no default.
    pub default: Option<&'static str>,
    pub required: bool,
    pub doc: &'static str,
}

impl KeyDoc {
    /// Whether a reload (SIGHUP, `POST /reload`) applies a change to it.
    pub fn reloadable(&self) -> bool {
        !READ_AT_START.contains(&self.key)
    }
}

const fn k(key: &'static str, ty: Ty, default: &'static str, doc: &'static str) -> KeyDoc {
    KeyDoc {
        key,
        ty,
        default: Some(default),
        required: false,
        doc,
    }
}

const fn req(key: &'static str, ty: Ty, doc: &'static str) -> KeyDoc {
    KeyDoc {
        key,
        ty,
        default: None,
        required: true,
        doc,
    }
}

use Ty::{Bool, Duration as Dur, String as Str, StringList as List};

/// Every key, in the order `proxy.toml` lists them.
pub const KEYS: &[KeyDoc] = &[
    k("server.listen", Str, r#""0.0.0.0:8443""#, "HTTPS listener (TLS always on; HTTP/1.1 and HTTP/2 by ALPN)."),
    k("server.redirect_http", Str, r#""""#, "Plain-HTTP listener answering 308 to https (same host, path and query; the HTTPS port unless 443); `\"\"` disables."),
    k("server.admin_listen", Str, r#""127.0.0.1:9901""#, "Admin listener: `/healthz`, `/readyz`, `/metrics` and, with `CLOAKROOM_ADMIN_TOKEN` set, the session API and `POST /reload`; `\"\"` disables."),
    k("server.trusted_proxies", List, "[]", "CIDRs (or addresses) whose `X-Forwarded-For` is appended to and `-Proto`/`-Host` kept; from other peers all three are replaced."),
    k("server.max_request_header_bytes", Ty::Integer { min: 1024, max: 1 << 20 }, "16384", "Larger request heads get 431."),
    k("server.request_header_timeout", Dur, r#""10s""#, "The TLS handshake and each HTTP/1.1 request head must arrive within this (slowloris; checked every quarter of the shorter of the two timeouts, so within 1¼× of it)."),
    k("server.client_idle_timeout", Dur, r#""60s""#, "A connection with nothing in flight and no bytes moving is closed (checked every quarter of the timeout, so within 1¼× of it)."),
    k("server.upstream_connect_timeout", Dur, r#""5s""#, "Time to connect to an upstream; then 502."),
    k("server.upstream_response_timeout", Dur, r#""60s""#, "Time until the upstream's response headers; then 504."),
    k("server.max_connections", Ty::Integer { min: 1, max: 1_000_000 }, "10000", "Open client connections (HTTPS and redirect listeners together). At the cap the longest-idle keep-alive connection is closed (HTTP/2 with GOAWAY) to admit a new one; only when none is idle is a new connection refused at once (accepted and closed, counted in `cloakroom_connections_refused_total`)."),
    k("server.max_connections_per_client", Ty::Integer { min: 1, max: 1_000_000 }, "512", "Open connections from one peer address; beyond it a new one is refused at once. Peers in `trusted_proxies` are exempt."),
    k("server.shutdown_grace", Dur, r#""30s""#, "On SIGTERM/SIGINT, how long in-flight requests may drain."),
    k("server.hsts", Str, r#""max-age=31536000""#, "`Strict-Transport-Security` on every response; `\"\"` disables."),
    k("tls.cert", Str, r#""certs/cert.pem""#, "PEM certificate chain."),
    k("tls.key", Str, r#""certs/key.pem""#, "PEM private key."),
    k("tls.self_signed_if_missing", Bool, "true", "Generate a localhost certificate (`CN=localhost, O=cloakroom development certificate`, 90 days) into `cert`/`key` when both are missing; at start and reload, one cloakroom generated is replaced when under 30 days are left; any other certificate is never touched."),
    k("tls.min_version", Ty::Choice(&["1.2", "1.3"]), r#""1.2""#, "Lowest TLS version accepted."),
    req("tls.sni.hosts", List, "`[[tls.sni]]`: host names (exact or `*.` one-label wildcard) this certificate serves."),
    req("tls.sni.cert", Str, "`[[tls.sni]]`: PEM certificate chain."),
    req("tls.sni.key", Str, "`[[tls.sni]]`: PEM private key."),
    k("session.cookie_name", Str, r#""__Host-cloakroom""#, "Session cookie name (an RFC 6265 token); a `__Host-` name forces `Secure`, `Path=/` and no `Domain`."),
    k("session.same_site", Ty::Choice(&["strict", "lax", "none"]), r#""lax""#, "The session cookie's `SameSite`."),
    k("session.idle_timeout", Dur, r#""30m""#, "A session unused this long ends."),
    k("session.absolute_timeout", Dur, r#""12h""#, "A session ends this long after creation (restarted at login)."),
    k("session.persistent", Bool, "false", "`false`: a browser-session cookie; `true`: `Max-Age` = time left until the absolute timeout."),
    k("session.secret_env", Str, r#""CLOAKROOM_SECRET""#, "Env var with the current signing key (>= 32 bytes; 64 hex digits is hex, anything else base64url)."),
    k("session.fallback_secrets_env", Str, r#""CLOAKROOM_SECRET_FALLBACKS""#, "Env var with comma-separated older keys: accepted, then re-signed with the current one."),
    k("session.secret_file", Str, r#""data/secret.key""#, "Key file used when the env var is unset; created with mode 0600 if missing."),
    k("session.touch_interval", Dur, r#""60s""#, "Last-seen is written to the store at most this often per session; must be shorter than `idle_timeout`."),
    k("session.max_sessions", Ty::Integer { min: 1, max: 1 << 32 }, "1000000", "Cap on sessions: at the cap the longest-idle anonymous sessions are evicted (never ones with an identity), else 503. A reload applies it at the next session created."),
    k("session.max_new_sessions_per_client", Ty::Integer { min: 1, max: 60_000 }, "600", "Sessions one client address may create per minute (the `X-Forwarded-For` client behind `trusted_proxies`; IPv6 per /64); beyond it the response is replaced by 429 with `Retry-After` and no session is made."),
    k("session.max_jar_bytes", Ty::Integer { min: 64, max: 16 << 20 }, "65536", "Cap on one session's stored upstream cookies, per route."),
    k("session.passive_paths", List, "[]", "Path prefixes whose requests do not refresh the idle clock (background polling)."),
    k("store.backend", Ty::Choice(&["embedded", "redis", "memory"]), r#""embedded""#, "`embedded`: SQLite file `store.path`, survives restarts; `memory`: nothing survives a restart; `redis`: replicas share sessions. The other `[store]` keys but `path` are read only by `redis` (a warning otherwise)."),
    k("store.path", Str, r#""data/sessions.db""#, "`embedded`: the SQLite database file, created with mode 0600 (its directory 0700) on first start; one process per file."),
    k("store.redis_url", Str, r#""redis://127.0.0.1:6379/0""#, "`redis`: `redis://host:port/db`, `rediss://…` for TLS (rustls; the server certificate is checked against the system's roots, or `SSL_CERT_FILE`), or `redis+unix:///path`."),
    k("store.redis_cluster", List, "[]", "`redis`: seed URLs of a Redis Cluster; used instead of `redis_url` when not empty."),
    k("store.key_prefix", Str, r#""cloakroom:""#, "`redis`: starts every key; replicas sharing sessions use the same, deployments sharing a Redis different ones. No `{` or `}`: cloakroom adds its own hash tag."),
    k("store.redis_password_env", Str, r#""CLOAKROOM_REDIS_PASSWORD""#, "`redis`: when this env var is set, the password, or `user:password` for an ACL user (the first `:` separates them), used instead of the URL's. Never logged: URLs are shown with `***` for their credentials."),
    k("auth.provider", Ty::Choice(&["none", "local", "upstream", "oidc", "form"]), r#""none""#, "Identity provider. `none`; `upstream` (the app's login and logout headers, §8.4); `local` (a login form at `/.cloakroom/login` over `users_file`, §8.5); `oidc` (single sign-on, §8.6); `form` (the app's own login form, §8.4a)."),
    k("auth.users_file", Str, r#""users.toml""#, "`local`: the users file, relative to this file's directory: `[[user]]` tables with `name`, `password_hash` (argon2id PHC string from `cloakroom hash-password`), optional `email` and `groups = [..]`. Validated with the config (every problem names the users file, line and key) and re-read on reload; setting it with another provider gives a warning."),
    k("auth.upstream_login_header", Str, r#""X-Cloakroom-Login""#, "`upstream`: response header naming the user just logged in."),
    k("auth.upstream_logout_header", Str, r#""X-Cloakroom-Logout""#, "`upstream`: response header that ends the session."),
    k("auth.login_paths", List, r#"["/login", "/signin", "/auth/login", "/admin/login", "/accounts/login", "/user/login", "/users/sign_in", "/wp-login.php"]"#, "Any provider: a `POST` (or a request with `Authorization`) under one of these whose response changes the jar rotates the session id; the first is the app's login page."),
    k("auth.form_user_field", Str, r#""username""#, "`provider = \"form\"`: the field of the app's own login form that names the user (urlencoded or multipart; it must appear exactly once). With another provider, setting it gives a warning."),
    req("auth.form_success_paths", List, "`provider = \"form\"`, required there: path prefixes of the redirect (`Location`) the app answers a successful login with; only such an answer binds the form's user. A redirect to one of `login_paths` never counts. With another provider, setting it gives a warning."),
    k("auth.logout_paths", List, r#"["/logout", "/signout", "/auth/logout", "/admin/logout", "/accounts/logout", "/user/logout", "/users/sign_out"]"#, "Any provider: a request under one of these that the app answers with 2xx or 3xx ends the session; `[]` turns it off; `\"/\"` is refused."),
    k("auth.max_failures_per_user", Ty::Integer { min: 1, max: 1_000_000 }, "5", "`local`: after this many failed logins for one user name within `failure_window` (each answered 401), every attempt for that name gets 429 with `Retry-After`, even with the right password."),
    k("auth.max_failures_per_address", Ty::Integer { min: 1, max: 1_000_000 }, "20", "`local`: after this many failed logins from one client address within `failure_window`, every attempt from there gets 429 with `Retry-After`. Behind `trusted_proxies` the address is the forwarded client's; an IPv6 address counts by its /64."),
    k("auth.failure_window", Dur, r#""15m""#, "`local`: how long failures count, from the first counted one; when it has passed the name or address may try again."),
    k("auth.oidc_issuer", Str, r#""""#, "`oidc` (required there): the issuer URL; discovery at `{issuer}/.well-known/openid-configuration`, whose `issuer` must match exactly. `https`, or `http` only on a loopback host (127.0.0.0/8, `::1`, `localhost`)."),
    k("auth.oidc_client_id", Str, r#""""#, "`oidc` (required there): the client id registered at the issuer, with the redirect URI `https://<host>/.cloakroom/callback`; ID tokens must name it in `aud`."),
    k("auth.oidc_client_secret_env", Str, r#""CLOAKROOM_OIDC_CLIENT_SECRET""#, "`oidc`: the env var holding the client secret (sent as HTTP Basic to the token endpoint; never in the file, never logged); unset or empty: a public client (PKCE only)."),
    k("auth.oidc_scopes", List, r#"["openid", "email", "profile"]"#, "`oidc`: scopes asked for (`openid` is added when missing)."),
    k("auth.oidc_groups_claim", Str, r#""groups""#, "`oidc`: the ID token claim holding the user's groups (an array of strings, or one string). The user is `sub`; `email` comes from the `email` claim."),
    k("identity.user_header", Str, r#""X-Forwarded-User""#, "Request header carrying the user to the upstream (always stripped from clients)."),
    k("identity.email_header", Str, r#""X-Forwarded-Email""#, "Request header carrying the user's email."),
    k("identity.groups_header", Str, r#""X-Forwarded-Groups""#, "Request header carrying the user's groups, comma-separated."),
    k("identity.strip_from_client", List, "[]", "More header names always removed from client requests."),
    k("identity.assertion_header", Str, r#""""#, "SPEC §8.6a: when set (e.g. `\"X-Cloakroom-Assertion\"`), every request forwarded for a session with an identity carries a compact JWT of it (`iss` = `https://` + the host the client used, `sub`, `email`, `groups`, `iat`, `exp` = `iat` + 60 s, `aud` = the route's `upstream`), verifiable with the keys at `GET /.cloakroom/jwks.json`; always stripped from client requests; `\"\"` = off."),
    k("identity.assertion_algorithm", Ty::Choice(&["ES256", "EdDSA"]), r#""ES256""#, "The assertion's signature algorithm, fixed here (never read from a token). The key is generated on first start as `assertion-es256.key` or `assertion-eddsa.key` (PKCS#8 PEM, mode 0600) in the directory of `session.secret_file`; its `kid` is the RFC 7638 thumbprint."),
    k("csrf.mode", Ty::Choice(&["origin", "off"]), r#""origin""#, "`origin`: unsafe requests must come from the same origin or `allowed_origins`."),
    k("csrf.allowed_origins", List, "[]", "Extra origins (`scheme://host[:port]`) allowed to send unsafe requests."),
    k("route.host", Str, r#""""#, "`\"\"` matches any host; else exact or `*.example.com` (a port in `Host` is ignored)."),
    k("route.path_prefix", Str, r#""/""#, "Matched on segment boundaries, not stripped."),
    req("route.upstream", Str, "`http://host:port` (plain HTTP/1.1, no path)."),
    k("route.auth", Ty::Choice(&["required", "optional", "none"]), r#""none""#, "Whether a session with an identity is needed."),
    k("route.public_paths", List, "[]", "Prefixes exempt from `auth = \"required\"`."),
    k("route.cookies", Ty::Choice(&["jar", "passthrough"]), r#""jar""#, "`jar`: the upstream's cookies stay server-side; `passthrough`: they go to the browser."),
    k("route.passthrough_cookies", List, "[]", "Jar mode: these cookie names still go to the browser (rewritten)."),
    k("route.script_readable_cookies", List, "[]", "Rewritten cookies that keep no `HttpOnly` (e.g. a JS-read CSRF token)."),
    k("route.preserve_host", Bool, "false", "`true`: forward the client's `Host`; `false`: the upstream's authority."),
    k("route.rewrite_location", Bool, "true", "Absolute `Location`/`Content-Location` URLs naming the upstream (over `http:` or `https:`; or this host over `http:`) point back at `https://` + the client's host."),
    k("route.translate_origin", Bool, "true", "A same-origin `Origin`/`Referer` is sent upstream as `http://` + the `Host` the upstream receives."),
];

/// The tables of `proxy.toml`, as key prefixes, in file order; `tls.sni`
/// and `route` are arrays of tables.
pub const SECTIONS: [&str; 9] = [
    "server", "tls", "tls.sni", "session", "store", "auth", "identity", "csrf", "route",
];

fn section_of(key: &str) -> &str {
    &key[..key.rfind('.').unwrap_or(0)]
}

fn leaf(key: &str) -> &str {
    &key[key.rfind('.').map_or(0, |i| i + 1)..]
}

fn type_text(ty: Ty) -> String {
    match ty {
        Ty::String => "string".into(),
        Ty::Bool => "boolean".into(),
        Ty::Integer { min, max } => format!("integer ({min}–{max})"),
        Ty::Duration => "duration".into(),
        Ty::StringList => "array of strings".into(),
        Ty::Choice(c) => c
            .iter()
            .map(|v| format!("`\"{v}\"`"))
            .collect::<Vec<_>>()
            .join(" \\| "),
    }
}

/// `docs/configuration.md`.
pub fn markdown() -> String {
    let mut out = String::from(
        "<!-- Generated by `cloakroom config-reference` from src/config/reference.rs; \
do not edit. Regenerate: CLOAKROOM_BLESS=1 cargo test --test config_reference -->\n\n\
# proxy.toml reference\n\n\
Every key is optional unless marked required. Durations are strings like \
`\"500ms\"`, `\"90s\"`, `\"30m\"`, `\"12h\"`, `\"7d\"`. Unknown keys are errors. \
Relative paths resolve against the config file's directory.\n\n\
**SIGHUP** says whether a reload (SIGHUP or `POST /reload`) applies a changed \
value; *restart* keys are read once at start, and a reload that changes one \
logs a warning naming it.\n\n\
A JSON Schema for editors is in [`proxy.schema.json`](proxy.schema.json).\n",
    );
    for section in SECTIONS {
        let heading = match section {
            "tls.sni" | "route" => format!("[[{section}]]"),
            s => format!("[{s}]"),
        };
        out.push_str(&format!(
            "\n## `{heading}`\n\n| key | type | default | SIGHUP | description |\n| --- | --- | --- | --- | --- |\n"
        ));
        for d in KEYS.iter().filter(|d| section_of(d.key) == section) {
            let default = match d.default {
                Some(v) => format!("`{v}`"),
                None => "required".into(),
            };
            let reload = if d.reloadable() { "applies" } else { "restart" };
            out.push_str(&format!(
                "| `{}` | {} | {default} | {reload} | {} |\n",
                leaf(d.key),
                type_text(d.ty),
                d.doc
            ));
        }
    }
    out
}

/// A default's TOML literal as JSON.
fn default_value(literal: &str) -> Value {
    let table: toml::Table = toml::from_str(&format!("v = {literal}"))
        .expect("KEYS defaults are TOML literals (tested)");
    serde_json::to_value(&table["v"]).expect("a TOML value is JSON")
}

fn key_schema(d: &KeyDoc) -> Value {
    let mut s = match d.ty {
        Ty::String => json!({"type": "string"}),
        Ty::Duration => json!({"type": "string", "pattern": "^\\s*[0-9]"}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Integer { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        Ty::StringList => json!({"type": "array", "items": {"type": "string"}}),
        Ty::Choice(c) => json!({"type": "string", "enum": c}),
    };
    let reload = if d.reloadable() {
        "A reload (SIGHUP) applies it."
    } else {
        "Read at start: a change needs a restart."
    };
    s["description"] = format!("{} {reload}", d.doc).into();
    if let Some(v) = d.default {
        s["default"] = default_value(v);
    }
    s
}

fn table_schema(section: &str) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for d in KEYS.iter().filter(|d| section_of(d.key) == section) {
        props.insert(leaf(d.key).into(), key_schema(d));
        if d.required && section != "auth" {
            required.push(leaf(d.key));
        }
    }
    let mut s = json!({"type": "object", "additionalProperties": false, "properties": props});
    if !required.is_empty() {
        s["required"] = json!(required);
    }
    s
}

/// `docs/proxy.schema.json`.
pub fn json_schema() -> String {
    let mut tls = table_schema("tls");
    tls["properties"]["sni"] = json!({
        "type": "array",
        "description": "Extra certificates, chosen by SNI.",
        "items": table_schema("tls.sni"),
    });
    let mut props = Map::new();
    for section in ["server", "session", "store", "auth", "identity", "csrf"] {
        props.insert(section.into(), table_schema(section));
    }
    props.insert("tls".into(), tls);
    props.insert(
        "route".into(),
        json!({
            "type": "array",
            "minItems": 1,
            "description": "At least one route is required.",
            "items": table_schema("route"),
        }),
    );
    let schema = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "cloakroom proxy.toml",
        "description": "Generated by `cloakroom config-reference --schema`; see docs/configuration.md.",
        "type": "object",
        "additionalProperties": false,
        "required": ["route"],
        "properties": props,
    });
    let mut text = serde_json::to_string_pretty(&schema).expect("a JSON value serialises");
    text.push('\n');
    text
}

#[cfg(test)]
#[path = "reference_tests.rs"]
mod tests;
