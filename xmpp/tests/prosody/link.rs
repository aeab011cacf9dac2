//! The component link against Prosody: wrong secret, restart recovery, garbage stanzas.

use std::time::Duration;

use minidom::Element;
use tokio_util::sync::CancellationToken;
use xmpp::testkit::{Prosody, TestClient};
use xmpp::{AccountsMode, BindingMode, LinkState, Xmpp, XmppError};

use crate::{env, node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_never_comes_up_and_says_not_authorized() {
    crate::init_tracing();
    let server = Prosody::start(Default::default());
    let mut cfg = server.config(AccountsMode::Component, BindingMode::C2s);
    cfg.component_secret = "not-the-secret".into();
    let shutdown = CancellationToken::new();
    let x = Xmpp::start(cfg, shutdown.clone());
    assert!(!crate::wait_up(&x, Duration::from_secs(2)).await);
    let err = x.last_link_error().expect("an error is recorded");
    assert!(err.contains("not-authorized"), "{err}");
    let (ups, fails) = x.link_stats();
    assert_eq!(ups, 0);
    assert!(fails >= 2, "it keeps retrying: {fails}");
    // Operations fail fast while down.
    let started = std::time::Instant::now();
    let r = x.create_account(&node("x"), "pw-123456").await;
    assert!(matches!(r, Err(XmppError::LinkDown)), "{r:?}");
    assert!(started.elapsed() < Duration::from_millis(500));
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_comes_back_after_restart() {
    let mut e = env(false, AccountsMode::Component, BindingMode::C2s).await;
    let n1 = node("before");
    e.xmpp.create_account(&n1, "pw-123456").await.unwrap();
    e.server.stop();
    assert!(
        xmpp::testkit::wait_link(e.xmpp.link_watch(), false, Duration::from_secs(3)).await,
        "link goes down when the server stops"
    );
    let r = e.xmpp.create_account(&node("during"), "pw-123456").await;
    assert!(matches!(r, Err(XmppError::LinkDown)), "{r:?}");
    e.server.restart();
    let started = std::time::Instant::now();
    assert!(
        crate::wait_up(&e.xmpp, Duration::from_secs(10)).await,
        "link did not come back"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let n2 = node("after");
    e.xmpp
        .create_account(&n2, "pw-123456")
        .await
        .expect("works again");
    TestClient::login(&e.server, &n2, "pw-123456")
        .await
        .expect("login")
        .close()
        .await;
    TestClient::login(&e.server, &n1, "pw-123456")
        .await
        .expect("data kept")
        .close()
        .await;
    assert!(e.xmpp.link_stats().0 >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_users_does_not_kill_the_link() {
    let e = env(false, AccountsMode::Component, BindingMode::C2s).await;
    let n = node("evil");
    e.xmpp.create_account(&n, "pw-123456").await.unwrap();
    let mut c = TestClient::login(&e.server, &n, "pw-123456").await.unwrap();
    let to = e.server.component.clone();
    let stanza = |xml: String| xml.parse::<Element>().unwrap();
    let bogus = stanza(format!(
        "<message xmlns='jabber:client' to='{to}' type='bogus'><body>x</body></message>"
    ));
    let prio = stanza(format!(
        "<presence xmlns='jabber:client' to='{to}'><priority>abc</priority></presence>"
    ));
    let iq = stanza(format!(
        "<iq xmlns='jabber:client' to='{to}' type='get' id='g1'/>"
    ));
    for el in [&bogus, &prio, &iq, &bogus] {
        c.send_element(el).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(e.xmpp.link_state(), LinkState::Up);
    assert_eq!(e.xmpp.link_stats().0, 1, "the link was not re-established");
    e.xmpp
        .create_account(&node("still"), "pw-123456")
        .await
        .expect("link still works");
    c.close().await;
}
