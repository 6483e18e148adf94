//! Passwords for `provider = "local"` (SPEC §2 `hash-password`, §8.5):
//! argon2id hashing with the OWASP parameters, and verification off the
//! async runtime on a small bounded pool, so a burst of logins waits for a
//! permit instead of stalling proxying. An unknown user name is verified
//! against a hash of the same cost, so it answers no faster than a wrong
//! password. Passwords and hashes are never logged.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::Semaphore;

use crate::config::users::{User, Users};

/// OWASP's first recommended argon2id configuration (Password Storage Cheat
/// Sheet): 19 MiB of memory, 2 iterations, 1 lane.
pub const M_COST_KIB: u32 = 19 * 1024;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;
/// Salt length in bytes (the PHC recommendation).
const SALT_LEN: usize = 16;

/// Verifications that may run at once: each holds `M_COST_KIB` of memory
/// and a blocking thread for tens of milliseconds.
pub const VERIFY_WORKERS: usize = 2;
/// How long a login waits for a verification permit before it is refused
/// with 503: under a flood, answering late is worse than answering busy.
const VERIFY_WAIT: Duration = Duration::from_secs(10);

/// An argon2id hash (OWASP parameters, from `cloakroom hash-password`) of a
/// random password that was thrown away: what an unknown name is checked
/// against when the users file has no user to borrow parameters from.
const FALLBACK_DUMMY: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$R9zxbBh9lNooZ0ni0XF59w$wNGE6sb/yicRMZcWMpIxX1Nxix/uFm/n1Usv1FXlqhQ";

/// Why [`hash`] made no hash.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the system random number generator failed")]
    Random,
    #[error("argon2 failed")]
    Argon2(#[source] argon2::password_hash::Error),
}

/// Why [`Verifier::verify`] could not say (a wrong password is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("no password verification slot within {0:?}")]
    Busy(Duration),
    #[error("the password verification task failed")]
    Task(#[source] tokio::task::JoinError),
}

fn hasher() -> Argon2<'static> {
    let params =
        Params::new(M_COST_KIB, T_COST, P_COST, None).expect("the OWASP parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// An argon2id PHC string for `password` with a fresh random salt
/// (`cloakroom hash-password`). Blocking: tens of milliseconds.
pub fn hash(password: &[u8]) -> Result<String, PasswordError> {
    let mut salt = [0u8; SALT_LEN];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| PasswordError::Random)?;
    let hash = hasher()
        .hash_password_with_salt(password, &salt)
        .map_err(PasswordError::Argon2)?;
    Ok(hash.to_string())
}

/// Checks passwords against the users file on a pool of
/// [`VERIFY_WORKERS`] blocking threads.
pub struct Verifier {
    permits: Arc<Semaphore>,
    fallback: PasswordHash,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            permits: Arc::new(Semaphore::new(VERIFY_WORKERS)),
            fallback: PasswordHash::new(FALLBACK_DUMMY).expect("the fallback hash is valid"),
        }
    }
}

impl Verifier {
    /// The user `name` names when `password` is theirs; `None` for a wrong
    /// password or an unknown name, which costs the same argon2 work.
    pub async fn verify(
        &self,
        users: Arc<Users>,
        name: String,
        password: String,
    ) -> Result<Option<User>, VerifyError> {
        let permit = tokio::time::timeout(VERIFY_WAIT, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| VerifyError::Busy(VERIFY_WAIT))?
            .expect("the semaphore is never closed");
        let fallback = self.fallback.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            check(&users, &name, password.as_bytes(), &fallback)
        })
        .await
        .map_err(VerifyError::Task)
    }
}

/// The blocking check. Every path runs argon2 once.
fn check(users: &Users, name: &str, password: &[u8], fallback: &PasswordHash) -> Option<User> {
    // Parameters come from the hash itself (validated at load).
    let argon2 = Argon2::default();
    match users.get(name) {
        Some(user) => argon2
            .verify_password(password, &user.password_hash)
            .is_ok()
            .then(|| user.clone()),
        None => {
            let dummy = users.dummy().unwrap_or(fallback);
            let _ = argon2.verify_password(password, dummy);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_and_has_the_owasp_parameters() {
        let phc = hash(b"correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let parsed = crate::config::users::phc(&phc).unwrap();
        let argon2 = Argon2::default();
        assert!(argon2.verify_password(b"correct horse", &parsed).is_ok());
        assert!(argon2.verify_password(b"correct horsE", &parsed).is_err());
        assert_ne!(hash(b"correct horse").unwrap(), phc, "salted");
    }

    #[test]
    fn the_fallback_dummy_is_a_valid_hash_of_the_same_cost() {
        let h = crate::config::users::phc(FALLBACK_DUMMY).unwrap();
        let p = Params::try_from(&h).unwrap();
        assert_eq!(
            (p.m_cost(), p.t_cost(), p.p_cost()),
            (M_COST_KIB, T_COST, P_COST)
        );
    }
}
