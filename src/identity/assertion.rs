//! The signed identity assertion (SPEC §8.6a): a compact JWS (RFC 7515)
//! of the session's identity, sent upstream in `identity.assertion_header`,
//! and the JWKS (RFC 7517) that verifies it, served at
//! `GET /.cloakroom/jwks.json`.
//!
//! Contract:
//! - The algorithm is the configured one (`ES256` or `EdDSA`); the JOSE
//!   header is made once at load, so nothing a client sends can choose it.
//! - Claims: `iss` (`https://` + the host the client used: the origin whose
//!   `/.cloakroom/jwks.json` holds the key), `sub` (the user), `email` (when
//!   known), `groups`, `iat`, `exp` = `iat` + 60 s and `aud` = the route's
//!   upstream URL.
//! - The key is a PKCS#8 PEM file in the data directory, created with mode
//!   0600 on first start and parsed once per load (start and reload), never
//!   per request; its `kid` is its RFC 7638 thumbprint.
//!
//! Signing is our own token with `ring` directly: an encoder of a fixed
//! header and serde-made claims has nothing to validate. Foreign tokens
//! (OIDC ID tokens) are verified by the `jsonwebtoken` crate instead.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use http::header::{HeaderName, HeaderValue};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde::Serialize;

use crate::config::{AssertionAlgorithm, Identity as IdentityConfig};
use crate::session::{Identity, SessionKey};

/// How long an assertion is valid after it is issued (SPEC: at most 60 s).
pub const LIFETIME_SECS: u64 = 60;
/// How long one connection reuses an assertion ([`ConnCache`]): a reused
/// token still has at least 50 s to live when the upstream reads it.
pub const REUSE_SECS: u64 = 10;

/// The last assertion made on one client connection. A keep-alive
/// connection sends request after request for the same session and route;
/// a repeat within [`REUSE_SECS`] reuses the token instead of signing again
/// (one ECDSA P-256 signature costs several times the rest of the
/// session work of a request: docs/performance.md).
///
/// Sound because an identity never changes under a session key: a login
/// or a change of identity or groups rotates the session (SPEC §4.6). The
/// key, the audience and the issuer are compared too, so a reload that
/// changes any of them signs afresh. One entry per connection: bounded.
#[derive(Default)]
pub struct ConnCache(Mutex<Option<Cached>>);

impl std::fmt::Debug for ConnCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A token is a credential for the upstream: never printed.
        f.write_str("ConnCache(..)")
    }
}

struct Cached {
    session: SessionKey,
    kid: String,
    aud: String,
    host: String,
    issued: u64,
    token: HeaderValue,
}

#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error("cannot read or create the assertion key {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the assertion key {path} is not a PKCS#8 PEM private key: {detail}")]
    Pem { path: PathBuf, detail: String },
    #[error("the assertion key {path} does not hold an {alg} key (identity.assertion_algorithm): {detail}")]
    WrongKey {
        path: PathBuf,
        alg: &'static str,
        detail: String,
    },
    #[error("the system random generator failed")]
    Random,
}

enum Pair {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// The loaded signing key with everything derived from it once.
pub struct Assertion {
    pub header: HeaderName,
    pair: Pair,
    rng: SystemRandom,
    /// The base64url JOSE header, followed by `.`.
    jose: String,
    kid: String,
    jwks: bytes::Bytes,
}

impl std::fmt::Debug for Assertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assertion")
            .field("header", &self.header)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    groups: &'a [String],
    iat: u64,
    exp: u64,
    aud: &'a str,
}

impl Assertion {
    /// Loads (or first creates) the configured key; `None` when
    /// `assertion_header` is off. Blocks on the key file: call it where
    /// the config is loaded, not per request.
    pub fn load(cfg: &IdentityConfig) -> Result<Option<Assertion>, AssertionError> {
        let Some(header) = cfg.assertion_header.clone() else {
            return Ok(None);
        };
        let alg = cfg.assertion_algorithm;
        let der = load_or_create(&cfg.assertion_key, alg)?;
        Assertion::from_pkcs8(header, alg, &der, &cfg.assertion_key).map(Some)
    }

    fn from_pkcs8(
        header: HeaderName,
        alg: AssertionAlgorithm,
        der: &[u8],
        path: &Path,
    ) -> Result<Assertion, AssertionError> {
        let rng = SystemRandom::new();
        let wrong = |e: ring::error::KeyRejected| AssertionError::WrongKey {
            path: path.to_path_buf(),
            alg: alg.as_str(),
            detail: e.to_string(),
        };
        let pair = match alg {
            AssertionAlgorithm::Es256 => Pair::Es256(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                    .map_err(wrong)?,
            ),
            // PKCS#8 v1 (OpenSSL's) has no public key to cross-check; ring
            // derives it from the seed.
            AssertionAlgorithm::EdDsa => {
                Pair::EdDsa(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(wrong)?)
            }
        };
        let jwk = public_jwk(&pair);
        let kid = thumbprint(&jwk);
        let mut key = jwk;
        key["kid"] = kid.clone().into();
        key["alg"] = alg.as_str().into();
        key["use"] = "sig".into();
        let jwks = serde_json::json!({ "keys": [key] }).to_string();
        let jose = serde_json::json!({"alg": alg.as_str(), "typ": "JWT", "kid": kid}).to_string();
        let mut jose = B64.encode(jose);
        jose.push('.');
        Ok(Assertion {
            header,
            pair,
            rng,
            jose,
            kid,
            jwks: jwks.into(),
        })
    }

    /// The public key set, as served at `/.cloakroom/jwks.json`.
    pub fn jwks(&self) -> bytes::Bytes {
        self.jwks.clone()
    }

    /// [`Assertion::token`] for the session `session` reached at `host`
    /// (the issuer is `https://` + `host`), reusing the connection's last
    /// token when it was made for the same session, key, audience and host
    /// less than [`REUSE_SECS`] ago.
    pub fn token_for(
        &self,
        cache: &ConnCache,
        session: &SessionKey,
        identity: &Identity,
        host: &str,
        aud: &str,
        now: u64,
    ) -> Result<HeaderValue, AssertionError> {
        let mut kept = cache.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = kept.as_ref().filter(|c| {
            c.session == *session
                && now.saturating_sub(c.issued) < REUSE_SECS
                && c.kid == self.kid
                && c.aud == aud
                && c.host == host
        }) {
            return Ok(c.token.clone());
        }
        let token = self.token(identity, &format!("https://{host}"), aud, now)?;
        *kept = Some(Cached {
            session: *session,
            kid: self.kid.clone(),
            aud: aud.to_string(),
            host: host.to_string(),
            issued: now,
            token: token.clone(),
        });
        Ok(token)
    }

    /// A signed assertion of `identity` for the upstream `aud`, issued by
    /// `iss` at `now` (unix seconds).
    pub fn token(
        &self,
        identity: &Identity,
        iss: &str,
        aud: &str,
        now: u64,
    ) -> Result<HeaderValue, AssertionError> {
        let claims = Claims {
            iss,
            sub: &identity.user,
            email: identity.email.as_deref(),
            groups: &identity.groups,
            iat: now,
            exp: now + LIFETIME_SECS,
            aud,
        };
        // Serialising borrowed strings into a Vec cannot fail.
        let json = serde_json::to_vec(&claims).map_err(|_| AssertionError::Random)?;
        let mut out = String::with_capacity(self.jose.len() + json.len() * 4 / 3 + 100);
        out.push_str(&self.jose);
        B64.encode_string(&json, &mut out);
        let sig = match &self.pair {
            Pair::Es256(k) => {
                let s = k
                    .sign(&self.rng, out.as_bytes())
                    .map_err(|_| AssertionError::Random)?;
                s.as_ref().to_vec()
            }
            Pair::EdDsa(k) => k.sign(out.as_bytes()).as_ref().to_vec(),
        };
        out.push('.');
        B64.encode_string(&sig, &mut out);
        // base64url and `.` only: always a valid header value.
        HeaderValue::from_str(&out).map_err(|_| AssertionError::Random)
    }
}

/// The public JWK members RFC 7638 hashes (and nothing else).
fn public_jwk(pair: &Pair) -> serde_json::Value {
    match pair {
        Pair::Es256(k) => {
            // SEC 1 uncompressed point: 0x04 || x (32) || y (32).
            let p = k.public_key().as_ref();
            serde_json::json!({
                "crv": "P-256", "kty": "EC",
                "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..65]),
            })
        }
        Pair::EdDsa(k) => serde_json::json!({
            "crv": "Ed25519", "kty": "OKP", "x": B64.encode(k.public_key().as_ref()),
        }),
    }
}

/// RFC 7638: SHA-256 over the required members, lexically ordered, no
/// whitespace (serde_json's `Map` is ordered by key), base64url.
fn thumbprint(jwk: &serde_json::Value) -> String {
    let canonical = jwk.to_string();
    B64.encode(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    ))
}

/// Reads the PKCS#8 PEM at `path`, or creates it (mode 0600) with a fresh
/// key for `alg` when missing.
fn load_or_create(path: &Path, alg: AssertionAlgorithm) -> Result<Vec<u8>, AssertionError> {
    let file_err = |source| AssertionError::File {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read(path) {
        Ok(pem) => PrivatePkcs8KeyDer::from_pem_slice(&pem)
            .map(|k| k.secret_pkcs8_der().to_vec())
            .map_err(|e| AssertionError::Pem {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let rng = SystemRandom::new();
            let doc = match alg {
                AssertionAlgorithm::Es256 => {
                    EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                }
                AssertionAlgorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng),
            }
            .map_err(|_| AssertionError::Random)?;
            crate::private_file::create(path, pem(doc.as_ref()).as_bytes()).map_err(file_err)?;
            tracing::warn!(path = %path.display(), alg = alg.as_str(), "generated a new identity assertion signing key");
            Ok(doc.as_ref().to_vec())
        }
        Err(e) => Err(file_err(e)),
    }
}

/// RFC 7468 `PRIVATE KEY` PEM, 64 columns.
fn pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            user: "alice".into(),
            email: Some("a@example.com".into()),
            groups: vec!["admin".into(), "dev".into()],
        }
    }

    fn loaded(alg: AssertionAlgorithm, dir: &Path) -> Assertion {
        let path = dir.join("k.pem");
        let der = load_or_create(&path, alg).unwrap();
        Assertion::from_pkcs8(HeaderName::from_static("x-a"), alg, &der, &path).unwrap()
    }

    fn parts(token: &HeaderValue) -> Vec<Vec<u8>> {
        token
            .to_str()
            .unwrap()
            .split('.')
            .map(|p| B64.decode(p).unwrap())
            .collect()
    }

    #[test]
    fn s8_6a_a_connection_reuses_its_token_briefly_and_per_session() {
        let dir = tempfile::tempdir().unwrap();
        let a = loaded(AssertionAlgorithm::Es256, dir.path());
        let cache = ConnCache::default();
        let (s1, s2) = (SessionKey([1; 32]), SessionKey([2; 32]));
        let t = |s: &SessionKey, host: &str, aud: &str, now: u64| {
            a.token_for(&cache, s, &identity(), host, aud, now).unwrap()
        };
        let first = t(&s1, "h", "http://u", 100);
        assert_eq!(t(&s1, "h", "http://u", 109), first, "reused");
        assert_ne!(
            t(&s1, "h", "http://u", 110),
            first,
            "signed afresh after 10 s"
        );
        let again = t(&s1, "h", "http://u", 110);
        for other in [
            t(&s2, "h", "http://u", 110),
            t(&s1, "h2", "http://u", 110),
            t(&s1, "h", "http://v", 110),
        ] {
            assert_ne!(other, again);
        }
        // One entry: the last one made (for audience v at 110) is reused.
        let claims = parts(&t(&s1, "h", "http://v", 115));
        let claims: serde_json::Value = serde_json::from_slice(&claims[1]).unwrap();
        assert_eq!(claims["aud"], "http://v");
        assert_eq!(claims["iat"], 110);
    }

    #[test]
    fn rfc8037_a3_ed25519_thumbprint() {
        let jwk = serde_json::json!({"crv": "Ed25519", "kty": "OKP", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        assert_eq!(
            thumbprint(&jwk),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn s8_6a_es256_token_verifies_with_the_published_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = loaded(AssertionAlgorithm::Es256, dir.path());
        let t = a
            .token(&identity(), "https://p.test", "http://127.0.0.1:5000", 1000)
            .unwrap();
        let p = parts(&t);
        let header: serde_json::Value = serde_json::from_slice(&p[0]).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], a.kid);
        let claims: serde_json::Value = serde_json::from_slice(&p[1]).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], "http://127.0.0.1:5000");
        assert_eq!(claims["exp"], 1060);
        assert_eq!(claims["groups"], serde_json::json!(["admin", "dev"]));
        let jwks: serde_json::Value = serde_json::from_slice(&a.jwks()).unwrap();
        let k = &jwks["keys"][0];
        let mut point = vec![4u8];
        point.extend(B64.decode(k["x"].as_str().unwrap()).unwrap());
        point.extend(B64.decode(k["y"].as_str().unwrap()).unwrap());
        let signed = t.to_str().unwrap().rsplit_once('.').unwrap().0;
        let key = signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point);
        key.verify(signed.as_bytes(), &p[2]).unwrap();
        assert!(key.verify(b"other", &p[2]).is_err());
    }

    #[test]
    fn s8_6a_eddsa_key_file_is_0600_and_reloads_to_the_same_kid() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = loaded(AssertionAlgorithm::EdDsa, dir.path());
        let mode = std::fs::metadata(dir.path().join("k.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = loaded(AssertionAlgorithm::EdDsa, dir.path());
        assert_eq!(a.kid, b.kid);
        let t = b.token(&identity(), "https://p", "http://u", 5).unwrap();
        let p = parts(&t);
        let jwks: serde_json::Value = serde_json::from_slice(&a.jwks()).unwrap();
        let x = B64.decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap();
        let signed = t.to_str().unwrap().rsplit_once('.').unwrap().0;
        signature::UnparsedPublicKey::new(&signature::ED25519, &x)
            .verify(signed.as_bytes(), &p[2])
            .unwrap();
        // The other algorithm's loader refuses this file.
        let der = load_or_create(&dir.path().join("k.pem"), AssertionAlgorithm::Es256).unwrap();
        let e = Assertion::from_pkcs8(
            HeaderName::from_static("x-a"),
            AssertionAlgorithm::Es256,
            &der,
            Path::new("k.pem"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not hold an ES256 key"), "{e}");
    }
}
