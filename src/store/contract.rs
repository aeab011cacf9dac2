//! The store contract: one sequence of calls every [`Store`] must answer alike, run against
//! SQLite, the token cache in front of SQLite, PostgreSQL, and the cache in front of PostgreSQL.
//!
//! PostgreSQL runs when `REGISTER_TEST_PG_URL` names a server (`scripts/pg-test.sh start DIR`
//! prints one; `.ci/run` sets it); each test then makes a database of its own and drops it.
//! Without it these halves fail on CI (`CI=true`) and with `REGISTER_TEST_BACKEND=postgres`, and
//! elsewhere print that they were skipped.

use std::sync::{Arc, Mutex};

use super::cache::TokenCache;
use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::test_db::{phone_account, TestDb};
use super::*;
use crate::types::AccountType;

/// Whether a missing PostgreSQL must fail the test (CI, or the PostgreSQL suite asked for).
fn strict() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
        || std::env::var("REGISTER_TEST_BACKEND").as_deref() == Ok("postgres")
}

/// A database of its own on `REGISTER_TEST_PG_URL`; `None` (with a line saying so) when it is
/// not set and the run may skip.
pub(super) async fn pg_db(test: &str) -> Option<TestDb> {
    let Some(base) = std::env::var("REGISTER_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            !strict(),
            "{test}: REGISTER_TEST_PG_URL is not set, and this run may not skip (CI or \
             REGISTER_TEST_BACKEND=postgres); start one with scripts/pg-test.sh"
        );
        eprintln!("{test}: skipped (REGISTER_TEST_PG_URL is not set; see scripts/pg-test.sh)");
        return None;
    };
    Some(TestDb::create(&base).await)
}

/// A lock-out policy no test here reaches: for the calls that need one.
pub(super) const LENIENT: LockPolicy = LockPolicy {
    per_network: 5,
    per_account: 50,
    lock_secs: 60,
};

/// A PostgreSQL store on a database of its own, its change feed live; `None` when the run may
/// skip (see [`pg_db`]).
async fn pg_store(test: &str) -> Option<(TestDb, PgStore)> {
    let db = pg_db(test).await?;
    let pg = PgStore::connect(&db.url, 4).await.unwrap();
    live(&pg).await;
    Some((db, pg))
}

/// A phone account `name` (JID node `{name}-node`) inserted at `at` and made active at
/// `active_at`: its id.
pub(super) async fn active_phone(s: &dyn Store, name: &str, at: i64, active_at: i64) -> i64 {
    let node = format!("{name}-node");
    let id = s
        .insert_pending_account(phone_account(name, &node), at)
        .await
        .unwrap();
    s.set_account_state(id, AccountState::Active, active_at)
        .await
        .unwrap();
    id
}

/// Every part of the contract, on `s`.
/// How inserting the pair (a, b) as `binding` at `now` is refused: "exists" or "changed" (or
/// what happened instead).
async fn pair_refused(s: &dyn Store, a: i64, b: i64, now: i64) -> String {
    match s.insert_binding(a, b, BindingState::Binding, now).await {
        Err(StoreError::Exists) => "exists".into(),
        Err(StoreError::Changed) => "changed".into(),
        other => format!("{other:?}"),
    }
}

async fn contract(s: &dyn Store, reports_changes: bool) {
    accounts_tokens_bindings_captchas(s).await;
    compare_and_set_transitions(s).await;
    if reports_changes {
        changes_are_reported(s).await;
    }
    assert!(s.try_lock_reconciler().await.unwrap());
    s.unlock_reconciler().await.unwrap();
}

/// Waits (up to 5 s; the feed of a PostgreSQL store starts with its listener) until `s`'s
/// change feed is live.
async fn live(s: &dyn Store) {
    let feed = s.change_feed();
    for _ in 0..500 {
        if feed.is_live() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the change feed did not start");
}

#[tokio::test]
async fn sqlite_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("db")).unwrap();
    contract(&s, true).await;
}

#[tokio::test]
async fn the_cache_on_sqlite_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("db")).unwrap();
    contract(&TokenCache::new(Arc::new(s), 100), true).await;
}

#[tokio::test]
async fn postgresql_keeps_the_contract() {
    let Some((db, pg)) = pg_store("postgresql_keeps_the_contract").await else {
        return;
    };
    contract(&pg, true).await;
    assert_eq!(
        pg.schema_version().await.unwrap(),
        super::postgres::SCHEMA_VERSION
    );
    drop(pg);
    db.drop_db().await;
}

#[tokio::test]
async fn the_cache_on_postgresql_keeps_the_contract() {
    let Some((db, pg)) = pg_store("the_cache_on_postgresql_keeps_the_contract").await else {
        return;
    };
    contract(&TokenCache::new(Arc::new(pg), 100), true).await;
    db.drop_db().await;
}

/// Every write that changes an account or revokes a token reaches the change feed before the
/// write returns, and a login's counters do not.
async fn changes_are_reported(s: &dyn Store) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    s.change_feed().subscribe(move |c| {
        if let Change::Account(id) = c {
            log.lock().unwrap().push(id);
        }
    });
    let take = || {
        let mut v = std::mem::take(&mut *seen.lock().unwrap());
        v.sort_unstable();
        v
    };
    let id = active_phone(s, "feed", 10, 11).await;
    assert_eq!(take(), vec![id], "a state change");
    for t in 1..=4u8 {
        s.insert_token(vec![t; 32], id, 1000, 11).await.unwrap();
    }
    let policy = LENIENT;
    assert!(s
        .claim_login_attempt(id, "192.0.2.1".into(), 12, policy)
        .await
        .unwrap());
    s.reset_login_failures(id, "192.0.2.1".into())
        .await
        .unwrap();
    assert_eq!(
        take(),
        Vec::<i64>::new(),
        "new tokens and logins change nothing cached"
    );
    assert_eq!(s.trim_tokens(id, vec![4; 32], 4).await.unwrap(), 0);
    assert_eq!(take(), Vec::<i64>::new(), "a trim that revokes nothing");
    assert_eq!(s.trim_tokens(id, vec![4; 32], 3).await.unwrap(), 1);
    assert_eq!(take(), vec![id], "the token cap");
    assert!(s.revoke_token(id, vec![2; 32]).await.unwrap());
    assert_eq!(take(), vec![id], "a logout");
    assert!(s.set_password(id, "h2".into(), 13).await.unwrap());
    assert!(take().contains(&id), "a password change");
    s.insert_token(vec![5; 32], id, 1000, 13).await.unwrap();
    assert_eq!(s.revoke_tokens(id).await.unwrap(), 1);
    assert_eq!(take(), vec![id], "an operator's revoke");
    let other = active_phone(s, "feed-peer", 13, 13).await;
    take();
    let (a, b) = (id.min(other), id.max(other));
    s.insert_binding(a, b, BindingState::Binding, 13)
        .await
        .unwrap();
    assert_eq!(take(), vec![a, b], "a new pair changes both sides");
    assert!(s
        .transition_binding(a, b, BindingState::Binding, BindingState::Bound, 13)
        .await
        .unwrap());
    assert_eq!(take(), vec![a, b], "a pair's state");
    s.delete_binding(a, b).await.unwrap();
    assert_eq!(take(), vec![a, b], "a pair deleted");
    assert!(s.begin_cancel(id, 14).await.unwrap());
    assert!(take().contains(&id), "a cancel");
    s.delete_account(id).await.unwrap();
    assert!(take().contains(&id), "a deletion");
}

/// Accounts, tokens, pairs and captchas, the sequence every store must pass.
async fn accounts_tokens_bindings_captchas(s: &dyn Store) {
    let a = s
        .insert_pending_account(phone_account("alice", "n1"), 10)
        .await
        .unwrap();
    assert!(matches!(
        s.insert_pending_account(phone_account("alice", "n2"), 10)
            .await,
        Err(StoreError::Exists)
    ));
    assert!(matches!(
        s.insert_pending_account(phone_account("alice2", "n1"), 10)
            .await,
        Err(StoreError::Exists)
    ));
    let b = s
        .insert_pending_account(phone_account("bob", "n2"), 10)
        .await
        .unwrap();
    s.set_account_state(a, AccountState::Active, 11)
        .await
        .unwrap();
    s.set_account_state(b, AccountState::Active, 11)
        .await
        .unwrap();
    let alice = s.account_by_name("alice").await.unwrap().unwrap();
    assert_eq!(alice.state, AccountState::Active);
    assert_eq!(
        (alice.jid_node.as_str(), alice.jid_pwd.as_slice()),
        ("n1", &[1u8, 2, 3][..])
    );
    assert_eq!(alice.kind, AccountType::Phone);
    assert_eq!((alice.created_at, alice.updated_at), (10, 11));
    assert_eq!(
        s.accounts_by_nodes(&["n2".into(), "zz".into()])
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.accounts_by_names(&["alice".into(), "bob".into(), "x".into()])
            .await
            .unwrap()
            .len(),
        2
    );
    let listed = s.list_accounts(0, 10).await.unwrap();
    assert_eq!(listed.iter().map(|a| a.id).collect::<Vec<_>>(), vec![a, b]);
    assert_eq!(s.list_accounts(a, 10).await.unwrap().len(), 1);

    s.insert_token(vec![9; 32], a, 100, 11).await.unwrap();
    assert!(matches!(
        s.insert_token(vec![9; 32], a, 100, 11).await,
        Err(StoreError::Exists)
    ));
    let (acc, exp) = s.token_account(vec![9; 32], 50).await.unwrap().unwrap();
    assert_eq!((acc.id, exp), (a, 100));
    assert!(s.token_account(vec![9; 32], 100).await.unwrap().is_none());

    s.insert_binding(a, b, BindingState::Binding, 12)
        .await
        .unwrap();
    assert_eq!(pair_refused(s, a, b, 12).await, "exists");
    s.set_binding_state(a, b, BindingState::Bound, 13)
        .await
        .unwrap();
    assert_eq!(s.bindings_of(b).await.unwrap().len(), 1);
    assert_eq!(s.bindings_of(a).await.unwrap().len(), 1);
    assert_eq!(
        s.binding(a, b).await.unwrap().unwrap().state,
        BindingState::Bound
    );

    s.begin_cancel(a, 14).await.unwrap();
    assert!(s.token_account(vec![9; 32], 50).await.unwrap().is_none());
    let (acc, _) = s.unfinished(100).await.unwrap();
    assert_eq!(acc.len(), 1);
    s.delete_account(a).await.unwrap();
    assert!(s.bindings_of(b).await.unwrap().is_empty());

    s.insert_captcha("c1".into(), "abcde".into(), 99)
        .await
        .unwrap();
    assert_eq!(
        s.take_captcha("c1".into()).await.unwrap(),
        Some(("abcde".into(), 99))
    );
    assert_eq!(s.take_captcha("c1".into()).await.unwrap(), None);
    s.insert_captcha("c2".into(), "abcde".into(), 20)
        .await
        .unwrap();
    s.insert_token(vec![8; 32], b, 20, 11).await.unwrap();
    s.prune(20).await.unwrap();
    assert_eq!(s.take_captcha("c2".into()).await.unwrap(), None);
    assert!(s.token_account(vec![8; 32], 0).await.unwrap().is_none());

    // Trimming keeps the newest tokens and always the one just issued.
    for (i, t) in [[21u8; 32], [22; 32], [23; 32]].iter().enumerate() {
        s.insert_token(t.to_vec(), b, 1000, 10 + i as i64)
            .await
            .unwrap();
    }
    assert_eq!(s.trim_tokens(b, vec![23; 32], 2).await.unwrap(), 1);
    assert!(s.token_account(vec![21; 32], 0).await.unwrap().is_none());
    assert!(s.token_account(vec![22; 32], 0).await.unwrap().is_some());
    assert_eq!(s.trim_tokens(b, vec![23; 32], 1).await.unwrap(), 1);
    assert!(s.token_account(vec![23; 32], 0).await.unwrap().is_some());
    assert_eq!(s.trim_tokens(b, vec![23; 32], 1).await.unwrap(), 0);
    // Logout, password change and the operator's revoke.
    s.insert_token(vec![24; 32], b, 1000, 20).await.unwrap();
    assert!(s.revoke_token(b, vec![24; 32]).await.unwrap());
    assert!(!s.revoke_token(b, vec![24; 32]).await.unwrap());
    assert!(s.token_account(vec![24; 32], 0).await.unwrap().is_none());
    assert!(s.token_account(vec![23; 32], 0).await.unwrap().is_some());
    assert!(s.set_password(b, "new-hash".into(), 21).await.unwrap());
    assert!(s.token_account(vec![23; 32], 0).await.unwrap().is_none());
    assert_eq!(
        s.account_by_id(b).await.unwrap().unwrap().password_hash,
        "new-hash"
    );
    s.insert_token(vec![25; 32], b, 1000, 22).await.unwrap();
    s.insert_token(vec![26; 32], b, 1000, 22).await.unwrap();
    assert_eq!(s.revoke_tokens(b).await.unwrap(), 2);
    assert!(s.token_account(vec![26; 32], 0).await.unwrap().is_none());
    // Claims count in advance, per network and for the account. Network x's fifth claim locks x
    // out; network y still gets in; the account-wide count (8 here) locks everyone out.
    let p = LockPolicy {
        per_network: 5,
        per_account: 8,
        lock_secs: 60,
    };
    let claim = |net: &str, now: i64| s.claim_login_attempt(b, net.to_owned(), now, p);
    for _ in 0..4 {
        assert!(claim("x", 20).await.unwrap());
    }
    let bob = s.account_by_id(b).await.unwrap().unwrap();
    assert_eq!((bob.failed_logins, bob.locked_until), (4, 0));
    assert!(
        claim("x", 20).await.unwrap(),
        "the fifth is still looked at"
    );
    assert!(!claim("x", 79).await.unwrap(), "x is locked out");
    assert_eq!(
        s.locked_networks(b, 79).await.unwrap(),
        vec![("x".into(), 80)]
    );
    assert!(s.locked_networks(b, 80).await.unwrap().is_empty());
    assert!(claim("y", 79).await.unwrap(), "y is not");
    let bob = s.account_by_id(b).await.unwrap().unwrap();
    assert_eq!(
        (bob.failed_logins, bob.locked_until),
        (6, 0),
        "refusals count nothing"
    );
    assert!(claim("x", 80).await.unwrap(), "x's lock over");
    assert!(claim("z", 80).await.unwrap(), "the account's eighth");
    let bob = s.account_by_id(b).await.unwrap().unwrap();
    assert_eq!((bob.failed_logins, bob.locked_until), (0, 140));
    assert!(
        !claim("w", 139).await.unwrap(),
        "the whole account is locked"
    );
    // A success from y forgets y's failures and makes y the account's last network; the
    // account-wide count and lock stay: the lock (until 140) spares y, not x.
    s.reset_login_failures(b, "y".into()).await.unwrap();
    let bob = s.account_by_id(b).await.unwrap().unwrap();
    assert_eq!((bob.failed_logins, bob.locked_until), (0, 140));
    assert!(!claim("x", 100).await.unwrap(), "x: the account is locked");
    assert!(
        claim("y", 100).await.unwrap(),
        "y: where the owner last logged in"
    );
    // A day after its last failure, an unlocked network's count is pruned: x's failure at 80 is
    // forgotten, so five claims are granted (without the prune the fourth would lock x).
    let t = 80 + 86_400;
    s.prune(t).await.unwrap();
    for _ in 0..5 {
        assert!(claim("x", t).await.unwrap());
    }
    assert!(!claim("x", t).await.unwrap(), "x locked by its own five");
    // Two more from elsewhere make eight for the account: locked, but not where its owner logs in.
    assert!(claim("p", t).await.unwrap());
    assert!(claim("q", t).await.unwrap());
    assert!(!claim("s", t).await.unwrap(), "the account is locked");
    assert!(claim("y", t).await.unwrap(), "but not for y");
    assert!(s.account_by_id(a).await.unwrap().is_none());
    s.ping().await.unwrap();
}

/// `sqlite.rs`'s `compare_and_set_transitions`, on any store.
async fn compare_and_set_transitions(s: &dyn Store) {
    let a = s
        .insert_pending_account(phone_account("a", "m1"), 10)
        .await
        .unwrap();
    let b = s
        .insert_pending_account(phone_account("b", "m2"), 10)
        .await
        .unwrap();
    assert_eq!(pair_refused(s, a, b, 11).await, "changed");
    assert!(s
        .transition_account(a, AccountState::Pending, AccountState::Active, 11)
        .await
        .unwrap());
    assert!(!s
        .transition_account(a, AccountState::Pending, AccountState::Deleting, 11)
        .await
        .unwrap());
    assert!(s
        .transition_account(b, AccountState::Pending, AccountState::Active, 11)
        .await
        .unwrap());
    // Both orders of a pair's ids: a > b breaks the CHECK (Exists), a == b is never two active
    // accounts (Changed) — as SQLite answers.
    assert_eq!(pair_refused(s, b, a, 12).await, "exists");
    assert_eq!(pair_refused(s, a, a, 12).await, "changed");
    s.insert_binding(a, b, BindingState::Binding, 12)
        .await
        .unwrap();
    assert!(s
        .transition_binding(a, b, BindingState::Binding, BindingState::Unbinding, 13)
        .await
        .unwrap());
    assert!(!s
        .transition_binding(a, b, BindingState::Binding, BindingState::Bound, 13)
        .await
        .unwrap());
    let (_, pairs) = s.unfinished(100).await.unwrap();
    assert_eq!(pairs.len(), 1);
    assert!(!s
        .delete_binding_in(a, b, BindingState::Binding)
        .await
        .unwrap());
    assert!(s
        .delete_binding_in(a, b, BindingState::Unbinding)
        .await
        .unwrap());
    assert!(s.binding(a, b).await.unwrap().is_none());
    assert!(s.begin_cancel(a, 14).await.unwrap());
    assert!(!s.begin_cancel(a, 14).await.unwrap());
    assert_eq!(pair_refused(s, a, b, 15).await, "changed");
    let (acc, pairs) = s.unfinished(100).await.unwrap();
    assert_eq!((acc.len(), pairs.len()), (1, 0));
    s.delete_binding(a, b).await.unwrap();
}
