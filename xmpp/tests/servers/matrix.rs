//! Server × accounts mode × binding mode: create, duplicate, independent login, bind (both rosters
//! `both` with nickname and group), unbind, reconnect after a server restart (data kept, binding
//! works again), delete. On ejabberd 23.01 privileged binding is detected as unsupported at
//! link-up and refused at once with a message naming the fix.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use xmpp::testkit::{Ejabberd, EjabberdOptions, Prosody, ProsodyOptions, TestClient, TestServer};
use xmpp::{AccountsMode, BindingMode, RosterEntry, Xmpp, XmppError};

use crate::{node, party, wait_up};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Prosody,
    Ejabberd,
}

fn start(kind: Server, tls: bool) -> Box<dyn TestServer> {
    match kind {
        Server::Prosody => Box::new(Prosody::start(ProsodyOptions {
            tls,
            ..Default::default()
        })),
        Server::Ejabberd => Box::new(Ejabberd::start(EjabberdOptions {
            tls,
            ..Default::default()
        })),
    }
}

fn entry<'a>(roster: &'a [RosterEntry], jid: &str) -> Option<&'a RosterEntry> {
    roster.iter().find(|e| e.jid == jid)
}

async fn logs_in(server: &dyn TestServer, node: &str, password: &str) -> bool {
    // A login that timed out on a loaded machine says nothing about the password: try again.
    for _ in 0..3 {
        match TestClient::login(server, node, password).await {
            Ok(c) => {
                c.close().await;
                return true;
            }
            Err(e) if e.contains("timed out") => eprintln!("login of {node}: {e}; again"),
            Err(e) => {
                eprintln!("login of {node}: {e}");
                return false;
            }
        }
    }
    false
}

/// Both rosters, read by the users themselves, say `both` with the peer's nickname and group.
async fn assert_bound(server: &dyn TestServer, a: &xmpp::Party, b: &xmpp::Party, domain: &str) {
    let (ja, jb) = (
        format!("{}@{domain}", a.node),
        format!("{}@{domain}", b.node),
    );
    let mut ca = TestClient::login(server, &a.node, &a.password)
        .await
        .expect("A logs in");
    let mut cb = TestClient::login(server, &b.node, &b.password)
        .await
        .expect("B logs in");
    let ra = ca.roster().await.unwrap();
    let rb = cb.roster().await.unwrap();
    let ib = entry(&ra, &jb).unwrap_or_else(|| panic!("{jb} not in A's roster {ra:?}"));
    assert_eq!(
        (ib.subscription.as_str(), ib.nickname.as_str()),
        ("both", b.nickname.as_str())
    );
    assert_eq!(ib.groups, vec![b.group.clone()]);
    let ia = entry(&rb, &ja).unwrap_or_else(|| panic!("{ja} not in B's roster {rb:?}"));
    assert_eq!(
        (ia.subscription.as_str(), ia.nickname.as_str()),
        ("both", a.nickname.as_str())
    );
    assert_eq!(ia.groups, vec![a.group.clone()]);
    ca.close().await;
    cb.close().await;
}

async fn assert_unbound(server: &dyn TestServer, p: &xmpp::Party) {
    let mut c = TestClient::login(server, &p.node, &p.password)
        .await
        .expect("logs in");
    let r = c.roster().await.unwrap();
    assert!(r.is_empty(), "{}'s roster not empty: {r:?}", p.node);
    c.close().await;
}

/// Binds (or, where unsupported, checks the refusal), then unbinds.
async fn bind_unbind(
    x: &Xmpp,
    server: &dyn TestServer,
    a: &xmpp::Party,
    b: &xmpp::Party,
    unsupported: bool,
) {
    let domain = server.domain().to_owned();
    if unsupported {
        let started = Instant::now();
        let r = x.bind(a, b).await;
        match &r {
            Err(XmppError::Unsupported(why)) => {
                assert!(why.contains("binding = \"c2s\""), "{why}");
                assert!(why.contains("ejabberd"), "{why}");
            }
            other => panic!("privileged bind on {}: {other:?}", server.name()),
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not refused at once: {:?}",
            started.elapsed()
        );
        let r = x.unbind(a, b).await;
        assert!(matches!(r, Err(XmppError::Unsupported(_))), "{r:?}");
        // Nothing was half-done; privileged roster reads still work.
        assert_unbound(server, a).await;
        assert_unbound(server, b).await;
        assert!(x.roster(a).await.expect("privileged roster get").is_empty());
        return;
    }
    x.bind(a, b).await.expect("bind");
    assert_bound(server, a, b, &domain).await;
    let ours = x.roster(a).await.expect("our roster read");
    let jb = format!("{}@{domain}", b.node);
    assert_eq!(
        entry(&ours, &jb).map(|e| e.subscription.as_str()),
        Some("both")
    );
    let again = x.bind(a, b).await;
    assert!(matches!(again, Err(XmppError::AlreadyBound)), "{again:?}");
    x.unbind(a, b).await.expect("unbind");
    assert_unbound(server, a).await;
    assert_unbound(server, b).await;
    let r = x.unbind(a, b).await;
    assert!(matches!(r, Err(XmppError::NotBound)), "{r:?}");
}

async fn scenario(kind: Server, accounts: AccountsMode, binding: BindingMode, tls: bool) {
    crate::init_tracing();
    let mut server = start(kind, tls);
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let x = Xmpp::start(server.config(accounts, binding), shutdown.clone());
    assert!(
        wait_up(&x, Duration::from_secs(10)).await,
        "link did not come up on {}: {:?}",
        server.name(),
        x.last_link_error()
    );
    let unsupported = kind == Server::Ejabberd && binding == BindingMode::Privileged;
    // The add-user probe after link-up (first step, then a cancel) is allowed on both servers.
    let probe = match accounts {
        AccountsMode::Component => xmpp::AccountCommands::Allowed,
        AccountsMode::Ibr => xmpp::AccountCommands::NotUsed,
    };
    assert_eq!(x.account_commands(), probe, "{}", server.name());

    // Create, duplicate, log in independently.
    let (na, nb) = (node("phone"), node("dev"));
    let mut a = party(&na, "pw-aaaaaa", "alice-phone", "Phone");
    let b = party(&nb, "pw-bbbbbb", "kitchen", "Device");
    x.create_account(&na, &a.password).await.expect("create A");
    x.create_account(&nb, &b.password).await.expect("create B");
    let dup = x.create_account(&na, "other-pw").await;
    assert!(
        matches!(dup, Err(XmppError::Conflict)),
        "duplicate: {dup:?}"
    );
    assert!(logs_in(&*server, &na, &a.password).await, "A cannot log in");
    assert!(
        logs_in(&*server, &na, "other-pw").await.not(),
        "duplicate changed the password"
    );

    // A new password: the old one no longer logs in. In component mode the change is XEP-0133
    // change-user-password, which needs no old password: a wrong one proves that path was taken
    // (the c2s fallback would fail to log in with it). Ibr mode changes it over c2s (XEP-0077).
    let old = match accounts {
        AccountsMode::Component => "not-the-password".to_owned(),
        AccountsMode::Ibr => a.password.clone(),
    };
    x.change_password(&na, &old, "pw-renewed-a")
        .await
        .expect("change password");
    assert!(
        logs_in(&*server, &na, &a.password).await.not(),
        "the old password still logs in"
    );
    assert!(
        logs_in(&*server, &na, "pw-renewed-a").await,
        "the new one does not"
    );
    // Setting it again (an interrupted change run a second time) succeeds.
    x.change_password(&na, "pw-renewed-a", "pw-renewed-a")
        .await
        .expect("change password again");
    a.password = "pw-renewed-a".into();
    end_sessions(&x, &*server, &na, &a.password, accounts).await;

    bind_unbind(&x, &*server, &a, &b, unsupported).await;
    if unsupported {
        let r = x.probe().await;
        assert!(matches!(r, Err(XmppError::Unsupported(_))), "probe: {r:?}");
    }

    // Server restart: the link comes back by itself, data is kept, everything works again.
    let (ups, _) = x.link_stats();
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while x.link_stats().0 <= ups || x.link_state() != xmpp::LinkState::Up {
        assert!(
            Instant::now() < deadline,
            "link did not come back after restart: {:?}",
            x.last_link_error()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(logs_in(&*server, &nb, &b.password).await, "data lost");
    bind_unbind(&x, &*server, &b, &a, unsupported).await;

    // Delete: the JID is gone; deleting again is reported.
    for p in [&a, &b] {
        x.delete_account(&p.node, &p.password)
            .await
            .expect("delete");
        assert!(
            !logs_in(&*server, &p.node, &p.password).await,
            "deleted JID still logs in"
        );
    }
    let again = x.delete_account(&na, &a.password).await;
    match accounts {
        AccountsMode::Component => {
            assert!(matches!(again, Err(XmppError::NotFound)), "{again:?}")
        }
        AccountsMode::Ibr => {
            assert!(matches!(again, Err(XmppError::AuthFailed)), "{again:?}")
        }
    }
}

/// XEP-0133 end-user-session through the component ends a session open with the account's
/// password (observed by the session itself); ibr mode has no such command and says so.
async fn end_sessions(
    x: &Xmpp,
    server: &dyn TestServer,
    node: &str,
    password: &str,
    accounts: AccountsMode,
) {
    let mut open = TestClient::login(server, node, password)
        .await
        .expect("a session to end");
    match accounts {
        AccountsMode::Component => {
            x.end_sessions(node).await.expect("end-user-session");
            let how = open.ended_by_server().await;
            assert!(how.is_ok(), "{}: {how:?}", server.name());
        }
        AccountsMode::Ibr => {
            let r = x.end_sessions(node).await;
            assert!(matches!(r, Err(XmppError::Unsupported(_))), "{r:?}");
            open.close().await;
        }
    }
}

use std::ops::Not;

macro_rules! matrix {
    ($($name:ident: $server:ident, $accounts:ident, $binding:ident, $tls:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            scenario(Server::$server, AccountsMode::$accounts, BindingMode::$binding, $tls).await;
        }
    )*};
}

matrix! {
    prosody_component_c2s: Prosody, Component, C2s, false;
    prosody_component_privileged: Prosody, Component, Privileged, false;
    prosody_ibr_c2s: Prosody, Ibr, C2s, false;
    prosody_ibr_privileged: Prosody, Ibr, Privileged, false;
    ejabberd_component_c2s: Ejabberd, Component, C2s, false;
    ejabberd_component_privileged_unsupported: Ejabberd, Component, Privileged, false;
    ejabberd_ibr_c2s: Ejabberd, Ibr, C2s, false;
    ejabberd_ibr_privileged_unsupported: Ejabberd, Ibr, Privileged, false;
    ejabberd_component_c2s_tls: Ejabberd, Component, C2s, true;
}

/// ejabberd without the roster privilege: the permission check speaks (not the probe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_privileged_without_permission_is_unsupported() {
    crate::init_tracing();
    let server = Ejabberd::start(EjabberdOptions {
        privileged: false,
        ..Default::default()
    });
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let x = Xmpp::start(
        server.config(AccountsMode::Component, BindingMode::Privileged),
        shutdown.clone(),
    );
    assert!(wait_up(&x, Duration::from_secs(10)).await);
    let a = party(&node("a"), "pw-aaaaaa", "a", "Phone");
    let b = party(&node("b"), "pw-bbbbbb", "b", "Device");
    x.create_account(&a.node, &a.password).await.unwrap();
    x.create_account(&b.node, &b.password).await.unwrap();
    let r = x.bind(&a, &b).await;
    assert!(
        matches!(&r, Err(XmppError::Unsupported(why)) if why.contains("permission")),
        "{r:?}"
    );
}
