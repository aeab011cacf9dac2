//! Scale-out (issue 21): two instances on one PostgreSQL, each answering token checks from its own
//! memory; a revocation through one instance reaches the other's TCP API within a second, also
//! across a cut of the other's database connections (`pg_terminate_backend`).
//!
//! Needs PostgreSQL (`REGISTER_TEST_PG_URL`, see tests/service/postgres.rs) and Prosody.

use std::time::{Duration, Instant};

use register::auth::crypto;
use serde_json::{json, Value};
use xmpp::testkit::{Prosody, ProsodyOptions};

use crate::harness::{pg_url, signed};
use crate::postgres::{admin_client, Node, TestDb};

/// The whole window a revocation has to reach another instance.
const WITHIN: Duration = Duration::from_secs(1);

/// Asks `node`'s TCP API about `token` until it is refused (result 4), for at most [`WITHIN`]
/// after `since` (the moment the revocation was acknowledged); panics with the last answer when
/// it is still accepted then.
async fn refused_within_a_second(node: &Node, token: &str, since: Instant, what: &str) {
    let mut last;
    loop {
        last = node.tcp_verify(token).await;
        if last["result"] == 4 && last["validate"] == false {
            return;
        }
        if since.elapsed() > WITHIN {
            panic!(
                "{what}: the other instance still answered {last} {:?} after the revocation",
                since.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn valid(v: &Value) -> bool {
    v["result"] == 0 && v["validate"] == true
}

/// Whether `node` holds `token` in memory (its next check is answered without the database).
fn in_memory(node: &Node, token: &str) -> bool {
    let app = &node.server().app;
    app.store
        .token_in_memory(&crypto::token_digest(token), app.now())
        .is_some()
}

/// Checks `token` at `node` until it is answered from memory (the first check fills the cache;
/// a cache that is not live yet fills nothing), at most 10 s.
async fn cached_at(node: &Node, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !in_memory(node, token) {
        assert!(Instant::now() < deadline, "the token never got into memory");
        let v = node.tcp_verify(token).await;
        assert!(valid(&v), "{v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let v = node.tcp_verify(token).await;
    assert!(valid(&v), "answered from memory: {v}");
}

/// Ends every database connection of the instance named `component` (its pool and its change
/// listener); returns how many there were.
async fn cut(admin: &tokio_postgres::Client, component: &str) -> i64 {
    let rows = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name IN ($1, $2)",
            &[
                &format!("register {component}"),
                &format!("register {component} listener"),
            ],
        )
        .await
        .unwrap();
    rows.len() as i64
}

/// Waits until `node`'s change feed is `live` (at most 10 s).
async fn feed_is(node: &Node, live: bool) {
    let feed = node.server().app.store.change_feed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while feed.is_live() != live {
        assert!(
            Instant::now() < deadline,
            "the change feed never became live={live}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn login(node: &Node, name: &str) -> String {
    let v = node.login_device(name).await;
    assert_eq!(v["result"], 0, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

async fn logout(node: &Node, name: &str, token: &str) {
    let p = signed("/logout", &[("user_name", name), ("access_token", token)]);
    let v = node.post("/logout", &p).await;
    assert_eq!(v["result"], 0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_the_other_instance_within_a_second() {
    let Some(base) = pg_url("a_revocation_reaches_the_other_instance_within_a_second") else {
        return;
    };
    let db = TestDb::create(&base).await;
    let admin = admin_client(&base).await;
    let prosody = Prosody::start(ProsodyOptions {
        extra_components: vec!["register2.example.test".into()],
        ..Default::default()
    });
    let comp_a = prosody.component.clone();
    let comp_b = "register2.example.test";
    let a = Node::start(&prosody, &comp_a, &db.url).await;
    let b = Node::start(&prosody, comp_b, &db.url).await;
    feed_is(&b, true).await;

    for name in ["cam-1", "cam-2", "cam-3"] {
        assert_eq!(a.register_device(name).await, 0);
    }
    // Tokens issued through A, answered by B from its own memory.
    let t1 = login(&a, "cam-1").await;
    let t2 = login(&a, "cam-1").await;
    let t3 = login(&a, "cam-2").await;
    let t4 = login(&a, "cam-3").await;
    for t in [&t1, &t2, &t3, &t4] {
        cached_at(&b, t).await;
    }

    // A logout through A: refused by B within a second; the account's other token stays valid.
    logout(&a, "cam-1", &t1).await;
    refused_within_a_second(&b, &t1, Instant::now(), "logout").await;
    assert!(valid(&b.tcp_verify(&t2).await));

    // B's database connections cut and restored; then a logout through A.
    assert!(cut(&admin, comp_b).await >= 1, "B had connections to cut");
    feed_is(&b, false).await;
    feed_is(&b, true).await;
    cached_at(&b, &t2).await;
    logout(&a, "cam-1", &t2).await;
    refused_within_a_second(&b, &t2, Instant::now(), "logout after a reconnection").await;

    // Cut again, and a cancel through A while B's listener is down: B reads the database
    // meanwhile and catches up by sequence number when it is back.
    cached_at(&b, &t3).await;
    assert!(cut(&admin, comp_b).await >= 1);
    let v = a.cancel_device("cam-2").await;
    assert_eq!(v["result"], 0, "{v}");
    refused_within_a_second(&b, &t3, Instant::now(), "cancel during a reconnection").await;
    feed_is(&b, true).await;
    let v = b.tcp_verify(&t3).await;
    assert_eq!(
        (v["result"].clone(), v["validate"].clone()),
        (json!(4), json!(false))
    );
    // What did not change stays answered, from memory again once the feed is back.
    cached_at(&b, &t4).await;

    a.stop().await;
    b.stop().await;
    drop(admin);
    db.drop_db().await;
}
