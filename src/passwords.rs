//! Argon2id password hashing, off the async runtime with bounded concurrency.
//!
//! A hash takes tens of milliseconds of CPU on purpose. Each runs on the blocking pool, and a
//! semaphore caps how many run at once (by default one fewer than the CPUs), so a login flood
//! queues here instead of taking every core from token checks and other requests.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// OWASP's Argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// Hashes and verifies passwords on the blocking pool, at most `permits` at a time.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

impl Hasher {
    /// `concurrency` 0 means one fewer than the CPUs (at least one), so that a login flood always
    /// leaves a core for token checks and everything else.
    pub fn new(concurrency: usize) -> Hasher {
        let n = if concurrency == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .saturating_sub(1)
                .max(1)
        } else {
            concurrency
        };
        Hasher {
            permits: Arc::new(Semaphore::new(n)),
        }
    }

    /// PHC string of a new Argon2id hash.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ApiError::Unknown("hasher closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            argon2()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| ApiError::Unknown(format!("hashing: {e}")))
        })
        .await
        .map_err(|e| ApiError::Unknown(format!("hash task: {e}")))?
    }

    /// Whether `password` matches the stored PHC string (constant-time inside argon2).
    pub async fn verify(&self, password: String, phc: String) -> Result<bool, ApiError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ApiError::Unknown("hasher closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&phc)
                .map_err(|e| ApiError::Unknown(format!("stored hash: {e}")))?;
            Ok(argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok())
        })
        .await
        .map_err(|e| ApiError::Unknown(format!("hash task: {e}")))?
    }

    /// A hash to verify against when the user does not exist, so that unknown names take as long
    /// as wrong passwords.
    pub fn dummy_hash() -> &'static str {
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        DUMMY.get_or_init(|| {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            argon2()
                .hash_password(b"not a password", &salt)
                .expect("hash")
                .to_string()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = Hasher::new(2);
        let phc = h.hash("secret123".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify("secret123".into(), phc.clone()).await.unwrap());
        assert!(!h.verify("secret124".into(), phc).await.unwrap());
    }
}
