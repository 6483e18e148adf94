//! ID token validation (SPEC §8.6) with `jsonwebtoken`: the key by `kid`
//! from the issuer's JWKS (refetched on an unknown `kid`, at most every
//! [`JWKS_REFETCH`]), the algorithm the key's, then `iss`, `aud`, `azp`,
//! `exp` and `nonce`; and the identity the claims name.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{Metadata, OidcError, RelyingParty, JWKS_REFETCH, LEEWAY_SECS, MAX_GROUPS};
use crate::session::Identity;

#[derive(Default)]
pub(super) struct Keys {
    by_kid: HashMap<String, (Algorithm, Arc<DecodingKey>)>,
    /// Keys without a `kid` (usable when the token names none).
    anonymous: Vec<(Algorithm, Arc<DecodingKey>)>,
    fetched: Option<Instant>,
}

/// The claims cloakroom reads, plus the rest for the groups claim.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    email: Option<serde_json::Value>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl RelyingParty {
    pub(super) async fn validate(
        &self,
        meta: &Metadata,
        token: &str,
        nonce: &str,
    ) -> Result<Identity, OidcError> {
        let invalid = |e: jsonwebtoken::errors::Error| OidcError::InvalidToken(e.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        let (alg, key) = self.key_for(meta, header.kid.as_deref()).await?;
        if header.alg != alg {
            return Err(OidcError::InvalidToken(format!(
                "signed with {:?}, but the key is for {alg:?}",
                header.alg
            )));
        }
        let mut v = Validation::new(alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.client_id]);
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        v.leeway = LEEWAY_SECS;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &v)
            .map_err(invalid)?
            .claims;
        let nonce_ok = claims
            .nonce
            .as_deref()
            .is_some_and(|n| same_secret(n.as_bytes(), nonce.as_bytes()));
        if !nonce_ok {
            return Err(OidcError::InvalidToken(
                "nonce does not match the login".into(),
            ));
        }
        if claims.azp.as_ref().is_some_and(|a| *a != self.client_id) {
            return Err(OidcError::InvalidToken("azp names another client".into()));
        }
        self.identity(claims)
    }

    /// `sub` is the user (stable and unique per issuer, unlike
    /// `preferred_username` or `email`); `email` when it is a string;
    /// groups from the configured claim (an array of strings, or one).
    fn identity(&self, claims: Claims) -> Result<Identity, OidcError> {
        if !Identity::valid_value(&claims.sub) {
            return Err(OidcError::InvalidIdentity(
                "sub is empty, over 256 bytes or has control characters",
            ));
        }
        let email = match claims.email {
            Some(serde_json::Value::String(e)) if Identity::valid_value(&e) => Some(e),
            None | Some(serde_json::Value::Null) => None,
            Some(_) => {
                return Err(OidcError::InvalidIdentity(
                    "email is not a short printable string",
                ))
            }
        };
        let groups: Vec<String> = match claims.rest.get(&self.groups_claim) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::String(g)) => vec![g.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|g| g.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or(OidcError::InvalidIdentity("a group is not a string"))?,
            Some(_) => return Err(OidcError::InvalidIdentity("the groups claim is not a list")),
        };
        if groups.len() > MAX_GROUPS
            || groups
                .iter()
                .any(|g| !Identity::valid_value(g) || g.contains(','))
        {
            return Err(OidcError::InvalidIdentity(
                "too many groups, or one over 256 bytes, with control characters or a comma",
            ));
        }
        Ok(Identity {
            user: claims.sub,
            email,
            groups,
        })
    }

    /// The verification key named by `kid`; an unknown one refetches the
    /// JWKS (at most every [`JWKS_REFETCH`]).
    async fn key_for(
        &self,
        meta: &Metadata,
        kid: Option<&str>,
    ) -> Result<(Algorithm, Arc<DecodingKey>), OidcError> {
        if let Some(found) = self.cached_key(kid) {
            return Ok(found);
        }
        let due = {
            let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            keys.fetched.is_none_or(|t| t.elapsed() >= JWKS_REFETCH)
        };
        if due {
            let set: serde_json::Value = self.get_json(&meta.jwks_uri, "the JWKS").await?;
            let fresh = parse_jwks(&set);
            let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            *keys = fresh;
            keys.fetched = Some(Instant::now());
        }
        self.cached_key(kid).ok_or_else(|| {
            OidcError::InvalidToken(format!("no key for kid {kid:?} in the issuer's JWKS"))
        })
    }

    fn cached_key(&self, kid: Option<&str>) -> Option<(Algorithm, Arc<DecodingKey>)> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        match kid {
            Some(kid) => keys.by_kid.get(kid).cloned(),
            // Without a kid, only an unambiguous key set will do.
            None => match (keys.anonymous.len(), keys.by_kid.len()) {
                (1, 0) => keys.anonymous.first().cloned(),
                (0, 1) => keys.by_kid.values().next().cloned(),
                _ => None,
            },
        }
    }
}

/// The signing keys of a JWKS; keys that do not parse, are not for
/// signatures, or are symmetric are skipped; at most 64 are kept.
fn parse_jwks(set: &serde_json::Value) -> Keys {
    let mut keys = Keys::default();
    let list = set
        .get("keys")
        .and_then(|k| k.as_array())
        .map_or(&[][..], |v| v);
    for raw in list.iter().take(64) {
        if raw.get("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
            continue;
        };
        let Some(alg) = key_algorithm(&jwk) else {
            continue;
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let entry = (alg, Arc::new(key));
        match jwk.common.key_id {
            Some(kid) => {
                keys.by_kid.insert(kid, entry);
            }
            None => keys.anonymous.push(entry),
        }
    }
    keys
}

/// The algorithm a key is for: its `alg` when given, else the usual one
/// for its type. Symmetric keys (HMAC) are never accepted: a public JWKS
/// holding one would let anyone sign.
fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        Some(a) => a.to_string().parse::<Algorithm>().ok()?,
        None => by_type,
    };
    let family_ok = matches!(
        (alg, by_type),
        (
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512,
            Algorithm::RS256
        ) | (Algorithm::ES256, Algorithm::ES256)
            | (Algorithm::ES384, Algorithm::ES384)
            | (Algorithm::EdDSA, Algorithm::EdDSA)
    );
    family_ok.then_some(alg)
}

/// Equal, compared without an early exit.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s8_6_symmetric_and_unknown_keys_are_never_used() {
        let set = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "h", "alg": "HS256"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "e", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "x", "use": "enc", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "EC", "crv": "P-256", "kid": "lie", "alg": "RS256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "weird"}
        ]});
        let keys = parse_jwks(&set);
        let kids: Vec<_> = keys.by_kid.keys().cloned().collect();
        assert_eq!(kids, ["e"]);
        assert_eq!(keys.by_kid["e"].0, Algorithm::EdDSA);
    }

    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    use std::path::Path;

    const ISSUER: &str = "https://op.example";

    /// A relying party for client `c` whose JWKS holds one Ed25519 key,
    /// `kid` "k", already fetched; and that key.
    fn rp_with_key() -> (RelyingParty, Ed25519KeyPair, Metadata) {
        let text = format!(
            "[auth]\nprovider = \"oidc\"\noidc_issuer = \"{ISSUER}\"\noidc_client_id = \"c\"\n\
             [[route]]\nupstream = \"http://127.0.0.1:1\"\n"
        );
        let config = crate::config::Config::parse(Path::new("/x/p.toml"), &text).unwrap();
        let rp = RelyingParty::new(&config.auth).unwrap();
        let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let x = B64.encode(pair.public_key().as_ref());
        let set =
            serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": x}]});
        let mut keys = parse_jwks(&set);
        keys.fetched = Some(Instant::now());
        *rp.keys.lock().unwrap() = keys;
        let meta = Metadata {
            issuer: ISSUER.into(),
            authorization_endpoint: format!("{ISSUER}/auth"),
            token_endpoint: format!("{ISSUER}/token"),
            jwks_uri: format!("{ISSUER}/jwks"),
            end_session_endpoint: None,
        };
        (rp, pair, meta)
    }

    fn claims(nonce: &str) -> serde_json::Value {
        let now = jsonwebtoken::get_current_timestamp();
        serde_json::json!({
            "iss": ISSUER, "aud": "c", "sub": "alice", "iat": now, "exp": now + 60,
            "nonce": nonce, "email": "a@example.com", "groups": ["admin", "dev"],
        })
    }

    /// A compact JWS with this header, signed by `pair` (whatever the
    /// header claims).
    fn signed(
        pair: &Ed25519KeyPair,
        header: serde_json::Value,
        claims: &serde_json::Value,
    ) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = pair.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    fn check(
        rp: &RelyingParty,
        meta: &Metadata,
        token: &str,
        nonce: &str,
    ) -> Result<Identity, OidcError> {
        let fut = rp.validate(meta, token, nonce);
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(fut)
    }

    #[test]
    fn s8_6_id_token_checks_key_algorithm_claims_and_nonce() {
        let (rp, pair, meta) = rp_with_key();
        let eddsa = serde_json::json!({"alg": "EdDSA", "kid": "k"});
        let good = signed(&pair, eddsa.clone(), &claims("n1"));
        let id = check(&rp, &meta, &good, "n1").unwrap();
        assert_eq!(id.user, "alice");
        assert_eq!(id.email.as_deref(), Some("a@example.com"));
        assert_eq!(id.groups, ["admin", "dev"]);
        // The nonce of another login.
        assert!(check(&rp, &meta, &good, "n2").is_err());
        // A header naming another algorithm than the key's (alg
        // confusion: HS256 keyed with the public key, or none).
        for alg in ["ES256", "HS256", "none"] {
            let t = signed(
                &pair,
                serde_json::json!({"alg": alg, "kid": "k"}),
                &claims("n1"),
            );
            assert!(check(&rp, &meta, &t, "n1").is_err(), "{alg}");
        }
        let x = B64.encode(pair.public_key().as_ref());
        let input = format!(
            "{}.{}",
            B64.encode(serde_json::json!({"alg": "HS256", "kid": "k"}).to_string()),
            B64.encode(claims("n1").to_string())
        );
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, x.as_bytes()),
            input.as_bytes(),
        );
        let hs = format!("{input}.{}", B64.encode(mac.as_ref()));
        assert!(check(&rp, &meta, &hs, "n1").is_err());
        // Wrong issuer, audience, azp, expired; and a changed byte.
        let now = jsonwebtoken::get_current_timestamp();
        for (k, v) in [
            ("iss", serde_json::json!("https://evil.example")),
            ("aud", serde_json::json!("other")),
            ("azp", serde_json::json!("other")),
            ("exp", serde_json::json!(now - 120)),
            ("groups", serde_json::json!(["a,b"])),
        ] {
            let mut c = claims("n1");
            c[k] = v;
            let t = signed(&pair, eddsa.clone(), &c);
            assert!(check(&rp, &meta, &t, "n1").is_err(), "{k}");
        }
        let mut bad = good.clone();
        let at = bad.rfind('.').unwrap() + 2;
        let flipped = if &bad[at..at + 1] == "A" { "B" } else { "A" };
        bad.replace_range(at..at + 1, flipped);
        assert!(check(&rp, &meta, &bad, "n1").is_err());
        // An unknown kid is not in the (just fetched) set: refused without
        // a refetch inside 10 s.
        let t = signed(
            &pair,
            serde_json::json!({"alg": "EdDSA", "kid": "nope"}),
            &claims("n1"),
        );
        let e = check(&rp, &meta, &t, "n1").unwrap_err();
        assert!(e.to_string().contains("no key for kid"), "{e}");
    }
}
