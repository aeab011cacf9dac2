//! The PostgreSQL store, and two service instances sharing one PostgreSQL and one Prosody.
//!
//! These tests need a PostgreSQL server: `REGISTER_TEST_PG_URL=postgres://user@127.0.0.1:PORT/db`
//! (`.ci/run` starts one with `scripts/pg-test.sh`). Without it they fail on CI (`CI=true`) and
//! with `REGISTER_TEST_BACKEND=postgres`; elsewhere they print that they were skipped and pass, so
//! a developer's `cargo test` without PostgreSQL still runs the rest. Each test creates its own database (random name,
//! dropped at the end), so they run in parallel.

use std::sync::Arc;

use register::service::server::Server;
use register::store::postgres::{PgStore, SCHEMA_VERSION};
use register::store::sqlite::SqliteStore;
use register::store::*;
use register::types::AccountType;
use serde_json::{json, Value};
use xmpp::testkit::{Prosody, ProsodyOptions};

use crate::harness::{config_for, pg_url, post_form, signed, Opts, ProsodyExt, CAPTCHA};

/// The same `jid_pwd` key on every instance: one instance must read what another sealed.
const ENC_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// A database of its own on the test server, dropped by [`TestDb::drop_db`].
pub(crate) struct TestDb {
    base: String,
    name: String,
    pub(crate) url: String,
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connecting to REGISTER_TEST_PG_URL");
    tokio::spawn(conn);
    c
}

impl TestDb {
    pub(crate) async fn create(base: &str) -> TestDb {
        let name = format!("register_test_{:016x}", rand::random::<u64>());
        admin_client(base)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        let (prefix, _) = base.rsplit_once('/').expect("a URL with a database name");
        TestDb {
            base: base.to_owned(),
            url: format!("{prefix}/{name}"),
            name,
        }
    }

    async fn drop_db(self) {
        admin_client(&self.base)
            .await
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .expect("DROP DATABASE");
    }
}

// ---------------------------------------------------------------------------------------------
// The store on its own: the same sequence as SQLite's unit tests, against both backends.

fn new_account(name: &str, node: &str) -> NewAccount {
    NewAccount {
        user_name: name.into(),
        kind: AccountType::Phone,
        device_type: None,
        des: String::new(),
        password_hash: "h".into(),
        jid_node: node.into(),
        jid_pwd: vec![1, 2, 3],
    }
}

/// `sqlite.rs`'s `accounts_tokens_bindings_captchas`, on any store.
async fn accounts_tokens_bindings_captchas(s: &dyn Store) {
    let a = s
        .insert_pending_account(new_account("alice", "n1"), 10)
        .await
        .unwrap();
    assert!(matches!(
        s.insert_pending_account(new_account("alice", "n2"), 10)
            .await,
        Err(StoreError::Exists)
    ));
    assert!(matches!(
        s.insert_pending_account(new_account("alice2", "n1"), 10)
            .await,
        Err(StoreError::Exists)
    ));
    let b = s
        .insert_pending_account(new_account("bob", "n2"), 10)
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
    assert!(matches!(
        s.insert_binding(a, b, BindingState::Binding, 12).await,
        Err(StoreError::Exists)
    ));
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
        .insert_pending_account(new_account("a", "m1"), 10)
        .await
        .unwrap();
    let b = s
        .insert_pending_account(new_account("b", "m2"), 10)
        .await
        .unwrap();
    assert!(matches!(
        s.insert_binding(a, b, BindingState::Binding, 11).await,
        Err(StoreError::Changed)
    ));
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
    assert!(matches!(
        s.insert_binding(b, a, BindingState::Binding, 12).await,
        Err(StoreError::Exists)
    ));
    assert!(matches!(
        s.insert_binding(a, a, BindingState::Binding, 12).await,
        Err(StoreError::Changed)
    ));
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
    assert!(matches!(
        s.insert_binding(a, b, BindingState::Binding, 15).await,
        Err(StoreError::Changed)
    ));
    let (acc, pairs) = s.unfinished(100).await.unwrap();
    assert_eq!((acc.len(), pairs.len()), (1, 0));
    s.delete_binding(a, b).await.unwrap();
}

#[tokio::test]
async fn store_matches_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteStore::open(&dir.path().join("db")).unwrap();
    accounts_tokens_bindings_captchas(&lite).await;
    compare_and_set_transitions(&lite).await;
    assert!(lite.try_lock_reconciler().await.unwrap());
    let Some(base) = pg_url("store_matches_sqlite") else {
        return;
    };
    let db = TestDb::create(&base).await;
    let pg = PgStore::connect(&db.url, 4).await.unwrap();
    accounts_tokens_bindings_captchas(&pg).await;
    compare_and_set_transitions(&pg).await;
    assert_eq!(pg.schema_version().await.unwrap(), SCHEMA_VERSION);
    drop(pg);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_races_and_the_lease() {
    let Some(base) = pg_url("concurrent_migrations_races_and_the_lease") else {
        return;
    };
    let db = TestDb::create(&base).await;
    // Several instances starting at once migrate once (the advisory lock serializes them).
    let opened = futures::future::join_all((0..4).map(|_| PgStore::connect(&db.url, 4))).await;
    let stores: Vec<Arc<PgStore>> = opened
        .into_iter()
        .map(|s| Arc::new(s.expect("concurrent start")))
        .collect();
    assert_eq!(stores[0].schema_version().await.unwrap(), SCHEMA_VERSION);
    // Reopening keeps the version.
    let again = PgStore::connect(&db.url, 2).await.unwrap();
    assert_eq!(again.schema_version().await.unwrap(), SCHEMA_VERSION);

    // Racing claims through different stores (connections): exactly one wins each race.
    for round in 0..5 {
        let id = stores[0]
            .insert_pending_account(new_account(&format!("r{round}"), &format!("rn{round}")), 10)
            .await
            .unwrap();
        let wins = futures::future::join_all(stores.iter().enumerate().map(|(i, s)| {
            let to = if i % 2 == 0 {
                AccountState::Active
            } else {
                AccountState::Deleting
            };
            s.transition_account(id, AccountState::Pending, to, 11)
        }))
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
        assert_eq!(wins, 1, "round {round}: one claim wins");
        let cid = format!("cap{round}");
        stores[1]
            .insert_captcha(cid.clone(), "x".into(), 99)
            .await
            .unwrap();
        let taken = futures::future::join_all(stores.iter().map(|s| s.take_captcha(cid.clone())))
            .await
            .into_iter()
            .filter(|r| r.as_ref().unwrap().is_some())
            .count();
        assert_eq!(taken, 1, "round {round}: a captcha is taken once");
        let names = futures::future::join_all(stores.iter().enumerate().map(|(i, s)| {
            s.insert_pending_account(
                new_account(&format!("same{round}"), &format!("sn{round}-{i}")),
                10,
            )
        }))
        .await;
        assert_eq!(names.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(names
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, StoreError::Exists)));
    }

    // The reconciler lease: one holder at a time, released by unlock or by the holder's end.
    assert!(stores[0].try_lock_reconciler().await.unwrap());
    assert!(!stores[0].try_lock_reconciler().await.unwrap());
    assert!(!stores[1].try_lock_reconciler().await.unwrap());
    stores[0].unlock_reconciler().await.unwrap();
    assert!(stores[1].try_lock_reconciler().await.unwrap());
    assert!(!stores[2].try_lock_reconciler().await.unwrap());
    drop(stores);
    // The holder's connections are closed with its pool: the lease is free again.
    let mut free = false;
    for _ in 0..50 {
        if again.try_lock_reconciler().await.unwrap() {
            free = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(free, "a dead holder's lease is released");
    again.unlock_reconciler().await.unwrap();
    drop(again);
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------------
// Two service instances on one PostgreSQL and one Prosody, each with its own component.

/// One instance and an HTTPS client for it (no cookies: the captcha id is sent explicitly, so a
/// challenge fetched at one instance can be answered at the other).
struct Node {
    server: Option<Server>,
    http: reqwest::Client,
    base: String,
    _data: tempfile::TempDir,
}

impl Node {
    async fn start(prosody: &Prosody, component: &str, url: &str) -> Node {
        let data = tempfile::tempdir().unwrap();
        let mut cfg = config_for(prosody, data.path().join("data"), Opts::default());
        cfg.xmpp.component = component.into();
        cfg.database.url = url.into();
        cfg.security.encryption_key = ENC_KEY.into();
        let server = crate::harness::start_service(cfg).await;
        let http = crate::harness::trusting(&server.app.cfg.data_dir)
            .build()
            .unwrap();
        let base = format!("https://localhost:{}", server.addrs.http.port());
        Node {
            server: Some(server),
            http,
            base,
            _data: data,
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    async fn post(&self, path: &str, params: &[(String, String)]) -> Value {
        crate::harness::post_form(&self.http, &self.base, path, params).await
    }

    async fn captcha(&self) -> String {
        let r = crate::harness::fetch(&self.http, &self.base, "/verify_code").await;
        assert_eq!(r.status(), 200);
        r.headers()["x-verify-code-id"].to_str().unwrap().to_owned()
    }

    /// Register a phone answering the challenge `captcha_id` (fetched at any instance).
    async fn register_phone(&self, name: &str, captcha_id: &str) -> i64 {
        let p = [
            ("user_name", name),
            ("password", "password1"),
            ("type", "1"),
            ("verify_code", CAPTCHA),
            ("verify_code_id", captcha_id),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()));
        self.post("/register", &p).await["result"].as_i64().unwrap()
    }

    async fn register_device(&self, name: &str) -> i64 {
        let p = signed(&[
            ("user_name", name),
            ("password", "password1"),
            ("type", "2"),
            ("des", "a device"),
            ("device_type", "cam"),
        ]);
        self.post("/register", &p).await["result"].as_i64().unwrap()
    }

    async fn login_device(&self, name: &str) -> Value {
        self.as_device("/login", name).await
    }

    async fn cancel_device(&self, name: &str) -> Value {
        self.as_device("/cancel", name).await
    }

    /// `path` with device `name`'s credentials, signed.
    async fn as_device(&self, path: &str, name: &str) -> Value {
        let p = signed(&[
            ("user_name", name),
            ("password", "password1"),
            ("type", "2"),
        ]);
        self.post(path, &p).await
    }

    /// `/verify_access_token` over this instance's TCP API.
    async fn tcp_verify(&self, token: &str) -> Value {
        crate::harness::tcp_verify_signed(self.server().addrs.tcp, token).await
    }

    async fn stop(mut self) {
        self.server.take().unwrap().stop().await.unwrap();
    }
}

/// One Prosody (with a second component name, since Prosody takes one connection per component)
/// and two service instances on the database `db`.
async fn two_nodes(db: &TestDb) -> (Prosody, Node, Node) {
    let prosody = Prosody::start(ProsodyOptions {
        extra_components: vec!["register2.example.test".into()],
        ..Default::default()
    });
    let comp_a = prosody.component.clone();
    let a = Node::start(&prosody, &comp_a, &db.url).await;
    let b = Node::start(&prosody, "register2.example.test", &db.url).await;
    (prosody, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_database() {
    let Some(base) = pg_url("two_instances_share_one_database") else {
        return;
    };
    let db = TestDb::create(&base).await;
    let (prosody, a, b) = two_nodes(&db).await;

    // A captcha issued by one is answered at the other, once.
    let id = a.captcha().await;
    assert_eq!(b.register_phone("13900000001", &id).await, 0);
    assert_ne!(
        a.register_phone("13900000002", &id).await,
        0,
        "a spent challenge is refused at the instance that issued it"
    );

    // An account registered on one logs in on the other; its JID (sealed by A, opened by B)
    // logs in on the XMPP server.
    assert_eq!(a.register_device("cam-1").await, 0);
    let v = b.login_device("cam-1").await;
    assert_eq!(v["result"], 0, "{v}");
    let token = v["access_token"].as_str().unwrap().to_owned();
    let jid = v["user_info"]["jid"].as_str().unwrap().to_owned();
    let jid_pwd = v["user_info"]["jid_pwd"].as_str().unwrap().to_owned();
    assert!(prosody.can_login(&jid, &jid_pwd).await);

    // A token issued by B is verified over A's TCP API...
    let v = a.tcp_verify(&token).await;
    assert_eq!(
        (v["result"].clone(), v["validate"].clone()),
        (json!(0), json!(true)),
        "{v}"
    );
    assert_eq!(v["user_name"], "cam-1");
    // ...and a cancel at A revokes it for both (no per-instance cache).
    let v = a.cancel_device("cam-1").await;
    assert_eq!(v["result"], 0, "{v}");
    for n in [&a, &b] {
        let v = n.tcp_verify(&token).await;
        assert_eq!(v["validate"], false, "{v}");
    }
    assert!(!prosody.can_login(&jid, &jid_pwd).await);

    // Concurrent registrations of one name across instances: exactly one wins.
    for i in 0..3 {
        let name = format!("race-{i}");
        let (x, y) = tokio::join!(a.register_device(&name), b.register_device(&name));
        let mut r = vec![x, y];
        r.sort();
        assert_eq!(r, vec![0, 103], "register {name} at both instances");
        crate::harness::active_account(a.server(), &prosody, &name).await;
    }

    // Only one instance reconciles at a time.
    let (sa, sb) = (&a.server().app, &b.server().app);
    assert!(sa.store.try_lock_reconciler().await.unwrap());
    assert!(!sb.store.try_lock_reconciler().await.unwrap());
    let skipped = register::lifecycle::reconcile::run_exclusive(sb, sb.now() + 1, &mut |_, _| {})
        .await
        .unwrap();
    assert!(skipped.is_none(), "B skips its run while A holds the lease");
    sa.store.unlock_reconciler().await.unwrap();
    let ran = register::lifecycle::reconcile::run_exclusive(sb, sb.now() + 1, &mut |_, _| {})
        .await
        .unwrap()
        .expect("B runs once the lease is free");
    assert_eq!(ran.failed, 0);
    let (acc, pairs) = sa.store.unfinished(i64::MAX).await.unwrap();
    assert!(acc.is_empty() && pairs.is_empty());

    a.stop().await;
    b.stop().await;
    db.drop_db().await;
}

/// A burst of guesses spread over two instances on one database gets `lockout_threshold` password
/// verdicts in all, and the lock set through one instance holds at the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_set_through_one_instance_holds_at_the_other() {
    let Some(base) = pg_url("a_lock_set_through_one_instance_holds_at_the_other") else {
        return;
    };
    let db = TestDb::create(&base).await;
    let (_prosody, a, b) = two_nodes(&db).await;
    assert_eq!(a.register_device("cam-lock").await, 0);
    let guess = |n: &Node, i: usize| {
        let p = signed(&[
            ("user_name", "cam-lock"),
            ("password", &format!("wrong-{i}")),
            ("type", "2"),
        ]);
        let (http, base) = (n.http.clone(), n.base.clone());
        async move { post_form(&http, &base, "/login", &p).await["result"].clone() }
    };
    let burst: Vec<_> = (0..40)
        .map(|i| guess(if i % 2 == 0 { &a } else { &b }, i))
        .collect();
    for r in futures::future::join_all(burst).await {
        assert_eq!(r, 102);
    }
    // Default threshold 5: five verdicts counted as failures, the 35 others refused as locked.
    let (ma, mb) = (&a.server().app.metrics, &b.server().app.metrics);
    let ((fa, la), (fb, lb)) = (ma.login_failures(), mb.login_failures());
    assert_eq!((fa + fb, la + lb), (5, 35));
    for n in [&a, &b] {
        assert_eq!(n.login_device("cam-lock").await["result"], 102, "locked");
    }
    let acc = b
        .server()
        .app
        .store
        .account_by_name("cam-lock")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acc.failed_logins, 5, "the account-wide count saw the five");
    a.stop().await;
    b.stop().await;
    db.drop_db().await;
}
