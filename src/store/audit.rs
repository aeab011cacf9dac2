//! The audit trail's storage (issue 20): one row per event, read back by `register audit`,
//! pruned after `audit.retention_days`. Its own trait beside [`Store`](super::Store), implemented
//! by both backends on the table of migration 0007.

use rusqlite::params;

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::StoreResult;

/// One audited event. Never holds a password, token or `jid_pwd`: `subject` and `detail` carry
/// user names and words only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Unix seconds.
    pub at: i64,
    /// Who acted: the user name sent with the request (empty when none was), or `admin`.
    pub actor: String,
    /// What: `register`, `login`, `lockout`, `bind`, `admin.user.delete`, … (docs/OPERATIONS.md).
    pub action: String,
    /// The other user(s) named, comma-separated (bind, unbind, admin commands).
    pub subject: String,
    /// The client network (the rate limits' grouping), or `cli`.
    pub network: String,
    /// The result code (0: done).
    pub result: i64,
    pub detail: String,
}

/// Which records to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Records whose actor is this user, or whose subject names them.
    pub user: Option<String>,
    /// Records at or after this time (Unix seconds).
    pub since: i64,
    /// At most this many, oldest first.
    pub limit: u32,
}

#[async_trait::async_trait]
pub trait AuditStore: Send + Sync {
    async fn audit_append(&self, r: AuditRecord) -> StoreResult<()>;
    /// Matching records, oldest first (in the order they were written).
    async fn audit_list(&self, q: AuditQuery) -> StoreResult<Vec<AuditRecord>>;
    /// Delete records older than `before`; returns how many.
    async fn audit_prune(&self, before: i64) -> StoreResult<u64>;
}

const COLUMNS: &str = "at, actor, action, subject, network, result, detail";

#[async_trait::async_trait]
impl AuditStore for SqliteStore {
    async fn audit_append(&self, r: AuditRecord) -> StoreResult<()> {
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT INTO audit ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![
                r.at, r.actor, r.action, r.subject, r.network, r.result, r.detail
            ])?;
            Ok(())
        })
        .await
    }

    async fn audit_list(&self, q: AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM audit WHERE at >= ?1 AND (?2 IS NULL OR actor = ?2 \
                 OR instr(',' || subject || ',', ',' || ?2 || ',') > 0) ORDER BY id LIMIT ?3"
            ))?;
            let rows = st.query_map(params![q.since, q.user, q.limit], |r| {
                Ok(AuditRecord {
                    at: r.get(0)?,
                    actor: r.get(1)?,
                    action: r.get(2)?,
                    subject: r.get(3)?,
                    network: r.get(4)?,
                    result: r.get(5)?,
                    detail: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn audit_prune(&self, before: i64) -> StoreResult<u64> {
        self.write(move |c| Ok(c.execute("DELETE FROM audit WHERE at < ?1", [before])? as u64))
            .await
    }
}

#[async_trait::async_trait]
impl AuditStore for PgStore {
    async fn audit_append(&self, r: AuditRecord) -> StoreResult<()> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "INSERT INTO audit ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ))
            .await?;
        c.execute(
            &st,
            &[
                &r.at, &r.actor, &r.action, &r.subject, &r.network, &r.result, &r.detail,
            ],
        )
        .await?;
        Ok(())
    }

    async fn audit_list(&self, q: AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM audit WHERE at >= $1 AND ($2::TEXT IS NULL OR actor = $2 \
                 OR position(',' || $2 || ',' in ',' || subject || ',') > 0) ORDER BY id LIMIT $3"
            ))
            .await?;
        let rows = c
            .query(&st, &[&q.since, &q.user, &(q.limit as i64)])
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditRecord {
                at: r.get(0),
                actor: r.get(1),
                action: r.get(2),
                subject: r.get(3),
                network: r.get(4),
                result: r.get(5),
                detail: r.get(6),
            })
            .collect())
    }

    async fn audit_prune(&self, before: i64) -> StoreResult<u64> {
        let c = self.conn().await?;
        Ok(c.execute("DELETE FROM audit WHERE at < $1", &[&before])
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(at: i64, actor: &str, action: &str, subject: &str) -> AuditRecord {
        AuditRecord {
            at,
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            network: "127.0.0.1".into(),
            result: 0,
            detail: String::new(),
        }
    }

    #[tokio::test]
    async fn sqlite_appends_lists_in_order_filters_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("a.db")).unwrap();
        s.audit_append(rec(10, "ann", "register", ""))
            .await
            .unwrap();
        s.audit_append(rec(20, "bob", "bind", "ann,cid"))
            .await
            .unwrap();
        s.audit_append(rec(30, "admin", "admin.user.delete", "bob"))
            .await
            .unwrap();
        s.audit_append(rec(30, "anna", "login", "")).await.unwrap();
        let all = |user: Option<&str>, since| AuditQuery {
            user: user.map(str::to_owned),
            since,
            limit: 100,
        };
        let ann = s.audit_list(all(Some("ann"), 0)).await.unwrap();
        let actions: Vec<_> = ann.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(
            actions,
            ["register", "bind"],
            "actor or subject, not a prefix"
        );
        let bob = s.audit_list(all(Some("bob"), 0)).await.unwrap();
        assert_eq!(bob.len(), 2);
        assert_eq!(s.audit_list(all(None, 20)).await.unwrap().len(), 3);
        assert_eq!(s.audit_prune(30).await.unwrap(), 2);
        assert_eq!(s.audit_list(all(None, 0)).await.unwrap()[0].actor, "admin");
    }
}
