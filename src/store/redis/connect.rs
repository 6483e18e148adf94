//! Reaching Redis: where (`redis_url`, or the `redis_cluster` seeds), with
//! which credentials (`redis_password_env` over the URL's), and within
//! which time limits. One multiplexed connection per process — a
//! [`ConnectionManager`] for a standalone server, the async cluster client
//! for a Cluster — shared by every request; both reconnect in the
//! background after an outage. URLs are redacted wherever they are shown:
//! a password never reaches a log line or an error.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Client, FromRedisValue, IntoConnectionInfo, RedisResult};

use crate::config::{redact_url as redact, Store as StoreConfig};

/// How long one connection attempt, and one answer, may take before the
/// call fails and the request that made it gets 503 (SPEC §7.5).
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// Where and how to reach Redis; `Debug` shows redacted URLs only.
#[derive(Clone)]
pub struct RedisOptions {
    /// One URL for a standalone server, or a Cluster's seed URLs.
    pub urls: Vec<String>,
    pub cluster: bool,
    pub key_prefix: String,
    /// `password` or `user:password`, used instead of the URL's.
    pub password: Option<String>,
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redact(u)).collect();
        f.debug_struct("RedisOptions")
            .field("urls", &urls)
            .field("cluster", &self.cluster)
            .field("key_prefix", &self.key_prefix)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl RedisOptions {
    /// The `[store]` keys, and the password from the environment when
    /// `redis_password_env` names a variable that is set.
    pub fn from_config(store: &StoreConfig) -> Self {
        let cluster = !store.redis_cluster.is_empty();
        RedisOptions {
            urls: if cluster {
                store.redis_cluster.clone()
            } else {
                vec![store.redis_url.clone()]
            },
            cluster,
            key_prefix: store.key_prefix.clone(),
            password: std::env::var(&store.redis_password_env)
                .ok()
                .filter(|p| !p.is_empty()),
        }
    }

    /// `(user, password)` from the environment's value: the first `:`
    /// separates an ACL user from the password.
    fn credentials(&self) -> Option<(Option<&str>, &str)> {
        let p = self.password.as_deref()?;
        Some(match p.split_once(':') {
            Some((user, password)) if !user.is_empty() => (Some(user), password),
            _ => (None, p),
        })
    }
}

/// Why the store could not be set up. Names the redacted URL, never the
/// password.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the Redis store at {url}")]
pub struct RedisOpenError {
    url: String,
    #[source]
    source: redis::RedisError,
}

/// The process's connection to Redis; cloned per call (cheap handles over
/// one multiplexed connection each).
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Sets up the connection without waiting for Redis: a proxy starts
    /// while Redis is down, answers 503 where a session is needed, and
    /// recovers when Redis returns.
    pub fn open(opts: &RedisOptions) -> Result<Conn, RedisOpenError> {
        let shown = || {
            opts.urls
                .iter()
                .map(|u| redact(u))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let fail = |source| RedisOpenError {
            url: shown(),
            source,
        };
        let creds = opts.credentials();
        if opts.cluster {
            let mut b = ClusterClientBuilder::new(opts.urls.iter().map(String::as_str))
                .connection_timeout(TIMEOUT)
                .response_timeout(TIMEOUT);
            if let Some((user, password)) = creds {
                b = b.password(password);
                if let Some(user) = user {
                    b = b.username(user);
                }
            }
            let client = b.build().map_err(fail)?;
            let config = ClusterConfig::new()
                .set_connection_timeout(TIMEOUT)
                .set_response_timeout(TIMEOUT);
            return Ok(Conn::Cluster(
                client.get_pending_async_connection_with_config(config),
            ));
        }
        let mut info = opts.urls[0].as_str().into_connection_info().map_err(fail)?;
        if let Some((user, password)) = creds {
            let mut settings = info.redis_settings().clone().set_password(password);
            if let Some(user) = user {
                settings = settings.set_username(user);
            }
            info = info.set_redis_settings(settings);
        }
        let client = Client::open(info).map_err(fail)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_max_delay(TIMEOUT);
        ConnectionManager::new_lazy_with_config(client, config)
            .map(Conn::Single)
            .map_err(fail)
    }

    pub async fn invoke<T: FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        match self {
            Conn::Single(c) => inv.invoke_async(&mut c.clone()).await,
            Conn::Cluster(c) => inv.invoke_async(&mut c.clone()).await,
        }
    }

    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(&mut c.clone()).await,
            Conn::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_password_or_acl_user_and_password() {
        let with = |p: Option<&str>| RedisOptions {
            urls: vec!["redis://u:url-pass@h".into()],
            cluster: false,
            key_prefix: "p:".into(),
            password: p.map(String::from),
        };
        assert_eq!(with(None).credentials(), None);
        assert_eq!(with(Some("pw")).credentials(), Some((None, "pw")));
        assert_eq!(
            with(Some("app:pw:x")).credentials(),
            Some((Some("app"), "pw:x"))
        );
        assert_eq!(with(Some(":pw")).credentials(), Some((None, ":pw")));
        let shown = format!("{:?}", with(Some("pw")));
        assert!(
            !shown.contains("pw\"") && !shown.contains("url-pass"),
            "{shown}"
        );
    }
}
