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
use register::store::*;
use serde_json::{json, Value};
use xmpp::testkit::{Prosody, ProsodyOptions};

use crate::harness::{config_for, pg_url, post_form, signed, Opts, ProsodyExt, CAPTCHA};

/// The same `jid_pwd` key on every instance: one instance must read what another sealed.
const ENC_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

use register::store::test_db::phone_account;
pub(crate) use register::store::test_db::{admin_client, TestDb};

// ---------------------------------------------------------------------------------------------
// The store on its own: its contract (the same sequence on SQLite, the cache and PostgreSQL) is
// tested beside it, in src/store/contract.rs; what needs several stores at once is here.

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
            .insert_pending_account(
                phone_account(&format!("r{round}"), &format!("rn{round}")),
                10,
            )
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
                phone_account(&format!("same{round}"), &format!("sn{round}-{i}")),
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
pub(crate) struct Node {
    server: Option<Server>,
    http: reqwest::Client,
    base: String,
    _data: tempfile::TempDir,
}

impl Node {
    pub(crate) async fn start(prosody: &Prosody, component: &str, url: &str) -> Node {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
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

    pub(crate) fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    pub(crate) async fn post(&self, path: &str, params: &[(String, String)]) -> Value {
        crate::harness::post_form(&self.http, &self.base, path, params).await
    }

    pub(crate) async fn captcha(&self) -> String {
        let r = crate::harness::fetch(&self.http, &self.base, "/verify_code").await;
        assert_eq!(r.status(), 200);
        r.headers()["x-verify-code-id"].to_str().unwrap().to_owned()
    }

    /// Register a phone answering the challenge `captcha_id` (fetched at any instance).
    pub(crate) async fn register_phone(&self, name: &str, captcha_id: &str) -> i64 {
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

    pub(crate) async fn register_device(&self, name: &str) -> i64 {
        let p = signed(
            "/register",
            &[
                ("user_name", name),
                ("password", "password1"),
                ("type", "2"),
                ("des", "a device"),
                ("device_type", "cam"),
            ],
        );
        self.post("/register", &p).await["result"].as_i64().unwrap()
    }

    pub(crate) async fn login_device(&self, name: &str) -> Value {
        self.as_device("/login", name).await
    }

    pub(crate) async fn cancel_device(&self, name: &str) -> Value {
        self.as_device("/cancel", name).await
    }

    /// `path` with device `name`'s credentials, signed.
    pub(crate) async fn as_device(&self, path: &str, name: &str) -> Value {
        let p = signed(
            path,
            &[
                ("user_name", name),
                ("password", "password1"),
                ("type", "2"),
            ],
        );
        self.post(path, &p).await
    }

    /// `/verify_access_token` over this instance's TCP API.
    pub(crate) async fn tcp_verify(&self, token: &str) -> Value {
        crate::harness::tcp_verify_signed(self.server().addrs.tcp, token).await
    }

    pub(crate) async fn stop(mut self) {
        self.server.take().unwrap().stop().await.unwrap();
    }
}

/// A fresh database for `test` (`None`: the test is skipped, see [`pg_url`]), one Prosody (with a
/// second component name, since Prosody takes one connection per component) and two service
/// instances on that database.
async fn two_nodes(test: &str) -> Option<(TestDb, Prosody, Node, Node)> {
    let db = TestDb::create(&pg_url(test)?).await;
    let prosody = Prosody::start(ProsodyOptions {
        extra_components: vec!["register2.example.test".into()],
        ..Default::default()
    });
    let comp_a = prosody.component.clone();
    let a = Node::start(&prosody, &comp_a, &db.url).await;
    let b = Node::start(&prosody, "register2.example.test", &db.url).await;
    Some((db, prosody, a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_database() {
    let Some((db, prosody, a, b)) = two_nodes("two_instances_share_one_database").await else {
        return;
    };

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

    // A signed request one instance accepted is a replay at the other: the nonce is shared.
    let p = signed(
        "/login",
        &[
            ("user_name", "cam-1"),
            ("password", "password1"),
            ("type", "2"),
        ],
    );
    assert_eq!(a.post("/login", &p).await["result"], 0);
    assert_eq!(
        b.post("/login", &p).await["result"],
        6,
        "a nonce spent at A is refused at B"
    );

    // A token issued by B is verified over A's TCP API...
    let v = a.tcp_verify(&token).await;
    assert_eq!(
        (v["result"].clone(), v["validate"].clone()),
        (json!(0), json!(true)),
        "{v}"
    );
    assert_eq!(v["user_name"], "cam-1");
    // ...and a cancel at A revokes it for both (B never checked it: it reads the database;
    // scale_out.rs covers a token B holds in memory).
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
    let test = "a_lock_set_through_one_instance_holds_at_the_other";
    let Some((db, _prosody, a, b)) = two_nodes(test).await else {
        return;
    };
    assert_eq!(a.register_device("cam-lock").await, 0);
    let guess = |n: &Node, i: usize| {
        let p = signed(
            "/login",
            &[
                ("user_name", "cam-lock"),
                ("password", &format!("wrong-{i}")),
                ("type", "2"),
            ],
        );
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
