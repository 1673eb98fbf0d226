//! Password hashing with Argon2id at OWASP's parameters (19 MiB, 2 passes, 1 lane), on a
//! blocking thread: a hash costs tens of milliseconds of CPU by design.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::domain::credentials::Password;

fn argon2() -> Argon2<'static> {
    // The constants are valid Argon2 parameters; `Params::new` only rejects out-of-range ones.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`) of a new hash.
pub async fn hash(password: &Password) -> Result<String, HashError> {
    let password = password.clone();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon2()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string()))
    })
    .await
    .map_err(|e| HashError(e.to_string()))?
}

/// Whether `password` matches `phc`. With no stored hash (an unknown account) it checks
/// against a fixed hash, so that both answers take the same time.
pub async fn verify(password: &Password, phc: Option<String>) -> bool {
    let password = password.clone();
    let known = phc.is_some();
    tokio::task::spawn_blocking(move || {
        let phc = phc.unwrap_or_else(|| DUMMY.to_owned());
        let matches = PasswordHash::new(&phc)
            .is_ok_and(|parsed| argon2().verify_password(password.expose().as_bytes(), &parsed).is_ok());
        known && matches
    })
    .await
    .unwrap_or(false)
}

/// An Argon2id hash of a random string, at the same parameters.
const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$1k8WfiSq4m3ZqJqL2m7ifmJXcu5Tb1e8hYy4o8Q0Sfg";
