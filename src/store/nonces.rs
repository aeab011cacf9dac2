//! Nonces of version 2 signatures (`param_sign` with `sign_v=2`): a nonce is spent once, by the
//! first request that carries it with a valid signature, and remembered until its timestamp has
//! left the window; a second request with it is refused (6). In the database, so that every
//! instance sharing a PostgreSQL database refuses a nonce another instance has seen.

use super::postgres::{self, PgStore};
use super::sqlite::SqliteStore;
use super::StoreResult;

#[async_trait::async_trait]
pub trait NonceStore: Send + Sync {
    /// Spend `nonce`, remembered until `expires_at`: true when it was not seen before (or only
    /// before an expiry that has passed by `now`). Forgets the nonces expired by `now` on the way.
    async fn spend_nonce(&self, nonce: String, expires_at: i64, now: i64) -> StoreResult<bool>;
}

#[async_trait::async_trait]
impl NonceStore for SqliteStore {
    async fn spend_nonce(&self, nonce: String, expires_at: i64, now: i64) -> StoreResult<bool> {
        self.write(move |c| {
            c.prepare_cached("DELETE FROM sign_nonces WHERE expires_at < ?1")?
                .execute([now])?;
            let n = c
                .prepare_cached(
                    "INSERT INTO sign_nonces (nonce, expires_at) VALUES (?1, ?2) \
                     ON CONFLICT (nonce) DO NOTHING",
                )?
                .execute(rusqlite::params![nonce, expires_at])?;
            Ok(n == 1)
        })
        .await
    }
}

#[async_trait::async_trait]
impl NonceStore for PgStore {
    async fn spend_nonce(&self, nonce: String, expires_at: i64, now: i64) -> StoreResult<bool> {
        let c = self.conn().await?;
        let prune = "DELETE FROM sign_nonces WHERE expires_at < $1";
        postgres::run(&c, prune, &[&now]).await?;
        // Of two instances inserting one nonce at once, the unique index lets one row in.
        let insert = "INSERT INTO sign_nonces (nonce, expires_at) VALUES ($1, $2) \
                      ON CONFLICT (nonce) DO NOTHING";
        Ok(postgres::run(&c, insert, &[&nonce, &expires_at]).await? == 1)
    }
}
