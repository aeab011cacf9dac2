//! Openfire's client side (c2s) as `register` meets it in `binding = "c2s"` mode, against the
//! scripted Openfire of `xmpp::testkit` (what it reproduces, and from which Openfire sources, is
//! listed there): the default SASL mechanisms, and rosters that shared groups fill.

use tokio_util::sync::CancellationToken;
use xmpp::testkit::{Openfire, OpenfireOptions, TestServer};
use xmpp::{AccountsMode, BindingMode, Party, Xmpp, XmppConfig, XmppError};

/// A config for the scripted Openfire (the component link comes up but is not used here).
fn cfg(of: &Openfire) -> XmppConfig {
    of.config(AccountsMode::Component, BindingMode::C2s)
}

fn start(of: &Openfire) -> (Xmpp, tokio_util::sync::DropGuard) {
    let shutdown = CancellationToken::new();
    let x = Xmpp::start(cfg(of), shutdown.clone());
    (x, shutdown.drop_guard())
}

fn party(node: &str, nickname: &str) -> Party {
    crate::party(node, &format!("pw-{node}"), nickname, "Device")
}

fn users(c2s: &Openfire, nodes: &[&str]) -> Vec<Party> {
    nodes
        .iter()
        .map(|n| {
            c2s.add_user(n, &format!("pw-{n}"));
            party(n, &format!("{n}-nick"))
        })
        .collect()
}

/// A scripted Openfire with the users `nodes`, alice and bob (among them) in the shared group
/// "Staff", and a client started against it.
fn with_staff(nodes: &[&str]) -> (Openfire, Vec<Party>, Xmpp, tokio_util::sync::DropGuard) {
    crate::init_tracing();
    let c2s = Openfire::start(OpenfireOptions::default());
    let p = users(&c2s, nodes);
    c2s.add_shared_group("Staff", &["alice", "bob"]);
    let (x, stop) = start(&c2s);
    (c2s, p, x, stop)
}

/// Openfire offers PLAIN, DIGEST-MD5, CRAM-MD5 and SCRAM-SHA-1 (no SCRAM-SHA-256) and STARTTLS
/// as optional: a login with TLS off picks SCRAM-SHA-1, never PLAIN without TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_default_sasl_mechanisms_log_in_with_scram_sha_1() {
    crate::init_tracing();
    let c2s = Openfire::start(OpenfireOptions::default());
    c2s.add_user("alice", "pw-alice");
    xmpp::check_login(&cfg(&c2s), "alice", "pw-alice")
        .await
        .expect("login");
    let wrong = xmpp::check_login(&cfg(&c2s), "alice", "wrong").await;
    assert!(matches!(wrong, Err(XmppError::AuthFailed)), "{wrong:?}");
    c2s.with(|s| assert_eq!(s.mechanisms_used, ["SCRAM-SHA-1", "SCRAM-SHA-1"]));
}

/// Contacts a shared group makes `both` are in each other's roster with the group's display
/// name: a bind of such a pair is reported as already bound, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_shared_group_contacts_answer_a_bind_as_already_bound() {
    let (c2s, p, x, _stop) = with_staff(&["alice", "bob"]);
    let roster = x.roster(&p[0]).await.expect("roster");
    assert_eq!(roster.len(), 1, "{roster:?}");
    assert_eq!(roster[0].jid, "bob@example.test");
    assert_eq!(roster[0].subscription, "both");
    assert_eq!(roster[0].groups, ["Staff"]);
    let r = x.bind(&p[0], &p[1]).await;
    assert!(matches!(r, Err(XmppError::AlreadyBound)), "{r:?}");
    c2s.with(|s| assert_eq!(s.roster_sets, 0));
}

/// Openfire refuses to remove a shared-group item with `not-acceptable`. Unbind takes that as
/// "nothing of ours to remove": one attempt per side, no loop, reported as not bound — which
/// the service counts as done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_shared_group_item_removal_is_not_acceptable_and_unbind_does_not_loop() {
    let (c2s, p, x, _stop) = with_staff(&["alice", "bob"]);
    let r = x.unbind(&p[0], &p[1]).await;
    assert!(matches!(r, Err(XmppError::NotBound)), "{r:?}");
    c2s.with(|s| {
        assert_eq!(
            s.refused_removals,
            [
                (
                    "alice@example.test".to_owned(),
                    "bob@example.test".to_owned()
                ),
                (
                    "bob@example.test".to_owned(),
                    "alice@example.test".to_owned()
                ),
            ]
        );
        assert_eq!(s.removed, 0);
    });
    // Still mutual through the group: nothing changed on the server.
    let roster = x.roster(&p[1]).await.expect("roster");
    assert!(
        roster
            .iter()
            .any(|e| e.jid == "alice@example.test" && e.subscription == "both"),
        "{roster:?}"
    );
}

/// A pair bound by register (personal items) next to a shared group: bind and unbind work on
/// the personal items, and a pair whose items are personal *and* shared (bound before the
/// group was created) is refused removal on both sides, which unbind reports as not bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_personal_items_are_bound_and_removed_next_to_a_shared_group() {
    let (c2s, p, x, _stop) = with_staff(&["alice", "bob", "carol", "dave"]);
    x.bind(&p[2], &p[3]).await.expect("bind carol and dave");
    let roster = x.roster(&p[2]).await.expect("roster");
    assert_eq!(roster.len(), 1, "{roster:?}");
    assert_eq!(roster[0].subscription, "both");
    assert_eq!(roster[0].nickname, "dave-nick");
    assert_eq!(roster[0].groups, ["Device"]);
    x.unbind(&p[2], &p[3]).await.expect("unbind carol and dave");
    assert!(x.roster(&p[2]).await.unwrap().is_empty());
    assert!(x.roster(&p[3]).await.unwrap().is_empty());
    c2s.with(|s| assert_eq!(s.removed, 2));

    // Carol and Dave bound again, then put in a shared group: their items are shared too.
    x.bind(&p[2], &p[3]).await.expect("bind again");
    c2s.add_shared_group("Lab", &["carol", "dave"]);
    let r = x.unbind(&p[2], &p[3]).await;
    assert!(matches!(r, Err(XmppError::NotBound)), "{r:?}");
    c2s.with(|s| {
        assert_eq!(s.refused_removals.len(), 2, "{:?}", s.refused_removals);
        assert_eq!(s.removed, 2);
    });
}

/// The testkit's Openfire runs both sides on one user store, as the service's tests need it:
/// accounts made by add-user log in over c2s, the server's queries after the handshake are
/// answered, and the add-user probe after link-up leaves no session open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfire_accounts_made_by_add_user_log_in_over_c2s() {
    crate::init_tracing();
    let of = Openfire::start(OpenfireOptions::default());
    let (x, _stop) = start(&of);
    assert!(crate::wait_up(&x, std::time::Duration::from_secs(5)).await);
    assert_eq!(x.account_commands(), xmpp::AccountCommands::Allowed);
    x.probe().await.expect("register check's probe");
    x.create_account("erin", "pw-erin").await.expect("add-user");
    assert!(of.has_user("erin"));
    xmpp::check_login(&cfg(&of), "erin", "pw-erin")
        .await
        .expect("the new account logs in");
    x.delete_account("erin", "x").await.expect("delete-user");
    assert!(!of.has_user("erin"));
    let gone = x.delete_account("erin", "x").await;
    assert!(matches!(gone, Err(XmppError::NotFound)), "{gone:?}");
    assert_eq!(of.open_sessions(), 0);
    of.with(|s| {
        let ids: Vec<_> = s.replies.iter().filter_map(|r| r.attr("id")).collect();
        assert!(
            ids.contains(&"of-disco") && ids.contains(&"of-version"),
            "{ids:?}"
        );
    });
}
