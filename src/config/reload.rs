//! What a reload (SIGHUP, `POST /reload`) cannot apply. Most of the config
//! is rebuilt into a new state and swapped in, and `session.max_sessions` is
//! handed to the running store; the keys below are read once at start
//! (bound listeners, the connection semaphore, the opened store, the loaded
//! session keys) and take effect only at the next restart.

use super::Config;

/// Every key [`restart_required`] can name, in file order: what a reload
/// cannot apply (the configuration reference marks them *restart*).
pub const READ_AT_START: [&str; 13] = [
    "server.listen",
    "server.redirect_http",
    "server.admin_listen",
    "server.max_connections",
    "session.secret_env",
    "session.fallback_secrets_env",
    "session.secret_file",
    "store.backend",
    "store.path",
    "store.redis_url",
    "store.redis_cluster",
    "store.key_prefix",
    "store.redis_password_env",
];

/// The keys whose value differs between the running and the new config but
/// which a reload cannot apply, in the order `proxy.toml` lists them; empty
/// when the whole new config applies.
///
/// Read once at start: `server.listen`, `redirect_http` and `admin_listen`
/// (bound in `app::Listeners::bind`), `server.max_connections` (the
/// semaphore made in `app::serve`), `session.secret_env`,
/// `fallback_secrets_env` and `secret_file` (`Keyring::load`) and every
/// `[store]` key (`Store::open`). The other `[session]` keys are read per
/// request from the swapped config.
pub fn restart_required(running: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (running, new);
    let (sa, sb) = (&a.session, &b.session);
    let (ka, kb) = (&a.store, &b.store);
    [
        ("server.listen", a.server.listen != b.server.listen),
        (
            "server.redirect_http",
            a.server.redirect_http != b.server.redirect_http,
        ),
        (
            "server.admin_listen",
            a.server.admin_listen != b.server.admin_listen,
        ),
        (
            "server.max_connections",
            a.server.max_connections != b.server.max_connections,
        ),
        ("session.secret_env", sa.secret_env != sb.secret_env),
        (
            "session.fallback_secrets_env",
            sa.fallback_secrets_env != sb.fallback_secrets_env,
        ),
        ("session.secret_file", sa.secret_file != sb.secret_file),
        ("store.backend", ka.backend != kb.backend),
        ("store.path", ka.path != kb.path),
        ("store.redis_url", ka.redis_url != kb.redis_url),
        ("store.redis_cluster", ka.redis_cluster != kb.redis_cluster),
        ("store.key_prefix", ka.key_prefix != kb.key_prefix),
        (
            "store.redis_password_env",
            ka.redis_password_env != kb.redis_password_env,
        ),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::*;
    use crate::config::Backend;

    fn base() -> Config {
        let text = "[[route]]\nupstream = \"http://127.0.0.1:5000\"\n";
        Config::parse(Path::new("/x/proxy.toml"), text).unwrap()
    }

    #[test]
    fn same_config_needs_no_restart() {
        assert!(restart_required(&base(), &base()).is_empty());
    }

    /// A key and an edit that changes only it.
    type Change = (&'static str, fn(&mut Config));

    #[test]
    fn each_key_read_at_start_is_named_alone() {
        let changes: [Change; 13] = [
            ("server.listen", |c| c.server.listen.set_port(1)),
            ("server.redirect_http", |c| {
                c.server.redirect_http = Some("127.0.0.1:8080".parse().unwrap())
            }),
            ("server.admin_listen", |c| c.server.admin_listen = None),
            ("server.max_connections", |c| c.server.max_connections = 5),
            ("session.secret_env", |c| c.session.secret_env = "K".into()),
            ("session.fallback_secrets_env", |c| {
                c.session.fallback_secrets_env = "F".into()
            }),
            ("session.secret_file", |c| {
                c.session.secret_file = PathBuf::from("/k")
            }),
            ("store.backend", |c| c.store.backend = Backend::Redis),
            ("store.path", |c| c.store.path = PathBuf::from("/s.db")),
            ("store.redis_url", |c| {
                c.store.redis_url = "redis://r".into()
            }),
            ("store.redis_cluster", |c| {
                c.store.redis_cluster = vec!["redis://r".into()]
            }),
            ("store.key_prefix", |c| c.store.key_prefix = "p:".into()),
            ("store.redis_password_env", |c| {
                c.store.redis_password_env = "P".into()
            }),
        ];
        let keys: Vec<&str> = changes.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, READ_AT_START, "READ_AT_START lists what is named");
        for (key, change) in changes {
            let mut new = base();
            change(&mut new);
            assert_eq!(restart_required(&base(), &new), [key], "{key}");
        }
    }

    #[test]
    fn what_a_reload_rebuilds_is_not_named() {
        let mut new = base();
        new.server.shutdown_grace = Duration::from_secs(1);
        new.server.request_header_timeout = Duration::from_secs(1);
        new.server.hsts = None;
        new.session.cookie_name = "other".into();
        new.session.idle_timeout = Duration::from_secs(60);
        new.session.max_sessions = 5;
        new.tls.cert = PathBuf::from("/other.pem");
        new.routes.clear();
        assert!(restart_required(&base(), &new).is_empty());
    }

    #[test]
    fn several_changes_are_named_in_file_order() {
        let mut new = base();
        new.store.key_prefix = "p:".into();
        new.server.listen.set_port(1);
        new.session.secret_file = PathBuf::from("/k");
        assert_eq!(
            restart_required(&base(), &new),
            ["server.listen", "session.secret_file", "store.key_prefix"]
        );
    }
}
