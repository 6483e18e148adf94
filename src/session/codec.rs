//! The session cookie value (SPEC §4.1): `<id>.<mac>`, where `id` is 32
//! bytes from the OS CSPRNG and `mac` is HMAC-SHA256 over those 32 bytes,
//! both base64url without padding. The store is keyed by SHA-256 of the id
//! bytes ([`SessionKey`]); its first 8 bytes in hex are the loggable handle.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::digest;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::Session as SessionConfig;

/// Bytes of an id and of its HMAC-SHA256 tag; [`decode_32`] reads either.
const ID_LEN: usize = 32;
/// base64url lengths of the id and MAC (no padding).
const ID_B64: usize = 43;
const MAC_B64: usize = 43;

/// A raw session id. Never logged, stored or sent upstream; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId([u8; ID_LEN]);

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(..)")
    }
}

impl SessionId {
    pub fn generate() -> Result<Self, ring::error::Unspecified> {
        let mut id = [0u8; ID_LEN];
        SystemRandom::new().fill(&mut id)?;
        Ok(SessionId(id))
    }

    /// The store key: SHA-256 of the id bytes.
    pub fn key(&self) -> SessionKey {
        let d = digest::digest(&digest::SHA256, &self.0);
        let mut k = [0u8; 32];
        k.copy_from_slice(d.as_ref());
        SessionKey(k)
    }
}

/// SHA-256 of a session id: what the store, logs and admin API see.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct SessionKey(pub [u8; 32]);

impl SessionKey {
    /// The non-secret handle: the first 16 hex digits of the key.
    pub fn handle(&self) -> Handle {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 16];
        for (i, b) in self.0[..8].iter().enumerate() {
            text[2 * i] = HEX[usize::from(b >> 4)];
            text[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        Handle(text)
    }
}

/// A session's loggable handle, kept on the stack: 16 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Handle([u8; 16]);

impl Handle {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

/// The key prefix a handle names: 16 hex digits (either case) are the
/// first 8 bytes of the [`SessionKey`]; anything else is `None`.
pub fn parse_handle(text: &str) -> Option<[u8; 8]> {
    let digits = text.as_bytes();
    if digits.len() != 16 {
        return None;
    }
    let mut out = [0u8; 8];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let hex = |c: u8| (c as char).to_digit(16);
        *byte = (hex(pair[0])? * 16 + hex(pair[1])?) as u8;
    }
    Some(out)
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({})", self.handle())
    }
}

/// A signing key; `Debug` prints nothing of it.
struct Key(hmac::Key);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{source_name}: a signing key must be at least 32 bytes (64 hex digits, or base64url)"
    )]
    TooShort { source_name: String },
    #[error("{source_name}: not valid hex or base64url")]
    Encoding { source_name: String },
    #[error("cannot read or create the secret file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the system random generator failed")]
    Random,
}

/// How a cookie verified.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    /// Under the current key.
    Current(SessionId),
    /// Under a fallback key: accept, and re-sign with the current key.
    Fallback(SessionId),
}

/// The current signing key and the older keys still accepted (SPEC §4.4).
#[derive(Debug)]
pub struct Keyring {
    current: Key,
    fallbacks: Vec<Key>,
}

impl Keyring {
    pub fn new(current: &[u8], fallbacks: &[Vec<u8>]) -> Self {
        let key = |k: &[u8]| Key(hmac::Key::new(hmac::HMAC_SHA256, k));
        Keyring {
            current: key(current),
            fallbacks: fallbacks.iter().map(|k| key(k)).collect(),
        }
    }

    /// Loads keys as configured: the env var if set, else `secret_file`
    /// (created with a fresh key, mode 0600, when missing).
    pub fn load(cfg: &SessionConfig) -> Result<Self, KeyError> {
        let current = match std::env::var(&cfg.secret_env) {
            Ok(v) if !v.trim().is_empty() => decode_key(v.trim(), &cfg.secret_env)?,
            _ => load_or_create_file(&cfg.secret_file)?,
        };
        let mut fallbacks = Vec::new();
        if let Ok(list) = std::env::var(&cfg.fallback_secrets_env) {
            for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                fallbacks.push(decode_key(part, &cfg.fallback_secrets_env)?);
            }
        }
        Ok(Keyring::new(&current, &fallbacks))
    }

    /// The cookie value for an id, signed with the current key.
    pub fn encode(&self, id: &SessionId) -> String {
        let tag = hmac::sign(&self.current.0, &id.0);
        let mut out = String::with_capacity(ID_B64 + 1 + MAC_B64);
        B64.encode_string(id.0, &mut out);
        out.push('.');
        B64.encode_string(tag.as_ref(), &mut out);
        out
    }

    /// A MAC under the current key over `data` for `purpose`, base64url:
    /// for tokens that are not session ids (the login form's CSRF token).
    /// The purpose and a NUL come first, so no token is ever a valid MAC of
    /// a 32-byte session id or of another purpose's data.
    pub fn sign_token(&self, purpose: &str, data: &[u8]) -> String {
        B64.encode(hmac::sign(&self.current.0, &token_message(purpose, data)))
    }

    /// Checks a [`Keyring::sign_token`] token in constant time.
    pub fn verify_token(&self, purpose: &str, data: &[u8], token: &str) -> bool {
        let Some(tag) = decode_32(token.as_bytes()) else {
            return false;
        };
        hmac::verify(&self.current.0, &token_message(purpose, data), &tag).is_ok()
    }

    /// The store key a cookie value names, and the id to re-sign when a
    /// fallback key signed it; [`verify`](Self::verify) through the
    /// connection's [`VerifyCache`].
    pub fn verify_key(
        &self,
        value: &[u8],
        cache: &VerifyCache,
    ) -> Option<(SessionKey, Option<SessionId>)> {
        if let Some(key) = cache.get(value) {
            return Some((key, None));
        }
        match self.verify(value)? {
            Verified::Current(id) => {
                let key = id.key();
                cache.put(value, key);
                Some((key, None))
            }
            Verified::Fallback(id) => Some((id.key(), Some(id))),
        }
    }

    /// Verifies a cookie value in constant time under each key. `None` for a
    /// malformed value (bytes outside base64url included) or a MAC no key
    /// produced.
    pub fn verify(&self, value: &(impl AsRef<[u8]> + ?Sized)) -> Option<Verified> {
        let value = value.as_ref();
        if value.len() != VALUE_LEN || value[ID_B64] != b'.' {
            return None;
        }
        let id = decode_32(&value[..ID_B64])?;
        let mac = decode_32(&value[ID_B64 + 1..])?;
        if hmac::verify(&self.current.0, &id, &mac).is_ok() {
            return Some(Verified::Current(SessionId(id)));
        }
        self.fallbacks
            .iter()
            .any(|k| hmac::verify(&k.0, &id, &mac).is_ok())
            .then_some(Verified::Fallback(SessionId(id)))
    }
}

fn token_message(purpose: &str, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(purpose.len() + 1 + data.len());
    m.extend_from_slice(purpose.as_bytes());
    m.push(0);
    m.extend_from_slice(data);
    m
}

/// Length of a well-formed cookie value: `<43 chars>.<43 chars>`.
const VALUE_LEN: usize = ID_B64 + 1 + MAC_B64;

/// The last cookie value one client connection presented that verified
/// under the current key, with its store key. A keep-alive connection sends
/// the same cookie on every request; a repeat skips the base64 decoding,
/// the HMAC and the SHA-256 of [`Keyring::verify_key`] (≈ 0.4 µs). It
/// vouches only for the MAC: whether the session is live is still asked of
/// the store on every request.
///
/// Sound because a value that verified once verifies again: the keyring is
/// opened once for the life of the process (a feature that rotates keys at
/// run time must clear these). Only current-key values are kept, so a
/// fallback-signed cookie is re-signed on every request until the browser
/// takes the new one.
#[derive(Default)]
pub struct VerifyCache(Mutex<Option<([u8; VALUE_LEN], SessionKey)>>);

impl VerifyCache {
    fn get(&self, value: &[u8]) -> Option<SessionKey> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (text, key) = kept.as_ref()?;
        // No early exit: the time taken says nothing about where a
        // candidate differs from the value this connection sent before.
        let diff = text
            .iter()
            .zip(value)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (value.len() == VALUE_LEN && diff == 0).then_some(*key)
    }

    fn put(&self, value: &[u8], key: SessionKey) {
        if let Ok(text) = <[u8; VALUE_LEN]>::try_from(value) {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((text, key));
        }
    }
}

impl fmt::Debug for VerifyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyCache(..)")
    }
}

/// base64url alphabet values, 0xFF for bytes outside it.
static B64URL: [u8; 256] = {
    let mut t = [0xFF; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// 32 bytes from exactly 43 characters of unpadded base64url. No
/// alternative spellings: the last character must leave its 2 spare bits
/// zero, so each text decodes from exactly one value. (The general decoder
/// spent most of its time on lengths and padding a cookie never has.)
fn decode_32(text: &[u8]) -> Option<[u8; 32]> {
    let text: &[u8; 43] = text.try_into().ok()?;
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    let mut sextet = |i: usize| {
        let v = B64URL[usize::from(text[i])];
        bad |= v;
        u32::from(v & 0x3F)
    };
    for g in 0..10 {
        let n = sextet(4 * g) << 18
            | sextet(4 * g + 1) << 12
            | sextet(4 * g + 2) << 6
            | sextet(4 * g + 3);
        out[3 * g..3 * g + 3].copy_from_slice(&n.to_be_bytes()[1..]);
    }
    let n = sextet(40) << 12 | sextet(41) << 6 | sextet(42);
    // An invalid byte maps to 0xFF, which sets the top bits of `bad`.
    if bad & 0xC0 != 0 || n & 0b11 != 0 {
        return None;
    }
    out[30] = (n >> 10) as u8;
    out[31] = (n >> 2) as u8;
    Some(out)
}

/// Exactly 64 hex digits is hex; anything else is base64url (padding allowed).
pub fn decode_key(text: &str, source_name: &str) -> Result<Vec<u8>, KeyError> {
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| KeyError::Encoding {
                source_name: source_name.into(),
            })?
    } else {
        B64.decode(text.trim_end_matches('='))
            .map_err(|_| KeyError::Encoding {
                source_name: source_name.into(),
            })?
    };
    if bytes.len() < 32 {
        return Err(KeyError::TooShort {
            source_name: source_name.into(),
        });
    }
    Ok(bytes)
}

fn load_or_create_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let file_err = |source| KeyError::File {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => decode_key(text.trim(), &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            SystemRandom::new()
                .fill(&mut key)
                .map_err(|_| KeyError::Random)?;
            let line = format!("{}\n", B64.encode(key));
            crate::private_file::create(path, line.as_bytes()).map_err(file_err)?;
            tracing::warn!(path = %path.display(), "generated a new session signing key");
            Ok(key.to_vec())
        }
        Err(e) => Err(file_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_with(current: u8, fallbacks: &[u8]) -> Keyring {
        Keyring::new(
            &[current; 32],
            &fallbacks.iter().map(|b| vec![*b; 32]).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn decode_32_agrees_with_the_general_decoder() {
        let mut value = [0u8; 32];
        for seed in 0..2000u32 {
            for (i, b) in value.iter_mut().enumerate() {
                *b = (seed.wrapping_mul(2_654_435_761).rotate_left(i as u32) >> 7) as u8 ^ i as u8;
            }
            let text = B64.encode(value);
            assert_eq!(decode_32(text.as_bytes()), Some(value), "{text}");
        }
        for v in [[0u8; 32], [0xFF; 32]] {
            assert_eq!(decode_32(B64.encode(v).as_bytes()), Some(v));
        }
    }

    #[test]
    fn decode_32_refuses_what_the_general_decoder_refuses() {
        let good = B64.encode([0x5Au8; 32]);
        assert!(decode_32(good.as_bytes()).is_some());
        // Wrong lengths, padding, other alphabets, stray bytes anywhere.
        assert!(decode_32(&good.as_bytes()[..42]).is_none());
        assert!(decode_32(format!("{good}A").as_bytes()).is_none());
        assert!(decode_32(format!("{}=", &good[..42]).as_bytes()).is_none());
        for pos in [0, 17, 39, 40, 42] {
            for bad in [b'+', b'/', b'=', b'.', b' ', 0, 0x80, 0xFF] {
                let mut t = good.clone().into_bytes();
                t[pos] = bad;
                assert!(decode_32(&t).is_none(), "byte {bad:#x} at {pos}");
                assert!(B64.decode(&t).is_err());
            }
        }
        // Non-zero spare bits in the last character: another spelling of
        // some value, refused like the general decoder refuses it.
        let mut t = good.into_bytes();
        for last in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
            t[42] = *last;
            let canonical = B64URL[usize::from(*last)] & 0b11 == 0;
            assert_eq!(decode_32(&t).is_some(), canonical, "{}", *last as char);
            assert_eq!(B64.decode(&t).is_ok(), canonical);
        }
    }

    #[test]
    fn round_trip() {
        let kr = ring_with(1, &[]);
        let id = SessionId::generate().unwrap();
        let v = kr.encode(&id);
        assert_eq!(v.len(), 87);
        assert_eq!(kr.verify(&v), Some(Verified::Current(id)));
    }

    #[test]
    fn tampering_any_byte_fails() {
        let kr = ring_with(1, &[]);
        let v = kr.encode(&SessionId::generate().unwrap());
        for i in 0..v.len() {
            let mut b = v.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(b).unwrap();
            if t != v {
                assert!(kr.verify(&t).is_none(), "byte {i}");
            }
        }
    }

    #[test]
    fn wrong_key_fails_fallback_verifies() {
        let old = ring_with(2, &[]);
        let v = old.encode(&SessionId::generate().unwrap());
        assert!(ring_with(1, &[]).verify(&v).is_none());
        assert!(matches!(
            ring_with(1, &[3, 2]).verify(&v),
            Some(Verified::Fallback(_))
        ));
    }

    #[test]
    fn verify_cache_remembers_only_the_exact_current_key_value() {
        let kr = ring_with(1, &[2]);
        let cache = VerifyCache::default();
        let id = SessionId::generate().unwrap();
        let v = kr.encode(&id);
        // First sight verifies and remembers; the repeat is served from the
        // cache with the same key.
        assert_eq!(kr.verify_key(v.as_bytes(), &cache), Some((id.key(), None)));
        assert_eq!(cache.get(v.as_bytes()), Some(id.key()));
        assert_eq!(kr.verify_key(v.as_bytes(), &cache), Some((id.key(), None)));
        // Any other value misses and is verified on its own: one changed
        // byte anywhere, a prefix, or the value with a byte appended.
        for i in 0..v.len() {
            let mut b = v.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(b).unwrap();
            assert_eq!(cache.get(t.as_bytes()), None, "byte {i}");
            assert_eq!(kr.verify_key(t.as_bytes(), &cache), None, "byte {i}");
        }
        assert_eq!(cache.get(&v.as_bytes()[..86]), None);
        assert_eq!(kr.verify_key(format!("{v}A").as_bytes(), &cache), None);
        // A failed value does not displace the remembered one.
        assert_eq!(cache.get(v.as_bytes()), Some(id.key()));

        // A fallback-signed value is re-signed every time, never remembered.
        let old_id = SessionId::generate().unwrap();
        let old = ring_with(2, &[]).encode(&old_id);
        for _ in 0..2 {
            assert_eq!(
                kr.verify_key(old.as_bytes(), &cache),
                Some((old_id.key(), Some(old_id.clone())))
            );
        }
        assert_eq!(cache.get(old.as_bytes()), None);
        // A second current value replaces the first.
        let next = SessionId::generate().unwrap();
        let w = kr.encode(&next);
        assert_eq!(
            kr.verify_key(w.as_bytes(), &cache),
            Some((next.key(), None))
        );
        assert_eq!(cache.get(w.as_bytes()), Some(next.key()));
        assert_eq!(cache.get(v.as_bytes()), None);
    }

    #[test]
    fn malformed_values_fail() {
        let kr = ring_with(1, &[]);
        for bad in [
            "",
            ".",
            "abc",
            "a.b",
            &"A".repeat(87),
            &format!("{}.{}", "A".repeat(43), "A".repeat(44)),
        ] {
            assert!(kr.verify(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn handle_is_16_hex_digits_of_sha256() {
        let id = SessionId([7u8; 32]);
        let handle = id.key().handle();
        let h = handle.as_str();
        assert_eq!(h.len(), 16);
        let full: String = digest::digest(&digest::SHA256, &[7u8; 32])
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(full.starts_with(h));
    }

    #[test]
    fn s4_1_a_handle_parses_back_to_the_key_prefix() {
        let key = SessionId([7u8; 32]).key();
        let h = key.handle();
        assert_eq!(
            parse_handle(h.as_str()),
            Some(key.0[..8].try_into().unwrap())
        );
        let upper = h.as_str().to_ascii_uppercase();
        assert_eq!(parse_handle(&upper), parse_handle(h.as_str()));
        for bad in [
            "",
            "0123",
            "0123456789abcdeg",
            "0123456789abcdef0",
            "+123456789abcdef",
        ] {
            assert_eq!(parse_handle(bad), None, "{bad}");
        }
    }

    #[test]
    fn key_decoding() {
        assert_eq!(decode_key(&"ab".repeat(32), "t").unwrap(), vec![0xab; 32]);
        assert_eq!(
            decode_key(&B64.encode([9u8; 32]), "t").unwrap(),
            vec![9; 32]
        );
        assert!(matches!(
            decode_key(&B64.encode([9u8; 16]), "t"),
            Err(KeyError::TooShort { .. })
        ));
        assert!(decode_key("!!!", "t").is_err());
    }

    #[test]
    fn secret_file_is_created_0600_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data/secret.key");
        let a = load_or_create_file(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_or_create_file(&p).unwrap(), a);
    }
}
