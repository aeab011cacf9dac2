//! The XMPP password being set by `/renew_jid_pwd`, kept beside `jid_pwd` (sealed the same way)
//! from before the XMPP server is asked to change it until it replaces `jid_pwd`. Whatever a
//! crash interrupts, the service still knows every password the account may have on the server:
//! the next renewal sets the pending one again (setting a password the account already has
//! succeeds) and then commits it. The row's `updated_at`, written when a renewal claims the
//! pending password, is the claim's time: younger than the lease, the account is busy.

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::StoreResult;

/// What [`JidPwdStore::begin_jid_pwd`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    /// The caller now holds the account's renewal (its `updated_at` is the claim's time) and
    /// is to set this pending password (sealed) on the server.
    Pending(Vec<u8>),
    /// Another renewal claimed the account after `stale_before`: it may still be setting its
    /// password on the server.
    Busy,
    /// The account is not active, or (nothing offered) it has no pending password left.
    Nothing,
}

#[async_trait::async_trait]
pub trait JidPwdStore: Send + Sync {
    /// Claim the renewal of active account `id`. A pending password last claimed before
    /// `stale_before` (a renewal a crash, an error or a slow server left) is taken up, with the
    /// same password; with none, `sealed` (when given) is stored as pending. A pending password
    /// claimed since `stale_before` is [`Begun::Busy`]: one renewal per account at a time, so
    /// that no two set different passwords on the server at once.
    async fn begin_jid_pwd(
        &self,
        id: i64,
        sealed: Option<Vec<u8>>,
        now: i64,
        stale_before: i64,
    ) -> StoreResult<Begun>;
    /// `pending` becomes the account's `jid_pwd`; false when it is no longer the pending one (a
    /// concurrent renewal committed it) or the account is not active.
    async fn commit_jid_pwd(&self, id: i64, pending: Vec<u8>, now: i64) -> StoreResult<bool>;
    /// The password the server should have now, to set again after a renewal lost the race
    /// with another: the pending one if any, otherwise the account's `jid_pwd`, which is stored
    /// as pending first so that a crash before it is set again leaves a record for the
    /// reconciler. `None` when the account is not active.
    async fn rearm_jid_pwd(&self, id: i64, now: i64) -> StoreResult<Option<Vec<u8>>>;
    /// Active accounts with a pending password, last touched before `before`: renewals a crash
    /// or an error interrupted, for the reconciler to finish.
    async fn pending_jid_pwds(&self, before: i64) -> StoreResult<Vec<(i64, Vec<u8>)>>;
}

#[async_trait::async_trait]
impl JidPwdStore for SqliteStore {
    async fn begin_jid_pwd(
        &self,
        id: i64,
        sealed: Option<Vec<u8>>,
        now: i64,
        stale_before: i64,
    ) -> StoreResult<Begun> {
        use rusqlite::OptionalExtension;
        self.write(move |c| {
            // One writer: the read and the claim below see the same row.
            let row = c
                .prepare_cached(
                    "SELECT jid_pwd_pending, updated_at FROM accounts \
                     WHERE id = ?1 AND state = 'active'",
                )?
                .query_row([id], |r| {
                    Ok((r.get::<_, Option<Vec<u8>>>(0)?, r.get::<_, i64>(1)?))
                })
                .optional()?;
            let pending = match row {
                None => return Ok(Begun::Nothing),
                Some((Some(_), at)) if at >= stale_before => return Ok(Begun::Busy),
                Some((Some(p), _)) => p,
                Some((None, _)) => match sealed {
                    Some(s) => s,
                    None => return Ok(Begun::Nothing),
                },
            };
            c.prepare_cached(
                "UPDATE accounts SET jid_pwd_pending = ?2, updated_at = ?3 WHERE id = ?1",
            )?
            .execute(rusqlite::params![id, pending, now])?;
            Ok(Begun::Pending(pending))
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

    async fn rearm_jid_pwd(&self, id: i64, now: i64) -> StoreResult<Option<Vec<u8>>> {
        use rusqlite::OptionalExtension;
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE accounts SET jid_pwd_pending = COALESCE(jid_pwd_pending, jid_pwd), \
                 updated_at = ?2 WHERE id = ?1 AND state = 'active' RETURNING jid_pwd_pending",
            )?
            .query_row(rusqlite::params![id, now], |r| r.get::<_, Vec<u8>>(0))
            .optional()?)
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
        sealed: Option<Vec<u8>>,
        now: i64,
        stale_before: i64,
    ) -> StoreResult<Begun> {
        let c = self.conn().await?;
        // One statement decides: of two concurrent claims the second waits for the first's row
        // lock, and PostgreSQL re-checks the WHERE on the row the first wrote, which the second
        // then finds claimed (busy).
        let claim = c
            .prepare_cached(
                "UPDATE accounts SET jid_pwd_pending = COALESCE(jid_pwd_pending, $2), \
                 updated_at = $3 WHERE id = $1 AND state = 'active' \
                 AND ((jid_pwd_pending IS NULL AND $2::bytea IS NOT NULL) \
                      OR (jid_pwd_pending IS NOT NULL AND updated_at < $4)) \
                 RETURNING jid_pwd_pending",
            )
            .await?;
        let look = c
            .prepare_cached(
                "SELECT jid_pwd_pending FROM accounts WHERE id = $1 AND state = 'active'",
            )
            .await?;
        // Between a missed claim and the look the row may have moved on (a renewal committed):
        // claim again then.
        for _ in 0..3 {
            if let Some(r) = c
                .query_opt(&claim, &[&id, &sealed, &now, &stale_before])
                .await?
            {
                return Ok(Begun::Pending(r.try_get(0)?));
            }
            match c.query_opt(&look, &[&id]).await? {
                None => return Ok(Begun::Nothing),
                Some(r) => match r.try_get::<_, Option<Vec<u8>>>(0)? {
                    Some(_) => return Ok(Begun::Busy),
                    None if sealed.is_none() => return Ok(Begun::Nothing),
                    None => continue,
                },
            }
        }
        Ok(Begun::Busy)
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

    async fn rearm_jid_pwd(&self, id: i64, now: i64) -> StoreResult<Option<Vec<u8>>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "UPDATE accounts SET jid_pwd_pending = COALESCE(jid_pwd_pending, jid_pwd), \
                 updated_at = $2 WHERE id = $1 AND state = 'active' RETURNING jid_pwd_pending",
            )
            .await?;
        Ok(c.query_opt(&st, &[&id, &now])
            .await?
            .map(|r| r.try_get::<_, Vec<u8>>(0))
            .transpose()?)
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

#[cfg(test)]
mod tests {
    use super::super::contract::{active_phone, pg_db};
    use super::super::Store;
    use super::{Begun, JidPwdStore, PgStore, SqliteStore};

    /// The claim rules, alike on both backends; `s` is one store seen through both traits.
    async fn claims<S: Store + JidPwdStore>(s: &S) {
        let id = active_phone(s, "claim", 1, 1).await;
        let (a, b) = (b"sealed-a".to_vec(), b"sealed-b".to_vec());
        let begin = |fresh: Option<&Vec<u8>>, now: i64, stale_before: i64| {
            s.begin_jid_pwd(id, fresh.cloned(), now, stale_before)
        };
        assert_eq!(
            begin(Some(&a), 100, 90).await.unwrap(),
            Begun::Pending(a.clone())
        );
        // Claimed at 100: young for whoever counts from before 100.
        assert_eq!(begin(Some(&b), 101, 91).await.unwrap(), Begun::Busy);
        assert_eq!(begin(None, 101, 100).await.unwrap(), Begun::Busy);
        // Lapsed: taken up with the same password, whatever is offered.
        assert_eq!(
            begin(Some(&b), 200, 150).await.unwrap(),
            Begun::Pending(a.clone())
        );
        assert!(!s.commit_jid_pwd(id, b.clone(), 201).await.unwrap());
        assert!(s.commit_jid_pwd(id, a.clone(), 201).await.unwrap());
        assert!(
            !s.commit_jid_pwd(id, a.clone(), 202).await.unwrap(),
            "committed once"
        );
        assert_eq!(begin(None, 300, 250).await.unwrap(), Begun::Nothing);
        // Nothing pending: the current password is made pending again.
        assert_eq!(s.rearm_jid_pwd(id, 301).await.unwrap(), Some(a.clone()));
        assert_eq!(
            s.pending_jid_pwds(302).await.unwrap(),
            vec![(id, a.clone())]
        );
        assert!(s.commit_jid_pwd(id, a.clone(), 302).await.unwrap());
        // Something pending: that one.
        assert_eq!(
            begin(Some(&b), 400, 350).await.unwrap(),
            Begun::Pending(b.clone())
        );
        assert_eq!(s.rearm_jid_pwd(id, 401).await.unwrap(), Some(b.clone()));
        // Two claims at once: one wins, the other is busy.
        assert!(s.commit_jid_pwd(id, b.clone(), 402).await.unwrap());
        let (x, y) = tokio::join!(begin(Some(&a), 500, 450), begin(Some(&b), 500, 450));
        let mut got = [x.unwrap(), y.unwrap()];
        got.sort_by_key(|g| matches!(g, Begun::Busy));
        assert!(matches!(&got, [Begun::Pending(_), Begun::Busy]), "{got:?}");
        // Not an active account.
        let other = |f| s.begin_jid_pwd(id + 1000, f, 600, 550);
        assert_eq!(other(Some(a.clone())).await.unwrap(), Begun::Nothing);
        assert_eq!(s.rearm_jid_pwd(id + 1000, 600).await.unwrap(), None);
    }

    #[tokio::test]
    async fn sqlite_claims_one_renewal_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        claims(&SqliteStore::open(&dir.path().join("db")).unwrap()).await;
    }

    #[tokio::test]
    async fn postgresql_claims_one_renewal_at_a_time() {
        let Some(db) = pg_db("postgresql_claims_one_renewal_at_a_time").await else {
            return;
        };
        claims(&PgStore::connect(&db.url, 4).await.unwrap()).await;
        db.drop_db().await;
    }
}
