//! The SQLite store: one writer connection on a thread of its own, and a few readers used on the
//! blocking pool, by at most one read each at a time (reads beyond that wait as tasks, not as
//! threads).
//!
//! WAL mode lets readers run beside the single writer; `synchronous = FULL` makes every
//! acknowledged commit survive a process kill or power loss; `busy_timeout` absorbs other
//! processes (the admin CLI) holding the write lock. Writes are serialized by the writer thread,
//! so SQLite's own locking never returns BUSY to a request. The schema is versioned with
//! `PRAGMA user_version`; `MIGRATIONS[i]` takes version `i` to `i + 1`.
//!
//! **Group commit.** A commit costs an `fsync`, and concurrent requests each made their own. The
//! writer thread takes every write waiting when it is free (at most [`MAX_GROUP`]) and, when there
//! are several, runs them in one transaction, each inside a savepoint: a write that fails is
//! rolled back alone, as it would have been by itself. Each caller gets its answer only after the
//! group's commit, so "acknowledged" still means "on disk"; a failed commit fails every write of
//! the group. One write waiting alone runs as before, in autocommit mode. A write must therefore
//! not open a transaction of its own with `BEGIN` (`Connection::transaction`); it uses a
//! savepoint (`Connection::savepoint`), which works inside a group and alone.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::rows::{self, Columns, ACCOUNT_COLS};
use super::*;

/// Numbered schema steps; index `i` upgrades `user_version` `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../schema.sql"),
    include_str!("../../migrations/sqlite/0002_bind_tokens.sql"),
    include_str!("../../migrations/sqlite/0003_token_order.sql"),
    include_str!("../../migrations/sqlite/0004_login_failures.sql"),
    include_str!("../../migrations/sqlite/0005_last_login_network.sql"),
    include_str!("../../migrations/sqlite/0006_sign_nonces.sql"),
    include_str!("../../migrations/sqlite/0007_audit.sql"),
];

const READERS: usize = 4;

/// Change capture on the writer's connection (see [`super::changes`]): temporary, so they live
/// in this connection only and write nothing to disk. An account row counts as changed when any
/// column but the login counters (`failed_logins`, `locked_until`, `last_login_network`) changes;
/// a pair row inserted, updated or deleted changes both its accounts.
const CAPTURE: &str = "
CREATE TEMP TABLE changed (account_id INTEGER NOT NULL);
CREATE TEMP TRIGGER changed_account AFTER UPDATE ON main.accounts
WHEN OLD.user_name IS NOT NEW.user_name OR OLD.type IS NOT NEW.type
  OR OLD.device_type IS NOT NEW.device_type OR OLD.des IS NOT NEW.des
  OR OLD.password_hash IS NOT NEW.password_hash OR OLD.jid_node IS NOT NEW.jid_node
  OR OLD.jid_pwd IS NOT NEW.jid_pwd OR OLD.state IS NOT NEW.state
  OR OLD.created_at IS NOT NEW.created_at OR OLD.updated_at IS NOT NEW.updated_at
  OR OLD.id IS NOT NEW.id
BEGIN INSERT INTO changed VALUES (OLD.id); END;
CREATE TEMP TRIGGER deleted_account AFTER DELETE ON main.accounts
BEGIN INSERT INTO changed VALUES (OLD.id); END;
CREATE TEMP TRIGGER deleted_token AFTER DELETE ON main.tokens
BEGIN INSERT INTO changed VALUES (OLD.account_id); END;
CREATE TEMP TRIGGER updated_token AFTER UPDATE ON main.tokens
BEGIN INSERT INTO changed VALUES (OLD.account_id); END;
CREATE TEMP TRIGGER inserted_pair AFTER INSERT ON main.bindings
BEGIN INSERT INTO changed VALUES (NEW.a), (NEW.b); END;
CREATE TEMP TRIGGER updated_pair AFTER UPDATE ON main.bindings
BEGIN INSERT INTO changed VALUES (OLD.a), (OLD.b), (NEW.a), (NEW.b); END;
CREATE TEMP TRIGGER deleted_pair AFTER DELETE ON main.bindings
BEGIN INSERT INTO changed VALUES (OLD.a), (OLD.b); END;
";

/// The accounts changed since the last call (committed or inside the open transaction), once
/// each; empties the record.
fn take_changed(c: &Connection) -> Vec<i64> {
    let taken = c
        .prepare_cached("DELETE FROM temp.changed RETURNING account_id")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()
        });
    match taken {
        Ok(mut ids) => {
            ids.sort_unstable();
            ids.dedup();
            ids
        }
        Err(e) => {
            // Cannot happen short of memory exhaustion; the feed then says it may have missed
            // changes, and every cache forgets everything.
            tracing::error!(error = %e, "reading the changed accounts");
            vec![i64::MIN]
        }
    }
}

/// Publishes what `take_changed` returned.
fn publish(feed: &ChangeFeed, ids: Vec<i64>) {
    if ids.first() == Some(&i64::MIN) {
        feed.reset();
    } else if !ids.is_empty() {
        feed.changed(ids);
    }
}

/// Most writes committed together.
pub const MAX_GROUP: usize = 64;

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    /// To the writer thread; `None` once dropping.
    writes: Option<mpsc::Sender<WriteJob>>,
    writer: Option<JoinHandle<()>>,
    /// Writes or groups of writes run (one commit each), for tests and benchmarks.
    rounds: Arc<AtomicUsize>,
    readers: Arc<Vec<Mutex<Connection>>>,
    /// One permit per reader: a read waits here, as a task, for a free reader, so a burst of reads
    /// takes at most [`READERS`] threads of the blocking pool, not one thread each.
    reading: Arc<tokio::sync::Semaphore>,
    next: AtomicUsize,
    /// Account changes, published by the writer thread after each commit.
    feed: Arc<ChangeFeed>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            if f.code == rusqlite::ErrorCode::ConstraintViolation {
                return StoreError::Exists;
            }
        }
        StoreError::Db(e.to_string())
    }
}

/// A write: runs on the writer's connection and says whether it succeeded; its answer goes out
/// through the returned function once the outcome of the commit is known.
type WriteJob = Box<dyn FnOnce(&mut Connection) -> (bool, Answer) + Send>;
type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    Ok(c)
}

/// Runs one write; a panic counts as a failure (its caller gets an error: the answer is dropped).
fn run_job(c: &mut Connection, job: WriteJob) -> Option<(bool, Answer)> {
    std::panic::catch_unwind(AssertUnwindSafe(|| job(c))).ok()
}

/// Runs one write in autocommit mode. A write that leaves a transaction open is rolled back and
/// fails: the writes after it must not run inside its transaction.
fn run_alone(c: &mut Connection, job: WriteJob, feed: &ChangeFeed) {
    let ran = run_job(c, job);
    let outcome = if c.is_autocommit() {
        Ok(())
    } else {
        let _ = c.execute_batch("ROLLBACK");
        Err("the write left a transaction open".to_owned())
    };
    // In autocommit mode what the triggers recorded is committed (a rolled-back savepoint took
    // its own records with it).
    publish(feed, take_changed(c));
    if let Some((_, answer)) = ran {
        answer(outcome);
    }
}

/// How often the writer asks whether another process committed to the database (the admin CLI
/// writing directly when no instance took its hand-off, an operator's `sqlite3`): at most this
/// long after such a commit, every cache in front of this store has forgotten everything.
pub const EXTERNAL_WRITES_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// Writes by other processes, seen through the writer's connection: its `PRAGMA data_version`
/// moves with every commit by another connection and never with its own, and this process
/// writes only through it, so a move is always someone else's write.
struct ExternalWrites {
    seen: Option<i64>,
    checked: std::time::Instant,
}

impl ExternalWrites {
    fn new(c: &Connection) -> ExternalWrites {
        ExternalWrites {
            seen: data_version(c),
            checked: std::time::Instant::now(),
        }
    }

    /// When a check is due: a commit by another process since the last one resets the feed
    /// (the changes are not known one by one). A failed check resets it too.
    fn check(&mut self, c: &Connection, feed: &ChangeFeed) {
        if self.checked.elapsed() < EXTERNAL_WRITES_CHECK {
            return;
        }
        let now = data_version(c);
        if now.is_none() || now != self.seen {
            tracing::debug!("another process wrote to the database: caches start over");
            feed.reset();
        }
        self.seen = now;
        self.checked = std::time::Instant::now();
    }
}

fn data_version(c: &Connection) -> Option<i64> {
    c.query_row("PRAGMA data_version", [], |r| r.get(0)).ok()
}

/// The writer thread: one write alone in autocommit mode, several in one transaction; between
/// writes, and at least every [`EXTERNAL_WRITES_CHECK`] while idle, the check for writes by
/// other processes.
fn writer_loop(
    mut c: Connection,
    jobs: mpsc::Receiver<WriteJob>,
    rounds: Arc<AtomicUsize>,
    feed: Arc<ChangeFeed>,
) {
    let mut external = ExternalWrites::new(&c);
    loop {
        let first = match jobs.recv_timeout(EXTERNAL_WRITES_CHECK) {
            Ok(job) => Some(job),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        external.check(&c, &feed);
        let Some(first) = first else {
            continue;
        };
        rounds.fetch_add(1, Ordering::Relaxed);
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        if group.len() == 1 {
            if let Some(job) = group.pop() {
                run_alone(&mut c, job, &feed);
            }
            continue;
        }
        if let Err(e) = c.execute_batch("BEGIN IMMEDIATE") {
            // E.g. another process held the write lock past busy_timeout: each write runs alone
            // instead, and meets (and reports) whatever the database says.
            tracing::warn!(error = %e, writes = group.len(), "could not group writes");
            for job in group {
                run_alone(&mut c, job, &feed);
            }
            continue;
        }
        let mut answers = Vec::with_capacity(group.len());
        let mut jobs = group.into_iter();
        // The group stops at the first write it cannot isolate or undo; that write (when it has
        // not run) and the rest then run alone.
        let mut not_run = None;
        let mut aborted = false;
        for job in jobs.by_ref() {
            if c.execute_batch("SAVEPOINT w").is_err() || c.is_autocommit() {
                not_run = Some(job);
                aborted = true;
                break;
            }
            let ran = run_job(&mut c, job);
            if c.is_autocommit() {
                // SQLite rolled the whole transaction back (an I/O error, a full disk).
                answers.extend(ran.map(|(_, a)| a));
                aborted = true;
                break;
            }
            let ok = matches!(ran, Some((true, _)));
            let undo = if ok {
                "RELEASE w"
            } else {
                "ROLLBACK TO w; RELEASE w"
            };
            let undone = c.execute_batch(undo).is_ok() && !c.is_autocommit();
            answers.extend(ran.map(|(_, a)| a));
            if !undone {
                aborted = true;
                break;
            }
        }
        let committed = if aborted {
            Err("the group's transaction could not be completed".to_owned())
        } else {
            c.execute_batch("COMMIT").map_err(|e| e.to_string())
        };
        if committed.is_err() && !c.is_autocommit() {
            let _ = c.execute_batch("ROLLBACK");
        }
        // After a commit: what the group changed; after a rollback: nothing (the records went
        // with it), or what a write that ran before the failure committed alone.
        publish(&feed, take_changed(&c));
        for a in answers {
            a(committed.clone());
        }
        for job in not_run.into_iter().chain(jobs) {
            run_alone(&mut c, job, &feed);
        }
    }
}

impl SqliteStore {
    /// Open (creating and migrating as needed) the database at `path`.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let mut w = open_conn(path)?;
        migrate(&mut w)?;
        w.execute_batch(CAPTURE)?;
        let feed = ChangeFeed::new(true);
        let published = feed.clone();
        let readers = (0..READERS)
            .map(|_| open_conn(path).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let (tx, rx) = mpsc::channel();
        let rounds = Arc::new(AtomicUsize::new(0));
        let counted = rounds.clone();
        let writer = std::thread::Builder::new()
            .name("register-db-writer".into())
            .spawn(move || writer_loop(w, rx, counted, published))
            .map_err(|e| StoreError::Db(format!("writer thread: {e}")))?;
        Ok(SqliteStore {
            writes: Some(tx),
            writer: Some(writer),
            rounds,
            readers: Arc::new(readers),
            reading: Arc::new(tokio::sync::Semaphore::new(READERS)),
            next: AtomicUsize::new(0),
            feed,
        })
    }

    /// How many times the writer has taken writes (alone or as a group) so far.
    pub fn write_rounds(&self) -> usize {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Queues `f` for the writer thread; the answer comes after its commit.
    fn queue<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
        answer: impl FnOnce(StoreResult<T>) + Send + 'static,
    ) -> StoreResult<()> {
        let job: WriteJob = Box::new(move |c| {
            let r = f(c);
            let ok = r.is_ok();
            let answer: Answer = Box::new(move |committed| {
                answer(match committed {
                    Ok(()) => r,
                    Err(e) => Err(StoreError::Db(format!("commit: {e}"))),
                })
            });
            (ok, answer)
        });
        self.writes
            .as_ref()
            .and_then(|w| w.send(job).ok())
            .ok_or_else(|| StoreError::Db("the writer thread is gone".into()))
    }

    pub(super) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue(f, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await
            .map_err(|_| StoreError::Db("write failed (panicked)".into()))?
    }

    /// [`write`](Self::write) inside a savepoint, not a transaction, so that it may run inside a
    /// group (see the module docs): what `f` did is kept when it returns `Ok`, undone otherwise.
    async fn write_atomic<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Savepoint) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.write(move |c| {
            let sp = c.savepoint()?;
            let done = f(&sp)?;
            sp.commit()?;
            Ok(done)
        })
        .await
    }

    /// Runs one statement on the writer thread; returns the number of rows it changed.
    async fn exec(
        &self,
        sql: &'static str,
        params: impl rusqlite::Params + Send + 'static,
    ) -> StoreResult<usize> {
        self.write(move |c| Ok(c.prepare_cached(sql)?.execute(params)?))
            .await
    }

    /// [`write`](Self::write) for synchronous callers (tests).
    #[cfg(test)]
    fn write_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (tx, rx) = mpsc::channel();
        self.queue(f, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv()
            .map_err(|_| StoreError::Db("write failed (panicked)".into()))?
    }

    pub(super) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let readers = self.readers.clone();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // Never closed, so acquiring only waits. Held until `f` is done, even when this future is
        // dropped meanwhile.
        let permit = self.reading.clone().acquire_owned().await;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // With a permit, one reader at least is free (only reads lock them).
            for i in 0..readers.len() {
                if let Ok(c) = readers[(start + i) % readers.len()].try_lock() {
                    return f(&c);
                }
            }
            let c = readers[start % readers.len()]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            f(&c)
        })
        .await
        .map_err(|e| StoreError::Db(format!("store task: {e}")))?
    }
}

impl Drop for SqliteStore {
    /// Finishes the queued writes and closes the writer's connection before returning.
    fn drop(&mut self) {
        drop(self.writes.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn migrate(c: &mut Connection) -> StoreResult<()> {
    let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if v as usize > MIGRATIONS.len() {
        return Err(StoreError::Db(format!(
            "database schema version {v} is newer than this binary ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(v as usize) {
        let tx = c.transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// SQLite's column types, as the shared row mappings read them.
impl Columns for Row<'_> {
    type Error = rusqlite::Error;
    fn int(&self, i: usize) -> rusqlite::Result<i64> {
        self.get(i)
    }
    fn opt_int(&self, i: usize) -> rusqlite::Result<Option<i64>> {
        self.get(i)
    }
    fn code(&self, i: usize) -> rusqlite::Result<i64> {
        self.get(i)
    }
    fn count(&self, i: usize) -> rusqlite::Result<u32> {
        self.get(i)
    }
    fn text(&self, i: usize) -> rusqlite::Result<String> {
        self.get(i)
    }
    fn opt_text(&self, i: usize) -> rusqlite::Result<Option<String>> {
        self.get(i)
    }
    fn blob(&self, i: usize) -> rusqlite::Result<Vec<u8>> {
        self.get(i)
    }
    fn bad(&self, i: usize, what: &str) -> rusqlite::Error {
        let what = what.to_owned().into();
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, what)
    }
}

// The shared row mappings, for a row of any statement (as `query_row` and `query_map` want).
fn account(r: &Row) -> rusqlite::Result<Account> {
    rows::account(r)
}
fn binding(r: &Row) -> rusqlite::Result<Binding> {
    rows::binding(r)
}
fn bind_token(r: &Row) -> rusqlite::Result<BindToken> {
    rows::bind_token(r)
}

fn accounts_where(c: &Connection, column: &str, values: &[String]) -> StoreResult<Vec<Account>> {
    // One statement per value keeps every query parameterized and cached.
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {ACCOUNT_COLS} FROM accounts WHERE {column} = ?1"
    ))?;
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        if let Some(a) = stmt.query_row([v], account).optional()? {
            out.push(a);
        }
    }
    Ok(out)
}

#[async_trait::async_trait]
impl Maintenance for SqliteStore {
    fn change_feed(&self) -> Arc<ChangeFeed> {
        self.feed.clone()
    }
    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| {
            Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(|_| ())?)
        })
        .await
    }
    async fn prune(&self, now: i64) -> StoreResult<()> {
        self.write(move |c| {
            c.execute("DELETE FROM captchas WHERE expires_at <= ?1", [now])?;
            c.execute("DELETE FROM tokens WHERE expires_at <= ?1", [now])?;
            c.execute(
                "DELETE FROM login_failures WHERE updated_at <= ?1 - 86400 AND locked_until <= ?1",
                [now],
            )?;
            c.execute("DELETE FROM bind_tokens WHERE expires_at <= ?1", [now])?;
            Ok(())
        })
        .await
    }
}

#[async_trait::async_trait]
impl AccountStore for SqliteStore {
    async fn insert_pending_account(&self, n: NewAccount, now: i64) -> StoreResult<i64> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO accounts (user_name, type, device_type, des, password_hash, jid_node, \
                 jid_pwd, state, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?8)",
            )?
            .execute(params![
                n.user_name,
                n.kind.code(),
                n.device_type,
                n.des,
                n.password_hash,
                n.jid_node,
                n.jid_pwd,
                now
            ])?;
            Ok(c.last_insert_rowid())
        })
        .await
    }
    async fn set_account_state(&self, id: i64, state: AccountState, now: i64) -> StoreResult<()> {
        self.exec(
            "UPDATE accounts SET state = ?2, updated_at = ?3 WHERE id = ?1",
            (id, state.as_str(), now),
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
        Ok(self
            .exec(
                "UPDATE accounts SET state = ?3, updated_at = ?4 WHERE id = ?1 AND state = ?2",
                (id, from.as_str(), to.as_str(), now),
            )
            .await?
            == 1)
    }
    async fn delete_account(&self, id: i64) -> StoreResult<()> {
        self.exec("DELETE FROM accounts WHERE id = ?1", [id])
            .await?;
        Ok(())
    }
    async fn account_by_name(&self, name: &str) -> StoreResult<Option<Account>> {
        let name = name.to_owned();
        self.read(move |c| Ok(accounts_where(c, "user_name", &[name])?.pop()))
            .await
    }
    async fn account_by_id(&self, id: i64) -> StoreResult<Option<Account>> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?1"
            ))?
            .query_row([id], account)
            .optional()?)
        })
        .await
    }
    async fn accounts_by_nodes(&self, nodes: &[String]) -> StoreResult<Vec<Account>> {
        let nodes = nodes.to_vec();
        self.read(move |c| accounts_where(c, "jid_node", &nodes))
            .await
    }
    async fn list_accounts(&self, after_id: i64, limit: u32) -> StoreResult<Vec<Account>> {
        self.read(move |c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLS} FROM accounts WHERE id > ?1 ORDER BY id LIMIT ?2"
            ))?;
            let rows = s.query_map(params![after_id, limit], account)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
    async fn begin_cancel(&self, id: i64, now: i64) -> StoreResult<bool> {
        self.write_atomic(move |sp| {
            let n = sp.execute(
                "UPDATE accounts SET state = 'deleting', updated_at = ?2 \
                 WHERE id = ?1 AND state <> 'deleting'",
                params![id, now],
            )?;
            sp.execute("DELETE FROM tokens WHERE account_id = ?1", [id])?;
            Ok(n == 1)
        })
        .await
    }
    async fn set_password(&self, id: i64, password_hash: String, now: i64) -> StoreResult<bool> {
        self.write_atomic(move |sp| {
            let n = sp.execute(
                "UPDATE accounts SET password_hash = ?2, updated_at = ?3 \
                 WHERE id = ?1 AND state = 'active'",
                params![id, password_hash, now],
            )?;
            if n == 1 {
                sp.execute("DELETE FROM tokens WHERE account_id = ?1", [id])?;
            }
            Ok(n == 1)
        })
        .await
    }
}

#[async_trait::async_trait]
impl LoginStore for SqliteStore {
    async fn claim_login_attempt(
        &self,
        id: i64,
        network: String,
        now: i64,
        p: LockPolicy,
    ) -> StoreResult<bool> {
        self.write_atomic(move |sp| {
            let locked = sp
                .query_row(
                    "SELECT (a.locked_until > ?3 AND a.last_login_network <> ?2) OR coalesce(\
                       (SELECT f.locked_until > ?3 FROM login_failures f \
                        WHERE f.account_id = a.id AND f.network = ?2), 0) \
                     FROM accounts a WHERE a.id = ?1",
                    params![id, network, now],
                    |r| r.get::<_, bool>(0),
                )
                .optional()?
                .unwrap_or(true);
            if locked {
                return Ok(false);
            }
            let until = now + p.lock_secs;
            sp.prepare_cached(
                "UPDATE accounts SET \
                 locked_until = CASE WHEN failed_logins + 1 >= ?2 THEN ?3 ELSE locked_until END, \
                 failed_logins = CASE WHEN failed_logins + 1 >= ?2 THEN 0 ELSE failed_logins + 1 END \
                 WHERE id = ?1",
            )?
            .execute(params![id, p.per_account, until])?;
            sp.prepare_cached(
                "INSERT INTO login_failures (account_id, network, failures, locked_until, updated_at) \
                 VALUES (?1, ?2, CASE WHEN ?3 <= 1 THEN 0 ELSE 1 END, \
                         CASE WHEN ?3 <= 1 THEN ?4 ELSE 0 END, ?5) \
                 ON CONFLICT (account_id, network) DO UPDATE SET \
                 locked_until = CASE WHEN failures + 1 >= ?3 THEN ?4 ELSE locked_until END, \
                 failures = CASE WHEN failures + 1 >= ?3 THEN 0 ELSE failures + 1 END, \
                 updated_at = ?5",
            )?
            .execute(params![id, network, p.per_network, until, now])?;
            Ok(true)
        })
        .await
    }
    async fn locked_networks(&self, id: i64, now: i64) -> StoreResult<Vec<(String, i64)>> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT network, locked_until FROM login_failures \
                 WHERE account_id = ?1 AND locked_until > ?2 ORDER BY network",
            )?;
            let rows = s.query_map(params![id, now], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
    async fn reset_login_failures(&self, id: i64, network: String) -> StoreResult<()> {
        self.write_atomic(move |sp| {
            sp.prepare_cached("DELETE FROM login_failures WHERE account_id = ?1 AND network = ?2")?
                .execute(params![id, network])?;
            sp.prepare_cached(
                "UPDATE accounts SET last_login_network = ?2, \
                 failed_logins = max(failed_logins - 1, 0) WHERE id = ?1",
            )?
            .execute(params![id, network])?;
            Ok(())
        })
        .await
    }
}

#[async_trait::async_trait]
impl TokenStore for SqliteStore {
    async fn revoke_token(&self, id: i64, hash: Vec<u8>) -> StoreResult<bool> {
        Ok(self
            .exec(
                "DELETE FROM tokens WHERE account_id = ?1 AND hash = ?2",
                (id, hash),
            )
            .await?
            == 1)
    }
    async fn revoke_tokens(&self, id: i64) -> StoreResult<u64> {
        Ok(self
            .exec("DELETE FROM tokens WHERE account_id = ?1", [id])
            .await? as u64)
    }
    async fn trim_tokens(&self, id: i64, newest: Vec<u8>, keep: u32) -> StoreResult<u64> {
        Ok(self
            .exec(
                "DELETE FROM tokens WHERE account_id = ?1 AND hash <> ?2 AND hash NOT IN \
                     (SELECT hash FROM tokens WHERE account_id = ?1 AND hash <> ?2 \
                      ORDER BY seq DESC LIMIT ?3)",
                (id, newest, keep.saturating_sub(1)),
            )
            .await? as u64)
    }
    async fn insert_token(
        &self,
        hash: Vec<u8>,
        account_id: i64,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        self.exec(
            "INSERT INTO tokens (hash, account_id, expires_at, created_at, seq) VALUES (?1, ?2, ?3, ?4, \
             (SELECT coalesce(max(seq), 0) + 1 FROM tokens WHERE account_id = ?2))",
            (hash, account_id, expires_at, now),
        )
        .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Lookups for SqliteStore {
    async fn accounts_by_names(&self, names: &[String]) -> StoreResult<Vec<Arc<Account>>> {
        let names = names.to_vec();
        let found = self
            .read(move |c| accounts_where(c, "user_name", &names))
            .await?;
        Ok(found.into_iter().map(Arc::new).collect())
    }
    async fn token_account(
        &self,
        hash: Vec<u8>,
        now: i64,
    ) -> StoreResult<Option<(Arc<Account>, i64)>> {
        self.read(move |c| {
            let cols = ACCOUNT_COLS
                .split(", ")
                .map(|s| format!("a.{s}"))
                .collect::<Vec<_>>()
                .join(", ");
            Ok(c.prepare_cached(&format!(
                "SELECT {cols}, t.expires_at FROM tokens t JOIN accounts a ON a.id = t.account_id \
                 WHERE t.hash = ?1 AND t.expires_at > ?2 AND a.state = 'active'"
            ))?
            .query_row(params![hash, now], |r| {
                Ok((Arc::new(account(r)?), r.get(13)?))
            })
            .optional()?)
        })
        .await
    }
}

#[async_trait::async_trait]
impl PairStore for SqliteStore {
    async fn bindings_of(&self, id: i64) -> StoreResult<Vec<Binding>> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT a, b, state, updated_at FROM bindings WHERE a = ?1 \
                 UNION ALL SELECT a, b, state, updated_at FROM bindings WHERE b = ?1",
            )?;
            let rows = s.query_map([id], binding)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
    async fn insert_binding(
        &self,
        a: i64,
        b: i64,
        state: BindingState,
        now: i64,
    ) -> StoreResult<()> {
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "INSERT INTO bindings (a, b, state, updated_at) SELECT ?1, ?2, ?3, ?4 \
                     WHERE (SELECT count(*) FROM accounts WHERE id IN (?1, ?2) AND state = 'active') = 2",
                )?
                .execute(params![a, b, state.as_str(), now])?;
            if n == 1 {
                Ok(())
            } else {
                Err(StoreError::Changed)
            }
        })
        .await
    }
    async fn set_binding_state(
        &self,
        a: i64,
        b: i64,
        state: BindingState,
        now: i64,
    ) -> StoreResult<()> {
        self.exec(
            "UPDATE bindings SET state = ?3, updated_at = ?4 WHERE a = ?1 AND b = ?2",
            (a, b, state.as_str(), now),
        )
        .await?;
        Ok(())
    }
    async fn delete_binding(&self, a: i64, b: i64) -> StoreResult<()> {
        self.exec("DELETE FROM bindings WHERE a = ?1 AND b = ?2", [a, b])
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
        Ok(self
            .exec(
                "UPDATE bindings SET state = ?4, updated_at = ?5 \
                     WHERE a = ?1 AND b = ?2 AND state = ?3",
                (a, b, from.as_str(), to.as_str(), now),
            )
            .await?
            == 1)
    }
    async fn delete_binding_in(&self, a: i64, b: i64, state: BindingState) -> StoreResult<bool> {
        Ok(self
            .exec(
                "DELETE FROM bindings WHERE a = ?1 AND b = ?2 AND state = ?3",
                (a, b, state.as_str()),
            )
            .await?
            == 1)
    }
    async fn binding(&self, a: i64, b: i64) -> StoreResult<Option<Binding>> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT a, b, state, updated_at FROM bindings WHERE a = ?1 AND b = ?2",
            )?
            .query_row([a, b], binding)
            .optional()?)
        })
        .await
    }
    async fn insert_binding_capped(
        &self,
        a: i64,
        b: i64,
        now: i64,
        caps: PairCaps,
    ) -> StoreResult<bool> {
        // Atomic by the single writer.
        self.write_atomic(move |sp| {
            let active: i64 = sp
                .prepare_cached(
                    "SELECT count(*) FROM accounts WHERE id IN (?1, ?2) AND state = 'active'",
                )?
                .query_row([a, b], |r| r.get(0))?;
            if active != 2 {
                return Err(StoreError::Changed);
            }
            let pairs = |id: i64| -> StoreResult<i64> {
                Ok(sp
                    .prepare_cached(
                        "SELECT (SELECT count(*) FROM bindings WHERE a = ?1) + \
                         (SELECT count(*) FROM bindings WHERE b = ?1)",
                    )?
                    .query_row([id], |r| r.get(0))?)
            };
            if pairs(caps.device)? >= caps.max_phones as i64
                || pairs(caps.phone)? >= caps.max_devices as i64
            {
                return Ok(false);
            }
            sp.prepare_cached(
                "INSERT INTO bindings (a, b, state, updated_at) VALUES (?1, ?2, 'binding', ?3)",
            )?
            .execute(params![a, b, now])?;
            Ok(true)
        })
        .await
    }
}

#[async_trait::async_trait]
impl BindTokenStore for SqliteStore {
    async fn insert_bind_token(
        &self,
        hash: Vec<u8>,
        issuer: i64,
        device: Option<i64>,
        expires_at: i64,
        now: i64,
        keep: u32,
    ) -> StoreResult<()> {
        self.write_atomic(move |sp| {
            sp.prepare_cached(
                "INSERT INTO bind_tokens (hash, issuer, device, expires_at, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![hash, issuer, device, expires_at, now])?;
            sp.prepare_cached(
                "DELETE FROM bind_tokens WHERE issuer = ?1 AND id NOT IN \
                 (SELECT id FROM bind_tokens WHERE issuer = ?1 ORDER BY id DESC LIMIT ?2)",
            )?
            .execute(params![issuer, keep])?;
            Ok(())
        })
        .await
    }
    async fn bind_token(&self, hash: Vec<u8>, now: i64) -> StoreResult<Option<BindToken>> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT issuer, device, expires_at FROM bind_tokens \
                 WHERE hash = ?1 AND expires_at > ?2",
            )?
            .query_row(params![hash, now], bind_token)
            .optional()?)
        })
        .await
    }
    async fn take_bind_token(&self, hash: Vec<u8>, now: i64) -> StoreResult<Option<BindToken>> {
        self.write(move |c| {
            Ok(c.prepare_cached(
                "DELETE FROM bind_tokens WHERE hash = ?1 AND expires_at > ?2 \
                 RETURNING issuer, device, expires_at",
            )?
            .query_row(params![hash, now], bind_token)
            .optional()?)
        })
        .await
    }
    async fn bind_failures(&self, account: i64, since: i64) -> StoreResult<u32> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT count(*) FROM bind_failures WHERE account_id = ?1 AND at >= ?2",
            )?
            .query_row(params![account, since], |r| r.get(0))?)
        })
        .await
    }
    async fn record_bind_failure(&self, account: i64, now: i64, since: i64) -> StoreResult<u32> {
        self.write_atomic(move |sp| {
            sp.prepare_cached("DELETE FROM bind_failures WHERE account_id = ?1 AND at < ?2")?
                .execute(params![account, since])?;
            sp.prepare_cached("INSERT INTO bind_failures (account_id, at) VALUES (?1, ?2)")?
                .execute(params![account, now])?;
            let n: u32 = sp
                .prepare_cached("SELECT count(*) FROM bind_failures WHERE account_id = ?1")?
                .query_row([account], |r| r.get(0))?;
            Ok(n)
        })
        .await
    }
    async fn void_bind_tokens(&self, account: i64) -> StoreResult<u64> {
        Ok(self
            .exec(
                "DELETE FROM bind_tokens WHERE issuer = ?1 OR device = ?1",
                [account],
            )
            .await? as u64)
    }
    async fn forget_bind_failure(&self, account: i64, at: i64) -> StoreResult<()> {
        self.exec(
            "DELETE FROM bind_failures WHERE rowid IN \
                 (SELECT rowid FROM bind_failures WHERE account_id = ?1 AND at = ?2 LIMIT 1)",
            (account, at),
        )
        .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl CaptchaStore for SqliteStore {
    async fn insert_captcha(&self, id: String, answer: String, expires_at: i64) -> StoreResult<()> {
        self.exec(
            "INSERT INTO captchas (id, answer, expires_at) VALUES (?1, ?2, ?3)",
            (id, answer, expires_at),
        )
        .await?;
        Ok(())
    }
    async fn take_captcha(&self, id: String) -> StoreResult<Option<(String, i64)>> {
        self.write(move |c| {
            Ok(
                c.prepare_cached(
                    "DELETE FROM captchas WHERE id = ?1 RETURNING answer, expires_at",
                )?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?,
            )
        })
        .await
    }
}

#[async_trait::async_trait]
impl ReconcileStore for SqliteStore {
    async fn unfinished(&self, before: i64) -> StoreResult<(Vec<Account>, Vec<Binding>)> {
        self.read(move |c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLS} FROM accounts WHERE state <> 'active' AND updated_at < ?1 ORDER BY id"
            ))?;
            let accounts = s.query_map([before], account)?.collect::<Result<Vec<_>, _>>()?;
            let mut s = c.prepare_cached(
                "SELECT a, b, state, updated_at FROM bindings WHERE state <> 'bound' AND updated_at < ?1",
            )?;
            let bindings = s.query_map([before], binding)?.collect::<Result<Vec<_>, _>>()?;
            Ok((accounts, bindings))
        })
        .await
    }
    /// One instance per SQLite database: the lease is always granted.
    async fn try_lock_reconciler(&self) -> StoreResult<bool> {
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit by another connection (another process: the CLI writing directly) makes the
    /// writer reset the feed, so every cache forgets what it held; the store's own commits,
    /// reported one by one, do not.
    #[tokio::test]
    async fn another_process_s_write_resets_the_feed_and_its_own_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = SqliteStore::open(&path).unwrap();
        let resets = Arc::new(AtomicUsize::new(0));
        let counted = resets.clone();
        s.change_feed().subscribe(move |c| {
            if c == Change::Reset {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        let own = |id: &str| s.insert_captcha(id.into(), "a".into(), i64::MAX);
        own("own-1").await.unwrap();
        // Two checks' time: the writer has looked at least once (idle, it looks every interval).
        tokio::time::sleep(EXTERNAL_WRITES_CHECK * 3).await;
        own("own-2").await.unwrap();
        assert_eq!(resets.load(Ordering::SeqCst), 0, "its own writes");
        let other = Connection::open(&path).unwrap();
        other
            .execute(
                "INSERT INTO captchas (id, answer, expires_at) VALUES ('cli', 'a', 1)",
                [],
            )
            .unwrap();
        // Bounded so that a writer that never notices fails the test instead of hanging it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while resets.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the write was noticed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    // The store's behaviour (accounts, tokens, pairs, captchas, compare-and-set) is tested once
    // for both backends by tests/service/postgres.rs::store_matches_sqlite, which always runs the
    // SQLite half. What is SQLite's own is tested here.

    /// A burst of reads waits for a free reader as tasks: it takes a few threads of the blocking
    /// pool, not one per read. Each thread costs its stack and its allocator's cache: 500 token
    /// checks missing the cache at once used to start about 100 threads and 5 MiB.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_reads_takes_a_few_threads() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
        let threads = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let reads = (0..200).map(|_| {
            let (s, threads) = (s.clone(), threads.clone());
            async move {
                s.read(move |c| {
                    threads.lock().unwrap().insert(std::thread::current().id());
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?)
                })
                .await
            }
        });
        let all = futures::future::join_all(reads).await;
        assert!(
            all.iter().all(|r| matches!(r, Ok(1))),
            "every read answered"
        );
        let n = threads.lock().unwrap().len();
        // Typically READERS to 3 × READERS (a thread finishing a read may not be idle yet when
        // the next read starts); one per read without the bound (172 when tried).
        assert!(n <= 50, "{n} threads of the blocking pool for 200 reads");
    }

    #[test]
    fn durable_settings() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db")).unwrap();
        let (mode, sync, busy) = s
            .write_blocking(|c| {
                let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
                let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
                let busy: i64 = c.query_row("PRAGMA busy_timeout", [], |r| r.get(0))?;
                Ok((mode, sync, busy))
            })
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "synchronous = FULL");
        assert!(busy >= 1000);
    }

    #[test]
    fn writes_waiting_together_commit_together_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db")).unwrap();
        let (tx, rx) = mpsc::channel::<(usize, StoreResult<()>)>();
        let insert = |c: &mut Connection, id: &str| -> StoreResult<()> {
            c.execute(
                "INSERT INTO captchas (id, answer, expires_at) VALUES (?1, 'a', 1)",
                [id],
            )?;
            Ok(())
        };
        // The writer is busy with the first write while the next ones queue: they form a group.
        let tx0 = tx.clone();
        s.queue(
            |_| {
                std::thread::sleep(std::time::Duration::from_millis(200));
                Ok(())
            },
            move |r| tx0.send((0, r)).unwrap(),
        )
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        for i in 1..=5 {
            let tx = tx.clone();
            s.queue(
                move |c| {
                    let name = format!("c{i}");
                    insert(c, &name)?;
                    match i {
                        // Wrote, then failed: its write must be undone, not the others'.
                        3 => Err(StoreError::Changed),
                        // Fails on a duplicate key, like a taken user name.
                        4 => insert(c, "c1"),
                        _ => Ok(()),
                    }
                },
                move |r| tx.send((i, r)).unwrap(),
            )
            .unwrap();
        }
        // A write that panics loses its own answer only.
        s.queue(|_| -> StoreResult<()> { panic!("on purpose") }, |_| {})
            .unwrap();
        drop(tx);
        let mut got: Vec<(usize, bool)> = rx.iter().map(|(i, r)| (i, r.is_ok())).collect();
        got.sort();
        assert_eq!(
            s.write_rounds(),
            2,
            "the first write, then the six others together"
        );
        assert_eq!(
            got,
            [
                (0, true),
                (1, true),
                (2, true),
                (3, false),
                (4, false),
                (5, true)
            ]
        );
        let ids: Vec<String> = s
            .write_blocking(|c| {
                let mut st = c.prepare("SELECT id FROM captchas ORDER BY id")?;
                let rows = st.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<String>, _>>()?)
            })
            .unwrap();
        assert_eq!(ids, ["c1", "c2", "c5"]);
    }

    #[test]
    fn a_write_that_leaves_a_transaction_open_fails_and_does_not_capture_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db")).unwrap();
        let left_open = s.write_blocking(|c| {
            c.execute_batch(
                "BEGIN; INSERT INTO captchas (id, answer, expires_at) VALUES ('x', 'a', 1)",
            )?;
            Ok(())
        });
        assert!(left_open.is_err(), "{left_open:?}");
        s.write_blocking(|c| {
            c.execute(
                "INSERT INTO captchas (id, answer, expires_at) VALUES ('y', 'a', 1)",
                [],
            )?;
            Ok(())
        })
        .unwrap();
        drop(s);
        // Reopened: what the second write did is on disk, what the first did is not.
        let c = Connection::open(dir.path().join("db")).unwrap();
        let ids: Vec<String> = c
            .prepare("SELECT id FROM captchas")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, ["y"]);
    }

    #[test]
    fn reopening_keeps_version() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        drop(SqliteStore::open(&p).unwrap());
        let s = SqliteStore::open(&p).unwrap();
        let v: i64 = s
            .write_blocking(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
    }
}
