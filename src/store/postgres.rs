//! The PostgreSQL store: for several `register` instances sharing one database (docs/SCALING.md).
//!
//! Method by method it has the semantics of [`super::sqlite::SqliteStore`]: constraint
//! violations are [`StoreError::Exists`], the compare-and-set methods are single `UPDATE … WHERE
//! state = …` / `DELETE … WHERE state = …` statements whose row count says who won (PostgreSQL
//! re-checks the `WHERE` on the newest row version after waiting for a concurrent writer, so
//! exactly one of two racing claims succeeds), `take_captcha` is `DELETE … RETURNING`, and what
//! SQLite does in a transaction is a transaction here too. Where SQLite relies on its single
//! writer, this store takes row locks instead: `insert_binding` locks both accounts `FOR SHARE`
//! while it checks that they are active, so a concurrent `begin_cancel` either waits for the new
//! pair row (and then finds it) or has already committed (and the insert is refused).
//!
//! Connections come from a small pool (deadpool-postgres) with cached prepared statements. The
//! connection is made without TLS (`NoTls`), which is right for a database on loopback or a
//! private socket; a database reached over a network should get TLS (not built yet).
//!
//! The schema is `schema_pg.sql`, kept in step with `schema.sql`. The version is recorded in a
//! `schema_version` table; `MIGRATIONS[i]` takes version `i` to `i + 1`. Migrations run in one
//! transaction holding a transaction-level advisory lock, so several instances starting at once
//! apply each step exactly once.
//!
//! Changes to accounts and tokens are logged by triggers in `account_changes` (migration 0008)
//! and announced with `NOTIFY`; a listener task on a connection of its own reads the log by
//! sequence number and publishes it on the store's [`ChangeFeed`], which is not live while that
//! connection is down (see [`super::changes`] and docs/SCALING.md). A write that changed an
//! account reads the log itself before it returns, so this instance's cache forgets at once.
//!
//! The reconciler lease ([`ReconcileStore::try_lock_reconciler`]) is a session-level advisory lock held on
//! a dedicated pooled connection for the length of the run: if the instance dies, the server
//! ends its session and the lease with it.

use std::time::Duration;

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::rows::{account, bind_token, binding, Columns, ACCOUNT_COLS};
use super::*;

/// Numbered schema steps; index `i` upgrades version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../schema_pg.sql"),
    include_str!("../../migrations/postgres/0002_bind_tokens.sql"),
    include_str!("../../migrations/postgres/0003_token_order.sql"),
    include_str!("../../migrations/postgres/0004_login_failures.sql"),
    include_str!("../../migrations/postgres/0005_last_login_network.sql"),
    include_str!("../../migrations/postgres/0006_sign_nonces.sql"),
    include_str!("../../migrations/postgres/0007_audit.sql"),
    include_str!("../../migrations/postgres/0008_account_changes.sql"),
];

/// The schema version this binary brings a database to.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Advisory lock keys (one 64-bit key space per database): "register" in ASCII, plus a suffix.
const MIGRATION_LOCK: i64 = 0x7265_6769_7374_6572;
const RECONCILER_LOCK: i64 = 0x7265_6769_7374_6501;
/// Taken by the change-log triggers (migration 0008, which spells it in decimal), so that
/// sequence order is commit order.
#[allow(dead_code)]
const CHANGES_LOCK: i64 = 0x7265_6769_7374_6502;

/// The channel the change-log triggers notify.
const CHANNEL: &str = "register_changes";
/// How often the listener reads the log even without a notification: the bound on staleness
/// should a notification be lost, and the heartbeat that finds a dead connection.
const POLL: Duration = Duration::from_millis(250);
/// How long a read of the log may take before the listener's connection counts as lost.
const POLL_TIMEOUT: Duration = Duration::from_millis(500);
/// Rows of the change log older than this are pruned.
const CHANGES_KEPT_SECS: i64 = 3600;

/// PostgreSQL-backed [`Store`].
pub struct PgStore {
    pool: Pool,
    /// The connection holding the reconciler's advisory lock, while this instance holds it.
    reconciler: tokio::sync::Mutex<Option<Object>>,
    /// Account changes (see [`super::changes`]).
    feed: Arc<ChangeFeed>,
    /// The change log as far as this instance has read it.
    log: Arc<ChangeLog>,
    /// The listener task, stopped with the store.
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Reads the change log past a `seq` (a page of it: the rest on the next read).
const READ_CHANGES: &str =
    "SELECT seq, account_id FROM account_changes WHERE seq > $1 ORDER BY seq LIMIT 10000";

/// This instance's reading of the `account_changes` log.
struct ChangeLog {
    /// The highest `seq` read and published.
    last: std::sync::atomic::AtomicI64,
    feed: Arc<ChangeFeed>,
    /// One reader at a time, so that each change is published once.
    reading: tokio::sync::Mutex<()>,
}

impl ChangeLog {
    /// Reads the log past what was read and publishes it; returns once published.
    async fn catch_up(
        &self,
        c: &tokio_postgres::Client,
        read: &tokio_postgres::Statement,
    ) -> StoreResult<()> {
        let _one = self.reading.lock().await;
        let from = self.last.load(std::sync::atomic::Ordering::SeqCst);
        let rows = c.query(read, &[&from]).await?;
        let Some(top) = rows.last().map(|r| r.get::<_, i64>(0)) else {
            return Ok(());
        };
        let mut ids: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
        ids.sort_unstable();
        ids.dedup();
        self.feed.changed(ids);
        self.last
            .fetch_max(top, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// After a lost connection: true when rows this instance never read were pruned meanwhile
    /// (it then cannot know what changed).
    async fn missed(&self, c: &tokio_postgres::Client) -> StoreResult<bool> {
        let last = self.last.load(std::sync::atomic::Ordering::SeqCst);
        let r = c
            .query_one(
                "SELECT (SELECT min(seq) FROM account_changes), \
                 (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM account_changes_seq_seq)",
                &[],
            )
            .await?;
        let (min, top): (Option<i64>, i64) = (r.get(0), r.get(1));
        Ok(match min {
            Some(min) => min > last + 1,
            None => top > last,
        })
    }
}

/// Listens for `NOTIFY register_changes` on a connection of its own and publishes the log; marks
/// the feed not live while that connection is down, and catches up by sequence number when it is
/// back (forgetting everything when rows it never read were pruned meanwhile).
async fn listen(cfg: tokio_postgres::Config, log: Arc<ChangeLog>) {
    use futures::StreamExt;
    let mut first = true;
    loop {
        if !first {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        first = false;
        let (client, mut conn) = match cfg.connect(NoTls).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "change listener: cannot connect");
                continue;
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let driver = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(Ok(m)) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notification(_) = m {
                    let _ = tx.send(());
                }
            }
            // Dropping `tx` tells the listener the connection is gone.
        });
        let started = async {
            client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
            let read = client.prepare(READ_CHANGES).await?;
            if log.missed(&client).await? {
                tracing::warn!(
                    "change listener: changes were pruned before they were read: cache cleared"
                );
                log.feed.reset();
                let top: i64 = client
                    .query_one("SELECT coalesce(max(seq), 0) FROM account_changes", &[])
                    .await?
                    .get(0);
                log.last.fetch_max(top, std::sync::atomic::Ordering::SeqCst);
            }
            log.catch_up(&client, &read).await?;
            Ok::<_, StoreError>(read)
        };
        let read = match tokio::time::timeout(Duration::from_secs(5), started).await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "change listener: cannot start");
                driver.abort();
                continue;
            }
            Err(_) => {
                tracing::warn!("change listener: start timed out");
                driver.abort();
                continue;
            }
        };
        log.feed.set_live(true);
        tracing::debug!("change listener: live");
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                n = rx.recv() => if n.is_none() { break },
                _ = tick.tick() => {}
            }
            while rx.try_recv().is_ok() {}
            match tokio::time::timeout(POLL_TIMEOUT, log.catch_up(&client, &read)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "change listener: read failed");
                    break;
                }
                Err(_) => {
                    tracing::warn!("change listener: read timed out");
                    break;
                }
            }
        }
        log.feed.set_live(false);
        tracing::warn!(
            "change listener: connection lost; token checks read the database until it is back"
        );
        driver.abort();
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // Class 23: integrity constraint violation (unique, check, foreign key, not null), as
        // SQLite's SQLITE_CONSTRAINT.
        if e.code().is_some_and(|c| c.code().starts_with("23")) {
            return StoreError::Exists;
        }
        StoreError::Db(match e.as_db_error() {
            Some(d) => format!("postgresql: {}", d.message()),
            None => format!("postgresql: {e}"),
        })
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Db(format!("postgresql pool: {e}"))
    }
}

impl PgStore {
    /// Connect to `url` (`postgres://user[:password]@host:port/dbname`), with at most
    /// `max_connections` connections, and create or migrate the schema.
    pub async fn connect(url: &str, max_connections: usize) -> StoreResult<PgStore> {
        PgStore::connect_as(url, max_connections, "register").await
    }

    /// [`connect`](Self::connect), with `name` as the connections' `application_name` (the
    /// change listener's is `name` with ` listener` appended), as `pg_stat_activity` shows them.
    pub async fn connect_as(url: &str, max_connections: usize, name: &str) -> StoreResult<PgStore> {
        let mut cfg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Db(format!("database.url: {e}")))?;
        cfg.application_name(name);
        let mut listener_cfg = cfg.clone();
        listener_cfg.application_name(format!("{name} listener"));
        let mgr = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(max_connections.max(2))
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Db(format!("postgresql pool: {e}")))?;
        migrate(&pool).await?;
        let feed = ChangeFeed::new(false);
        let top: i64 = pool
            .get()
            .await?
            .query_one("SELECT coalesce(max(seq), 0) FROM account_changes", &[])
            .await?
            .get(0);
        let log = Arc::new(ChangeLog {
            last: std::sync::atomic::AtomicI64::new(top),
            feed: feed.clone(),
            reading: tokio::sync::Mutex::new(()),
        });
        let listener = tokio::spawn(listen(listener_cfg, log.clone()));
        Ok(PgStore {
            pool,
            reconciler: tokio::sync::Mutex::new(None),
            feed,
            log,
            listener,
        })
    }

    pub(super) async fn conn(&self) -> StoreResult<Object> {
        Ok(self.pool.get().await?)
    }

    /// Publishes what the log holds past what this instance read: called after a write that may
    /// have changed an account, so that this instance's cache forgets it before the write
    /// returns (the listener would within a poll; other instances hear of it through it).
    /// A failure is logged, not returned: the write itself succeeded, and the listener
    /// publishes the change within a poll.
    async fn sync_changes(&self) {
        let r = async {
            let c = self.conn().await?;
            let read = c.prepare_cached(READ_CHANGES).await?;
            self.log.catch_up(&c, &read).await
        };
        if let Err(e) = r.await {
            tracing::warn!(error = %e, "reading the change log after a write");
        }
    }

    /// [`exec`](Self::exec) for a statement that may change an account or its tokens: when it
    /// changed rows, the change log is read before returning ([`sync_changes`](Self::sync_changes)).
    async fn exec_changing(&self, sql: &str, params: Params<'_>) -> StoreResult<u64> {
        let n = self.exec(sql, params).await?;
        if n > 0 {
            self.sync_changes().await;
        }
        Ok(n)
    }
}

/// Bring the schema to `MIGRATIONS.len()`, under an advisory lock so that concurrent
/// instances do not race (the lock is released with the transaction).
async fn migrate(pool: &Pool) -> StoreResult<()> {
    {
        let mut c = pool.get().await?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (\
             version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
        let v: i64 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
            .await?
            .get(0);
        if v as usize > MIGRATIONS.len() {
            return Err(StoreError::Db(format!(
                "database schema version {v} is newer than this binary ({})",
                MIGRATIONS.len()
            )));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        for (i, step) in MIGRATIONS.iter().enumerate().skip(v as usize) {
            tx.batch_execute(step).await?;
            tx.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
                &[&((i + 1) as i64), &now],
            )
            .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

impl PgStore {
    /// The schema version recorded in the database.
    pub async fn schema_version(&self) -> StoreResult<i64> {
        let c = self.conn().await?;
        Ok(
            c.query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
                .await?
                .get(0),
        )
    }

    async fn accounts_where(&self, column: &str, values: &[String]) -> StoreResult<Vec<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE {column} = ANY($1)");
        self.rows(&sql, &[&values], account).await
    }

    /// Run one query and map each row it returns.
    async fn rows<T>(&self, sql: &str, params: Params<'_>, map: RowMap<T>) -> StoreResult<Vec<T>> {
        all(&self.conn().await?, sql, params, map).await
    }

    /// Run one query and map the row it returns, if any.
    async fn row<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        map: RowMap<T>,
    ) -> StoreResult<Option<T>> {
        let c = self.conn().await?;
        let st = c.prepare_cached(sql).await?;
        c.query_opt(&st, params)
            .await?
            .as_ref()
            .map(map)
            .transpose()
    }

    /// Run one statement and return the number of rows it changed.
    async fn exec(&self, sql: &str, params: Params<'_>) -> StoreResult<u64> {
        run(&self.conn().await?, sql, params).await
    }
}

/// A statement's parameters.
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];
/// Reads one row.
type RowMap<T> = fn(&Row) -> StoreResult<T>;

/// Runs one statement, prepared once per connection, on `c` (a connection or a transaction);
/// returns the number of rows it changed.
pub(super) async fn run(c: &impl GenericClient, sql: &str, params: Params<'_>) -> StoreResult<u64> {
    let st = c.prepare_cached(sql).await?;
    Ok(c.execute(&st, params).await?)
}

/// Runs one query, prepared once per connection, on `c` and maps each row it returns.
async fn all<T>(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    map: RowMap<T>,
) -> StoreResult<Vec<T>> {
    let st = c.prepare_cached(sql).await?;
    c.query(&st, params).await?.iter().map(map).collect()
}

/// PostgreSQL's column types, as the shared row mappings read them.
impl Columns for Row {
    type Error = StoreError;
    fn int(&self, i: usize) -> StoreResult<i64> {
        Ok(self.try_get(i)?)
    }
    fn opt_int(&self, i: usize) -> StoreResult<Option<i64>> {
        Ok(self.try_get(i)?)
    }
    /// `INT`.
    fn code(&self, i: usize) -> StoreResult<i64> {
        Ok(i64::from(self.try_get::<_, i32>(i)?))
    }
    /// `INT`.
    fn count(&self, i: usize) -> StoreResult<u32> {
        Ok(self.try_get::<_, i32>(i)?.max(0) as u32)
    }
    fn text(&self, i: usize) -> StoreResult<String> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> StoreResult<Option<String>> {
        Ok(self.try_get(i)?)
    }
    fn blob(&self, i: usize) -> StoreResult<Vec<u8>> {
        Ok(self.try_get(i)?)
    }
    fn bad(&self, _: usize, what: &str) -> StoreError {
        StoreError::Db(format!("bad {what} in the database"))
    }
}

#[async_trait::async_trait]
impl Maintenance for PgStore {
    fn change_feed(&self) -> Arc<ChangeFeed> {
        self.feed.clone()
    }
    async fn ping(&self) -> StoreResult<()> {
        let c = self.conn().await?;
        c.query_one("SELECT 1", &[]).await?;
        Ok(())
    }
    async fn prune(&self, now: i64) -> StoreResult<()> {
        for sql in [
            "DELETE FROM captchas WHERE expires_at <= $1",
            "DELETE FROM tokens WHERE expires_at <= $1",
            "DELETE FROM login_failures WHERE updated_at <= $1::BIGINT - 86400 AND locked_until <= $1",
            "DELETE FROM bind_tokens WHERE expires_at <= $1",
        ] {
            self.exec(sql, &[&now]).await?;
        }
        // The change log by the database's clock, as its rows are stamped.
        self.exec(
            "DELETE FROM account_changes WHERE at < extract(epoch FROM now())::BIGINT - $1",
            &[&CHANGES_KEPT_SECS],
        )
        .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl AccountStore for PgStore {
    async fn insert_pending_account(&self, n: NewAccount, now: i64) -> StoreResult<i64> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO accounts (user_name, type, device_type, des, password_hash, jid_node, \
                 jid_pwd, state, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8) RETURNING id",
            )
            .await?;
        let kind = n.kind.code() as i32;
        let row = c
            .query_one(
                &st,
                &[
                    &n.user_name,
                    &kind,
                    &n.device_type,
                    &n.des,
                    &n.password_hash,
                    &n.jid_node,
                    &n.jid_pwd,
                    &now,
                ],
            )
            .await?;
        Ok(row.try_get(0)?)
    }
    async fn set_account_state(&self, id: i64, state: AccountState, now: i64) -> StoreResult<()> {
        self.exec_changing(
            "UPDATE accounts SET state = $2, updated_at = $3 WHERE id = $1",
            &[&id, &state.as_str(), &now],
        )
        .await?;
        Ok(())
    }
    async fn transition_account(
        &self,
        id: i64,
        from: AccountState,
        to: AccountState,
        now: i64,
    ) -> StoreResult<bool> {
        let n = self
            .exec_changing(
                "UPDATE accounts SET state = $3, updated_at = $4 WHERE id = $1 AND state = $2",
                &[&id, &from.as_str(), &to.as_str(), &now],
            )
            .await?;
        Ok(n == 1)
    }
    async fn delete_account(&self, id: i64) -> StoreResult<()> {
        self.exec_changing("DELETE FROM accounts WHERE id = $1", &[&id])
            .await?;
        Ok(())
    }
    async fn account_by_name(&self, name: &str) -> StoreResult<Option<Account>> {
        Ok(self
            .accounts_where("user_name", &[name.to_owned()])
            .await?
            .pop())
    }
    async fn account_by_id(&self, id: i64) -> StoreResult<Option<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = $1");
        self.row(&sql, &[&id], account).await
    }
    async fn accounts_by_nodes(&self, nodes: &[String]) -> StoreResult<Vec<Account>> {
        self.accounts_where("jid_node", nodes).await
    }
    async fn list_accounts(&self, after_id: i64, limit: u32) -> StoreResult<Vec<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id > $1 ORDER BY id LIMIT $2");
        self.rows(&sql, &[&after_id, &(limit as i64)], account)
            .await
    }
    async fn begin_cancel(&self, id: i64, now: i64) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        let n = run(
            &tx,
            "UPDATE accounts SET state = 'deleting', updated_at = $2 \
             WHERE id = $1 AND state <> 'deleting'",
            &[&id, &now],
        )
        .await?;
        run(&tx, "DELETE FROM tokens WHERE account_id = $1", &[&id]).await?;
        tx.commit().await?;
        self.sync_changes().await;
        Ok(n == 1)
    }
    async fn set_password(&self, id: i64, password_hash: String, now: i64) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        let n = run(
            &tx,
            "UPDATE accounts SET password_hash = $2, updated_at = $3 \
             WHERE id = $1 AND state = 'active'",
            &[&id, &password_hash, &now],
        )
        .await?;
        if n == 1 {
            run(&tx, "DELETE FROM tokens WHERE account_id = $1", &[&id]).await?;
        }
        tx.commit().await?;
        self.sync_changes().await;
        Ok(n == 1)
    }
}

#[async_trait::async_trait]
impl LoginStore for PgStore {
    async fn claim_login_attempt(
        &self,
        id: i64,
        network: String,
        now: i64,
        p: LockPolicy,
    ) -> StoreResult<bool> {
        let per_account = p.per_account.min(i32::MAX as u32) as i32;
        let per_network = p.per_network.min(i32::MAX as u32) as i32;
        let until = now + p.lock_secs;
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        // FOR UPDATE on the account row: every claim on one account, from any instance, waits
        // for the one before it. The network's row is read by a second statement, whose snapshot
        // is taken after that wait (READ COMMITTED), so it sees the claim before.
        let account_locked: Option<bool> = tx
            .query_opt(
                "SELECT locked_until > $2 AND last_login_network <> $3 \
                 FROM accounts WHERE id = $1 FOR UPDATE",
                &[&id, &now, &network],
            )
            .await?
            .map(|r| r.get(0));
        let network_locked: Option<bool> = tx
            .query_opt(
                "SELECT locked_until > $3 FROM login_failures \
                 WHERE account_id = $1 AND network = $2",
                &[&id, &network, &now],
            )
            .await?
            .map(|r| r.get(0));
        let locked = account_locked.map(|a| a || network_locked.unwrap_or(false));
        if locked.unwrap_or(true) {
            return Ok(false);
        }
        tx.execute(
            "UPDATE accounts SET \
             locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until END, \
             failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END \
             WHERE id = $1",
            &[&id, &per_account, &until],
        )
        .await?;
        tx.execute(
            "INSERT INTO login_failures AS f (account_id, network, failures, locked_until, updated_at) \
             VALUES ($1, $2, CASE WHEN $3::INT <= 1 THEN 0 ELSE 1 END, \
                     CASE WHEN $3::INT <= 1 THEN $4::BIGINT ELSE 0 END, $5::BIGINT) \
             ON CONFLICT (account_id, network) DO UPDATE SET \
             locked_until = CASE WHEN f.failures + 1 >= $3 THEN $4 ELSE f.locked_until END, \
             failures = CASE WHEN f.failures + 1 >= $3 THEN 0 ELSE f.failures + 1 END, \
             updated_at = $5",
            &[&id, &network, &per_network, &until, &now],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
    async fn locked_networks(&self, id: i64, now: i64) -> StoreResult<Vec<(String, i64)>> {
        self.rows(
            "SELECT network, locked_until FROM login_failures \
             WHERE account_id = $1 AND locked_until > $2 ORDER BY network",
            &[&id, &now],
            |r| Ok((r.try_get(0)?, r.try_get(1)?)),
        )
        .await
    }
    async fn reset_login_failures(&self, id: i64, network: String) -> StoreResult<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        tx.execute(
            "DELETE FROM login_failures WHERE account_id = $1 AND network = $2",
            &[&id, &network],
        )
        .await?;
        tx.execute(
            "UPDATE accounts SET last_login_network = $2, \
             failed_logins = greatest(failed_logins - 1, 0) WHERE id = $1",
            &[&id, &network],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl TokenStore for PgStore {
    async fn revoke_token(&self, id: i64, hash: Vec<u8>) -> StoreResult<bool> {
        let n = self
            .exec_changing(
                "DELETE FROM tokens WHERE account_id = $1 AND hash = $2",
                &[&id, &hash],
            )
            .await?;
        Ok(n == 1)
    }
    async fn revoke_tokens(&self, id: i64) -> StoreResult<u64> {
        self.exec_changing("DELETE FROM tokens WHERE account_id = $1", &[&id])
            .await
    }
    async fn trim_tokens(&self, id: i64, newest: Vec<u8>, keep: u32) -> StoreResult<u64> {
        let keep = i64::from(keep.saturating_sub(1));
        self.exec_changing(
            "DELETE FROM tokens WHERE account_id = $1 AND hash <> $2 AND hash NOT IN \
             (SELECT hash FROM tokens WHERE account_id = $1 AND hash <> $2 \
              ORDER BY seq DESC LIMIT $3)",
            &[&id, &newest, &keep],
        )
        .await
    }
    async fn insert_token(
        &self,
        hash: Vec<u8>,
        account_id: i64,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        self.exec(
            "INSERT INTO tokens (hash, account_id, expires_at, created_at) VALUES ($1, $2, $3, $4)",
            &[&hash, &account_id, &expires_at, &now],
        )
        .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Lookups for PgStore {
    async fn accounts_by_names(&self, names: &[String]) -> StoreResult<Vec<Arc<Account>>> {
        let found = self.accounts_where("user_name", names).await?;
        Ok(found.into_iter().map(Arc::new).collect())
    }
    async fn token_account(
        &self,
        hash: Vec<u8>,
        now: i64,
    ) -> StoreResult<Option<(Arc<Account>, i64)>> {
        let cols = ACCOUNT_COLS
            .split(", ")
            .map(|s| format!("a.{s}"))
            .collect::<Vec<_>>()
            .join(", ");
        let c = self.conn().await?;
        let st = c
            .prepare_cached(&format!(
                "SELECT {cols}, t.expires_at FROM tokens t JOIN accounts a ON a.id = t.account_id \
                 WHERE t.hash = $1 AND t.expires_at > $2 AND a.state = 'active'"
            ))
            .await?;
        match c.query_opt(&st, &[&hash, &now]).await? {
            Some(r) => Ok(Some((Arc::new(account(&r)?), r.try_get(13)?))),
            None => Ok(None),
        }
    }
}

#[async_trait::async_trait]
impl PairStore for PgStore {
    async fn bindings_of(&self, id: i64) -> StoreResult<Vec<Binding>> {
        self.rows(
            "SELECT a, b, state, updated_at FROM bindings WHERE a = $1 \
             UNION ALL SELECT a, b, state, updated_at FROM bindings WHERE b = $1",
            &[&id],
            binding,
        )
        .await
    }
    async fn insert_binding(
        &self,
        a: i64,
        b: i64,
        state: BindingState,
        now: i64,
    ) -> StoreResult<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        // FOR SHARE: a concurrent begin_cancel (an UPDATE of the row) waits for this transaction,
        // or, if it committed first, the row is re-read as `deleting` and not counted.
        let check = tx
            .prepare_cached(
                "SELECT id FROM accounts WHERE id IN ($1, $2) AND state = 'active' FOR SHARE",
            )
            .await?;
        let active = tx.query(&check, &[&a, &b]).await?.len();
        if active != 2 {
            // (With a == b the count is 1 as well: `Changed`, as in SQLite's single statement.)
            return Err(StoreError::Changed);
        }
        run(
            &tx,
            "INSERT INTO bindings (a, b, state, updated_at) VALUES ($1, $2, $3, $4)",
            &[&a, &b, &state.as_str(), &now],
        )
        .await?;
        tx.commit().await?;
        self.sync_changes().await;
        Ok(())
    }
    async fn set_binding_state(
        &self,
        a: i64,
        b: i64,
        state: BindingState,
        now: i64,
    ) -> StoreResult<()> {
        self.exec_changing(
            "UPDATE bindings SET state = $3, updated_at = $4 WHERE a = $1 AND b = $2",
            &[&a, &b, &state.as_str(), &now],
        )
        .await?;
        Ok(())
    }
    async fn delete_binding(&self, a: i64, b: i64) -> StoreResult<()> {
        self.exec_changing("DELETE FROM bindings WHERE a = $1 AND b = $2", &[&a, &b])
            .await?;
        Ok(())
    }
    async fn transition_binding(
        &self,
        a: i64,
        b: i64,
        from: BindingState,
        to: BindingState,
        now: i64,
    ) -> StoreResult<bool> {
        let n = self
            .exec_changing(
                "UPDATE bindings SET state = $4, updated_at = $5 \
                 WHERE a = $1 AND b = $2 AND state = $3",
                &[&a, &b, &from.as_str(), &to.as_str(), &now],
            )
            .await?;
        Ok(n == 1)
    }
    async fn delete_binding_in(&self, a: i64, b: i64, state: BindingState) -> StoreResult<bool> {
        let n = self
            .exec_changing(
                "DELETE FROM bindings WHERE a = $1 AND b = $2 AND state = $3",
                &[&a, &b, &state.as_str()],
            )
            .await?;
        Ok(n == 1)
    }
    async fn binding(&self, a: i64, b: i64) -> StoreResult<Option<Binding>> {
        self.row(
            "SELECT a, b, state, updated_at FROM bindings WHERE a = $1 AND b = $2",
            &[&a, &b],
            binding,
        )
        .await
    }
    async fn insert_binding_capped(
        &self,
        a: i64,
        b: i64,
        now: i64,
        caps: PairCaps,
    ) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        // FOR UPDATE, in id order (no deadlock between two binds of one device): concurrent binds
        // touching either account wait here, so each counts the pairs the others added; a
        // concurrent begin_cancel waits too, or has committed and the row is not counted.
        let check = tx
            .prepare_cached(
                "SELECT id FROM accounts WHERE id IN ($1, $2) AND state = 'active' \
                 ORDER BY id FOR UPDATE",
            )
            .await?;
        if tx.query(&check, &[&a, &b]).await?.len() != 2 {
            return Err(StoreError::Changed);
        }
        let count = tx
            .prepare_cached(
                "SELECT (SELECT count(*) FROM bindings WHERE a = $1) + \
                 (SELECT count(*) FROM bindings WHERE b = $1)",
            )
            .await?;
        let device: i64 = tx.query_one(&count, &[&caps.device]).await?.try_get(0)?;
        let phone: i64 = tx.query_one(&count, &[&caps.phone]).await?.try_get(0)?;
        if device >= caps.max_phones as i64 || phone >= caps.max_devices as i64 {
            return Ok(false);
        }
        run(
            &tx,
            "INSERT INTO bindings (a, b, state, updated_at) VALUES ($1, $2, 'binding', $3)",
            &[&a, &b, &now],
        )
        .await?;
        tx.commit().await?;
        self.sync_changes().await;
        Ok(true)
    }
}

#[async_trait::async_trait]
impl BindTokenStore for PgStore {
    async fn insert_bind_token(
        &self,
        hash: Vec<u8>,
        issuer: i64,
        device: Option<i64>,
        expires_at: i64,
        now: i64,
        keep: u32,
    ) -> StoreResult<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        // The issuer's row locked: two tokens issued at once by one account void in turn.
        let lock = "SELECT id FROM accounts WHERE id = $1 FOR UPDATE";
        run(&tx, lock, &[&issuer]).await?;
        run(
            &tx,
            "INSERT INTO bind_tokens (hash, issuer, device, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
            &[&hash, &issuer, &device, &expires_at, &now],
        )
        .await?;
        run(
            &tx,
            "DELETE FROM bind_tokens WHERE issuer = $1 AND id NOT IN \
             (SELECT id FROM bind_tokens WHERE issuer = $1 ORDER BY id DESC LIMIT $2)",
            &[&issuer, &(keep as i64)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
    async fn bind_token(&self, hash: Vec<u8>, now: i64) -> StoreResult<Option<BindToken>> {
        self.row(
            "SELECT issuer, device, expires_at FROM bind_tokens \
             WHERE hash = $1 AND expires_at > $2",
            &[&hash, &now],
            bind_token,
        )
        .await
    }
    async fn take_bind_token(&self, hash: Vec<u8>, now: i64) -> StoreResult<Option<BindToken>> {
        self.row(
            "DELETE FROM bind_tokens WHERE hash = $1 AND expires_at > $2 \
             RETURNING issuer, device, expires_at",
            &[&hash, &now],
            bind_token,
        )
        .await
    }
    async fn bind_failures(&self, account: i64, since: i64) -> StoreResult<u32> {
        let c = self.conn().await?;
        let st = c
            .prepare_cached("SELECT count(*) FROM bind_failures WHERE account_id = $1 AND at >= $2")
            .await?;
        let n: i64 = c.query_one(&st, &[&account, &since]).await?.try_get(0)?;
        Ok(n.max(0) as u32)
    }
    async fn record_bind_failure(&self, account: i64, now: i64, since: i64) -> StoreResult<u32> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await?;
        let forget = "DELETE FROM bind_failures WHERE account_id = $1 AND at < $2";
        run(&tx, forget, &[&account, &since]).await?;
        let record = "INSERT INTO bind_failures (account_id, at) VALUES ($1, $2)";
        run(&tx, record, &[&account, &now]).await?;
        let count = tx
            .prepare_cached("SELECT count(*) FROM bind_failures WHERE account_id = $1")
            .await?;
        let n: i64 = tx.query_one(&count, &[&account]).await?.try_get(0)?;
        tx.commit().await?;
        Ok(n.max(0) as u32)
    }
    async fn void_bind_tokens(&self, account: i64) -> StoreResult<u64> {
        self.exec(
            "DELETE FROM bind_tokens WHERE issuer = $1 OR device = $1",
            &[&account],
        )
        .await
    }
    async fn forget_bind_failure(&self, account: i64, at: i64) -> StoreResult<()> {
        self.exec(
            "DELETE FROM bind_failures WHERE ctid IN \
             (SELECT ctid FROM bind_failures WHERE account_id = $1 AND at = $2 LIMIT 1)",
            &[&account, &at],
        )
        .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl CaptchaStore for PgStore {
    async fn insert_captcha(&self, id: String, answer: String, expires_at: i64) -> StoreResult<()> {
        self.exec(
            "INSERT INTO captchas (id, answer, expires_at) VALUES ($1, $2, $3)",
            &[&id, &answer, &expires_at],
        )
        .await?;
        Ok(())
    }
    async fn take_captcha(&self, id: String) -> StoreResult<Option<(String, i64)>> {
        self.row(
            "DELETE FROM captchas WHERE id = $1 RETURNING answer, expires_at",
            &[&id],
            |r| Ok((r.try_get(0)?, r.try_get(1)?)),
        )
        .await
    }
}

#[async_trait::async_trait]
impl ReconcileStore for PgStore {
    async fn unfinished(&self, before: i64) -> StoreResult<(Vec<Account>, Vec<Binding>)> {
        let c = self.conn().await?;
        let accounts = format!(
            "SELECT {ACCOUNT_COLS} FROM accounts \
             WHERE state <> 'active' AND updated_at < $1 ORDER BY id"
        );
        let accounts = all(&c, &accounts, &[&before], account).await?;
        let bindings = "SELECT a, b, state, updated_at FROM bindings \
                        WHERE state <> 'bound' AND updated_at < $1";
        let bindings = all(&c, bindings, &[&before], binding).await?;
        Ok((accounts, bindings))
    }
    async fn try_lock_reconciler(&self) -> StoreResult<bool> {
        let mut held = self.reconciler.lock().await;
        if held.is_some() {
            // This instance is already reconciling.
            return Ok(false);
        }
        let c = self.conn().await?;
        let got: bool = c
            .query_one("SELECT pg_try_advisory_lock($1)", &[&RECONCILER_LOCK])
            .await?
            .try_get(0)?;
        if got {
            *held = Some(c);
        }
        Ok(got)
    }
    async fn unlock_reconciler(&self) -> StoreResult<()> {
        let Some(c) = self.reconciler.lock().await.take() else {
            return Ok(());
        };
        match c
            .query_one("SELECT pg_advisory_unlock($1)", &[&RECONCILER_LOCK])
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                // Close the session rather than return it to the pool still holding the lock.
                drop(Object::take(c));
                Err(e.into())
            }
        }
    }
}
