//! Bind, unbind and roster in both binding modes, checked by independent logins of both users.

use std::time::Duration;

use xmpp::testkit::TestClient;
use xmpp::{AccountsMode, BindingMode, RosterEntry, XmppError};

use crate::common::variants;
use crate::{env, node, party};

fn entry<'a>(roster: &'a [RosterEntry], jid: &str) -> &'a RosterEntry {
    roster
        .iter()
        .find(|e| e.jid == jid)
        .unwrap_or_else(|| panic!("{jid} not in {roster:?}"))
}

async fn bind_cycle(tls: bool, mode: BindingMode) {
    let e = env(tls, AccountsMode::Component, mode).await;
    let (na, nb) = (node("phone"), node("dev"));
    e.xmpp.create_account(&na, "pw-aaaaaa").await.unwrap();
    e.xmpp.create_account(&nb, "pw-bbbbbb").await.unwrap();
    let a = party(&na, "pw-aaaaaa", "alice-phone", "Phone");
    let b = party(&nb, "pw-bbbbbb", "kitchen", "Device");
    let (ja, jb) = (e.xmpp.jid_of(&na), e.xmpp.jid_of(&nb));

    e.xmpp.bind(&a, &b).await.expect("bind");

    let mut ca = TestClient::login(&e.server, &na, "pw-aaaaaa")
        .await
        .unwrap();
    let mut cb = TestClient::login(&e.server, &nb, "pw-bbbbbb")
        .await
        .unwrap();
    let ra = ca.roster().await.unwrap();
    let rb = cb.roster().await.unwrap();
    let ib = entry(&ra, &jb);
    assert_eq!(
        (ib.subscription.as_str(), ib.nickname.as_str()),
        ("both", "kitchen")
    );
    assert_eq!(ib.groups, vec!["Device".to_owned()]);
    let ia = entry(&rb, &ja);
    assert_eq!(
        (ia.subscription.as_str(), ia.nickname.as_str()),
        ("both", "alice-phone")
    );
    assert_eq!(ia.groups, vec!["Phone".to_owned()]);

    // Our own roster read agrees.
    let ours = e.xmpp.roster(&a).await.unwrap();
    assert_eq!(entry(&ours, &jb).subscription, "both");

    // A message from one arrives at the other.
    cb.available().await.unwrap();
    ca.send_chat(&jb, "hello device").await.unwrap();
    let (from, body) = cb
        .recv_chat(Duration::from_secs(5))
        .await
        .expect("message arrives");
    assert_eq!(
        (from.as_str(), body.as_str()),
        (ja.as_str(), "hello device")
    );

    let again = e.xmpp.bind(&a, &b).await;
    assert!(
        matches!(again, Err(XmppError::AlreadyBound)),
        "second bind: {again:?}"
    );

    e.xmpp.unbind(&a, &b).await.expect("unbind");
    assert!(
        ca.roster().await.unwrap().is_empty(),
        "A's roster not empty"
    );
    assert!(
        cb.roster().await.unwrap().is_empty(),
        "B's roster not empty"
    );
    assert!(e.xmpp.roster(&b).await.unwrap().is_empty());

    let r = e.xmpp.unbind(&a, &b).await;
    assert!(
        matches!(r, Err(XmppError::NotBound)),
        "unbind of unbound: {r:?}"
    );

    // Bind again after unbind works.
    e.xmpp.bind(&b, &a).await.expect("rebind");
    assert_eq!(entry(&ca.roster().await.unwrap(), &jb).subscription, "both");
    ca.close().await;
    cb.close().await;
}

variants! {
    c2s_binding_plaintext => bind_cycle(false, BindingMode::C2s);
    c2s_binding_tls => bind_cycle(true, BindingMode::C2s);
    privileged_binding => bind_cycle(false, BindingMode::Privileged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_without_permission_is_unsupported() {
    let opts = xmpp::testkit::ProsodyOptions {
        privileged: false,
        ..Default::default()
    };
    let e = crate::env_with(
        opts,
        AccountsMode::Component,
        BindingMode::Privileged,
        |_| {},
    )
    .await;
    let a = party(&node("a"), "pw-aaaaaa", "a", "Phone");
    let b = party(&node("b"), "pw-bbbbbb", "b", "Device");
    e.xmpp.create_account(&a.node, &a.password).await.unwrap();
    e.xmpp.create_account(&b.node, &b.password).await.unwrap();
    let r = e.xmpp.bind(&a, &b).await;
    assert!(matches!(r, Err(XmppError::Unsupported(_))), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_user_password_is_auth_failed() {
    let e = env(false, AccountsMode::Component, BindingMode::C2s).await;
    let (na, nb) = (node("a"), node("b"));
    e.xmpp.create_account(&na, "pw-aaaaaa").await.unwrap();
    e.xmpp.create_account(&nb, "pw-bbbbbb").await.unwrap();
    let a = party(&na, "not-the-password", "a", "Phone");
    let b = party(&nb, "pw-bbbbbb", "b", "Device");
    let r = e.xmpp.bind(&a, &b).await;
    assert!(matches!(r, Err(XmppError::AuthFailed)), "{r:?}");
    let r = e.xmpp.roster(&a).await;
    assert!(matches!(r, Err(XmppError::AuthFailed)), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_reused_and_reaped() {
    let e = crate::env_with(
        Default::default(),
        AccountsMode::Component,
        BindingMode::C2s,
        |c| {
            c.session_idle = Duration::from_millis(400);
        },
    )
    .await;
    let n = node("pool");
    e.xmpp.create_account(&n, "pw-123456").await.unwrap();
    let p = party(&n, "pw-123456", "p", "Phone");
    // Prosody logs every c2s authentication: a reused session authenticates once, a replaced
    // one would authenticate again.
    let logins = || {
        e.server
            .log()
            .matches(&format!("Authenticated as {n}@"))
            .count()
    };
    e.xmpp.roster(&p).await.unwrap();
    assert_eq!(e.xmpp.idle_sessions(), 1);
    assert_eq!(logins(), 1, "one login for the first operation");
    e.xmpp.roster(&p).await.unwrap();
    assert_eq!(
        e.xmpp.idle_sessions(),
        1,
        "second operation did not reuse the session"
    );
    assert_eq!(logins(), 1, "the second operation logged in again");
    // Reaped once idle for longer than session_idle (400 ms): wait for it, with a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while e.xmpp.idle_sessions() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "idle session not closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_pooled_session_is_replaced() {
    let mut e = env(false, AccountsMode::Component, BindingMode::C2s).await;
    let n = node("dead");
    e.xmpp.create_account(&n, "pw-123456").await.unwrap();
    let p = party(&n, "pw-123456", "p", "Phone");
    e.xmpp.roster(&p).await.unwrap();
    e.server.restart(); // kills every pooled session
    assert!(crate::wait_up(&e.xmpp, Duration::from_secs(10)).await);
    e.xmpp.roster(&p).await.expect("transparently replaced");
}

/// A user of the server sends the component a `<privilege/>` that grants nothing (XEP-0356 lets
/// only the server grant): the component keeps the server's grant, `register check` still
/// passes and privileged binding still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_privilege_message_changes_nothing() {
    let e = env(false, AccountsMode::Component, BindingMode::Privileged).await;
    e.xmpp.probe().await.expect("privileged link ready");
    let (nm, na, nb) = (node("mallory"), node("phone"), node("dev"));
    for n in [&nm, &na, &nb] {
        e.xmpp.create_account(n, "pw-mmmmmm").await.unwrap();
    }
    let mut m = TestClient::login(&e.server, &nm, "pw-mmmmmm")
        .await
        .unwrap();
    for ns in ["urn:xmpp:privilege:2", "urn:xmpp:privilege:1"] {
        let forged = minidom::Element::builder("message", "jabber:client")
            .attr("to".try_into().unwrap(), e.xmpp.config().component.as_str())
            .append(minidom::Element::builder("privilege", ns).build())
            .build();
        m.send_element(&forged).await.unwrap();
    }
    // What must not happen has no event to wait for: give the server time to route both.
    tokio::time::sleep(Duration::from_millis(500)).await;
    e.xmpp.probe().await.expect("the server's grant stands");
    let a = party(&na, "pw-mmmmmm", "phone", "Phone");
    let b = party(&nb, "pw-mmmmmm", "dev", "Device");
    e.xmpp
        .bind(&a, &b)
        .await
        .expect("privileged bind still works");
    m.close().await;
}
