//! Account creation and deletion in both modes, TLS and plaintext, checked by independent logins.

use xmpp::testkit::TestClient;
use xmpp::{AccountsMode, BindingMode, XmppError};

use crate::common::variants;
use crate::{env, node};

async fn create_delete_cycle(tls: bool, mode: AccountsMode) {
    let e = env(tls, mode, BindingMode::C2s).await;
    let n = node("acct");
    e.xmpp
        .create_account(&n, "pw-123456")
        .await
        .expect("create");
    assert!(e.server.account_on_disk(&n), "no account file for {n}");
    let c = TestClient::login(&e.server, &n, "pw-123456")
        .await
        .expect("created JID logs in");
    c.close().await;
    assert!(TestClient::login(&e.server, &n, "wrong-password")
        .await
        .is_err());

    let dup = e.xmpp.create_account(&n, "other-pw").await;
    assert!(
        matches!(dup, Err(XmppError::Conflict)),
        "duplicate: {dup:?}"
    );
    // The duplicate did not change the password.
    TestClient::login(&e.server, &n, "pw-123456")
        .await
        .expect("still the first password")
        .close()
        .await;

    e.xmpp
        .delete_account(&n, "pw-123456")
        .await
        .expect("delete");
    assert!(
        TestClient::login(&e.server, &n, "pw-123456").await.is_err(),
        "deleted JID still logs in"
    );
    assert!(!e.server.account_on_disk(&n));
}

variants! {
    component_accounts_plaintext => create_delete_cycle(false, AccountsMode::Component);
    component_accounts_tls => create_delete_cycle(true, AccountsMode::Component);
    ibr_accounts_plaintext => create_delete_cycle(false, AccountsMode::Ibr);
    ibr_accounts_tls => create_delete_cycle(true, AccountsMode::Ibr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_missing_account_is_not_found() {
    let e = env(false, AccountsMode::Component, BindingMode::C2s).await;
    let r = e.xmpp.delete_account(&node("ghost"), "x").await;
    assert!(matches!(r, Err(XmppError::NotFound)), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_is_refused_before_sending() {
    let e = env(false, AccountsMode::Component, BindingMode::C2s).await;
    for bad in [
        "a".repeat(65),
        "has space".into(),
        "at@sign".into(),
        "Upper".into(),
        "".into(),
        "sl/ash".into(),
    ] {
        let r = e.xmpp.create_account(&bad, "pw-123456").await;
        assert!(
            matches!(r, Err(XmppError::InvalidInput(_))),
            "{bad:?}: {r:?}"
        );
    }
    let r = e.xmpp.create_account(&node("ok"), "").await;
    assert!(matches!(r, Err(XmppError::InvalidInput(_))), "{r:?}");
    assert!(xmpp::validate_node(&"a".repeat(64)).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_login_and_wrong_password() {
    for tls in [false, true] {
        let e = env(tls, AccountsMode::Component, BindingMode::C2s).await;
        let n = node("login");
        e.xmpp.create_account(&n, "right-pw").await.unwrap();
        xmpp::check_login(e.xmpp.config(), &n, "right-pw")
            .await
            .expect("login");
        let started = std::time::Instant::now();
        let r = xmpp::check_login(e.xmpp.config(), &n, "wrong-pw").await;
        assert!(matches!(r, Err(XmppError::AuthFailed)), "{r:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "wrong password not reported at once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_works() {
    let e = env(false, AccountsMode::Component, BindingMode::Privileged).await;
    e.xmpp.probe().await.expect("probe");
    let (ups, _) = e.xmpp.link_stats();
    assert!(ups >= 1);
}

/// The add-user probe run after each link-up (and by `register check`) is harmless on Prosody:
/// Prosody offers the form, the session is cancelled, the verdict is `Allowed`, and accounts
/// work as before; `Xmpp::probe` (the whole `register check`) passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_user_probe_is_allowed_and_harmless_on_prosody() {
    let e = env(false, AccountsMode::Component, BindingMode::C2s).await;
    let verdict = e
        .xmpp
        .account_commands_checked(std::time::Duration::from_secs(10))
        .await;
    assert_eq!(verdict, xmpp::AccountCommands::Allowed);
    e.xmpp.probe().await.expect("register check's probe");
    let n = node("after-probe");
    e.xmpp
        .create_account(&n, "pw-123456")
        .await
        .expect("create");
    assert!(e.server.account_on_disk(&n));
    e.xmpp.delete_account(&n, "x").await.expect("delete");
    assert!(!e.server.account_on_disk(&n));
}
