//! The OpenID Connect relying party (SPEC §8.6): discovery, the pending
//! logins, the code exchange and ID token validation. The `/.cloakroom/`
//! endpoints that drive it are in [`crate::auth`].
//!
//! Contract:
//! - Discovery is `{issuer}/.well-known/openid-configuration`, cached for
//!   an hour; its `issuer` must equal the configured one exactly.
//! - A login start makes `state`, `nonce` and a PKCE S256 verifier, kept
//!   server-side ([`pending`]) and bound to the browser's session; the
//!   callback takes them once, whatever happens next.
//! - The ID token is verified by `jsonwebtoken` against the issuer's JWKS:
//!   the key is chosen by `kid` (an unknown `kid` refetches the JWKS, at
//!   most every 10 s), the algorithm is the key's (never `none`, never
//!   HMAC) and must be the one the token's header names; then `iss`, `aud`
//!   (and `azp` when present), `exp` (60 s leeway), and `nonce`.

pub mod http;
pub mod pending;
mod token;

use token::Keys;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::http::header::{self, HeaderValue};
use ::http::{Method, StatusCode};
use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use serde::Deserialize;

use crate::config::Auth;
use crate::session::Identity;
use crate::wire::percent::percent_encode;
pub use pending::{Pending, PendingLogins};

/// How long discovery is trusted before it is fetched again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// An unknown `kid` refetches the JWKS at most this often.
const JWKS_REFETCH: Duration = Duration::from_secs(10);
/// Clock skew allowed on `exp` (and `iat`/`nbf`).
const LEEWAY_SECS: u64 = 60;
/// The most groups a login may carry.
const MAX_GROUPS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("request to {url} failed: {detail}")]
    Http { url: String, detail: String },
    #[error("{what} from the issuer is unusable: {detail}")]
    BadDocument { what: &'static str, detail: String },
    #[error("the issuer refused the code: HTTP {status}")]
    TokenRefused { status: StatusCode },
    #[error("the ID token is invalid: {0}")]
    InvalidToken(String),
    #[error("the ID token's identity is refused: {0}")]
    InvalidIdentity(&'static str),
    #[error("TLS client configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the system random generator failed")]
    Random,
}

/// What discovery says (the fields cloakroom uses).
#[derive(Debug, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

struct Discovered {
    at: Instant,
    meta: Arc<Metadata>,
}

/// The client secret; its `Debug` prints nothing.
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The relying party for one configured issuer; kept across reloads that
/// leave its settings unchanged ([`RelyingParty::same_settings`]).
pub struct RelyingParty {
    pub issuer: String,
    pub client_id: String,
    secret: Option<Secret>,
    scopes: String,
    groups_claim: String,
    tls: Arc<rustls::ClientConfig>,
    discovered: ArcSwapOption<Discovered>,
    keys: Mutex<Keys>,
    pub pending: PendingLogins,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl RelyingParty {
    /// From `[auth]`; the client secret is read from its env var now (an
    /// unset or empty variable makes a public client, PKCE only).
    pub fn new(auth: &Auth) -> Result<RelyingParty, OidcError> {
        let secret = std::env::var(&auth.oidc_client_secret_env)
            .ok()
            .filter(|s| !s.is_empty())
            .map(Secret);
        Ok(RelyingParty {
            issuer: auth.oidc_issuer.clone(),
            client_id: auth.oidc_client_id.clone(),
            secret,
            scopes: scopes(auth),
            groups_claim: auth.oidc_groups_claim.clone(),
            tls: http::tls_config()?,
            discovered: ArcSwapOption::empty(),
            keys: Mutex::new(Keys::default()),
            pending: PendingLogins::default(),
        })
    }

    /// Whether `auth` would build the same relying party (a reload then
    /// keeps this one, with its pending logins and caches).
    pub fn same_settings(&self, auth: &Auth) -> bool {
        let secret = std::env::var(&auth.oidc_client_secret_env)
            .ok()
            .filter(|s| !s.is_empty());
        self.issuer == auth.oidc_issuer
            && self.client_id == auth.oidc_client_id
            && self.secret.as_ref().map(|s| &s.0) == secret.as_ref()
            && self.groups_claim == auth.oidc_groups_claim
            && scopes(auth) == self.scopes
    }

    /// The issuer's metadata, from the cache or discovery.
    pub async fn metadata(&self) -> Result<Arc<Metadata>, OidcError> {
        if let Some(d) = self.discovered.load().as_ref() {
            if d.at.elapsed() < DISCOVERY_TTL {
                return Ok(d.meta.clone());
            }
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let meta: Metadata = self.get_json(&url, "discovery").await?;
        if meta.issuer != self.issuer {
            return Err(OidcError::BadDocument {
                what: "discovery",
                detail: format!(
                    "issuer {:?} is not the configured {:?}",
                    meta.issuer, self.issuer
                ),
            });
        }
        let meta = Arc::new(meta);
        self.discovered.store(Some(Arc::new(Discovered {
            at: Instant::now(),
            meta: meta.clone(),
        })));
        Ok(meta)
    }

    /// The cached metadata, without fetching (logout uses it).
    pub fn cached_metadata(&self) -> Option<Arc<Metadata>> {
        self.discovered.load().as_ref().map(|d| d.meta.clone())
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        url: &str,
        what: &'static str,
    ) -> Result<T, OidcError> {
        let (status, body) = http::send(&self.tls, Method::GET, url, &[], None).await?;
        if status != StatusCode::OK {
            return Err(OidcError::BadDocument {
                what,
                detail: format!("HTTP {status}"),
            });
        }
        serde_json::from_slice(&body).map_err(|e| OidcError::BadDocument {
            what,
            detail: e.to_string(),
        })
    }

    /// The URL of the issuer's authorization endpoint for `login`.
    pub fn authorization_url(&self, meta: &Metadata, login: &Pending, state: &str) -> String {
        let sep = if meta.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&nonce={}&code_challenge={}&code_challenge_method=S256",
            meta.authorization_endpoint,
            percent_encode(&self.client_id),
            percent_encode(&login.redirect_uri),
            percent_encode(&self.scopes),
            state,
            login.nonce,
            login.challenge(),
        )
    }

    /// Where a logged-out browser goes: the issuer's `end_session_endpoint`
    /// (RP-initiated logout) when discovery named one.
    pub fn logout_url(&self) -> Option<String> {
        let end = self.cached_metadata()?.end_session_endpoint.clone()?;
        let sep = if end.contains('?') { '&' } else { '?' };
        Some(format!(
            "{end}{sep}client_id={}",
            percent_encode(&self.client_id)
        ))
    }

    /// Exchanges `code` and validates the ID token; the identity it names.
    pub async fn finish(&self, login: &Pending, code: &str) -> Result<Identity, OidcError> {
        let meta = self.metadata().await?;
        let id_token = self.exchange(&meta, login, code).await?;
        self.validate(&meta, &id_token, &login.nonce).await
    }

    async fn exchange(
        &self,
        meta: &Metadata,
        login: &Pending,
        code: &str,
    ) -> Result<String, OidcError> {
        let mut form = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
            percent_encode(code),
            percent_encode(&login.redirect_uri),
            login.verifier,
        );
        let mut headers = vec![(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        )];
        match &self.secret {
            // RFC 6749 §2.3.1: client_secret_basic, each part form-encoded.
            Some(secret) => {
                let pair = format!(
                    "{}:{}",
                    percent_encode(&self.client_id),
                    percent_encode(&secret.0)
                );
                let mut v = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(pair)))
                    .map_err(|_| OidcError::InvalidIdentity("client credentials"))?;
                v.set_sensitive(true);
                headers.push((header::AUTHORIZATION, v));
            }
            None => form.push_str(&format!("&client_id={}", percent_encode(&self.client_id))),
        }
        let (status, body) = http::send(
            &self.tls,
            Method::POST,
            &meta.token_endpoint,
            &headers,
            Some(form),
        )
        .await?;
        if status != StatusCode::OK {
            return Err(OidcError::TokenRefused { status });
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            id_token: String,
        }
        let t: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| OidcError::BadDocument {
                what: "the token response",
                detail: e.to_string(),
            })?;
        Ok(t.id_token)
    }
}

/// The `scope` parameter: the configured scopes, `openid` first when
/// missing.
fn scopes(auth: &Auth) -> String {
    let mut scopes = auth.oidc_scopes.clone();
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    scopes.join(" ")
}

/// 32 random bytes as base64url (43 characters): state, nonce, verifier.
pub fn random_token() -> Result<String, OidcError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| OidcError::Random)?;
    Ok(B64.encode(b))
}
