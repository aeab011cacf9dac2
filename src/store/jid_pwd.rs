//! The XMPP password being set by `/renew_jid_pwd`, kept beside `jid_pwd` (sealed the same way)
//! from before the XMPP server is asked to change it until it replaces `jid_pwd`. Whatever a
//! crash interrupts, the service still knows every password the account may have on the server:
//! the next renewal sets the pending one again (setting a password the account already has
//! succeeds) and then commits it.

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::StoreResult;

#[async_trait::async_trait]
pub trait JidPwdStore: Send + Sync {
    /// The pending password of active account `id`, storing `sealed` as pending first when
    /// there is none: the one to set on the server (a concurrent or interrupted renewal's, if
    /// any). `None` when the account is not active.
    async fn begin_jid_pwd(
        &self,
        id: i64,
        sealed: Vec<u8>,
        now: i64,
    ) -> StoreResult<Option<Vec<u8>>>;
    /// `pending` becomes the account's `jid_pwd`; false when it is no longer the pending one (a
    /// concurrent renewal committed it) or the account is not active.
    async fn commit_jid_pwd(&self, id: i64, pending: Vec<u8>, now: i64) -> StoreResult<bool>;
    /// Active accounts with a pending password, last touched before `before`: renewals a crash
    /// or an error interrupted, for the reconciler to finish.
    async fn pending_jid_pwds(&self, before: i64) -> StoreResult<Vec<(i64, Vec<u8>)>>;
}

#[async_trait::async_trait]
impl JidPwdStore for SqliteStore {
    async fn begin_jid_pwd(
        &self,
        id: i64,
        sealed: Vec<u8>,
        now: i64,
    ) -> StoreResult<Option<Vec<u8>>> {
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE accounts SET jid_pwd_pending = ?2, updated_at = ?3 \
                 WHERE id = ?1 AND state = 'active' AND jid_pwd_pending IS NULL",
            )?
            .execute(rusqlite::params![id, sealed, now])?;
            use rusqlite::OptionalExtension;
            Ok(c.prepare_cached(
                "SELECT jid_pwd_pending FROM accounts WHERE id = ?1 AND state = 'active'",
            )?
            .query_row([id], |r| r.get::<_, Option<Vec<u8>>>(0))
            .optional()?
            .flatten())
        })
        .await
    }

    async fn commit_jid_pwd(&self, id: i64, pending: Vec<u8>, now: i64) -> StoreResult<bool> {
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE accounts SET jid_pwd = jid_pwd_pending, jid_pwd_pending = NULL, \
                     updated_at = ?3 \
                     WHERE id = ?1 AND state = 'active' AND jid_pwd_pending = ?2",
                )?
                .execute(rusqlite::params![id, pending, now])?;
            Ok(n == 1)
        })
        .await
    }

    async fn pending_jid_pwds(&self, before: i64) -> StoreResult<Vec<(i64, Vec<u8>)>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, jid_pwd_pending FROM accounts \
                 WHERE jid_pwd_pending IS NOT NULL AND state = 'active' AND updated_at < ?1",
            )?;
            let rows = st.query_map([before], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

#[async_trait::async_trait]
impl JidPwdStore for PgStore {
    async fn begin_jid_pwd(
        &self,
        id: i64,
        sealed: Vec<u8>,
        now: i64,
    ) -> StoreResult<Option<Vec<u8>>> {
        let c = self.conn().await?;
        // One statement: of two concurrent renewals the second waits for the first's row and
        // then finds its pending password (PostgreSQL re-checks the WHERE on the new version).
        let st = c
            .prepare_cached(
                "UPDATE accounts SET jid_pwd_pending = COALESCE(jid_pwd_pending, $2), \
                 updated_at = $3 WHERE id = $1 AND state = 'active' RETURNING jid_pwd_pending",
            )
            .await?;
        Ok(c.query_opt(&st, &[&id, &sealed, &now])
            .await?
            .map(|r| r.try_get::<_, Vec<u8>>(0))
            .transpose()?)
    }

    async fn commit_jid_pwd(&self, id: i64, pending: Vec<u8>, now: i64) -> StoreResult<bool> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "UPDATE accounts SET jid_pwd = jid_pwd_pending, jid_pwd_pending = NULL, \
                 updated_at = $3 WHERE id = $1 AND state = 'active' AND jid_pwd_pending = $2",
            )
            .await?;
        Ok(c.execute(&st, &[&id, &pending, &now]).await? == 1)
    }

    async fn pending_jid_pwds(&self, before: i64) -> StoreResult<Vec<(i64, Vec<u8>)>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "SELECT id, jid_pwd_pending FROM accounts \
                 WHERE jid_pwd_pending IS NOT NULL AND state = 'active' AND updated_at < $1",
            )
            .await?;
        let rows = c.query(&st, &[&before]).await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}
