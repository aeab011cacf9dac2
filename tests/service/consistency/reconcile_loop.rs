//! The periodic reconciler as it runs in the service (`src/service/server.rs`'s loop, a 1-second interval):
//! nothing in this test calls the reconciler. What a killed request leaves is written into the
//! database as the crash would leave it (the same records as `reconcile_cmd`); records older than
//! `reconcile.grace_secs` are repaired by the loop alone, records younger than the grace are left
//! to their request (whose own compare-and-set step then still wins), and every run prunes
//! expired captchas and tokens.

use std::time::{Duration, Instant};

use register::store::{AccountState, BindingState, NewAccount};
use register::types::AccountType;

use super::{open_bind_service, subs_both_ways, OpenBind};
use crate::harness::{direct_store, stored_captcha, ProsodyExt};

/// How old a "killed request's" record is made: far beyond the grace.
const OLD: i64 = 7200;

/// Wait until `done` holds of the database, or fail after 30 s (the loop runs every second).
async fn until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "the reconciler loop did not get there: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_repairs_old_records_leaves_young_ones_and_prunes() {
    let OpenBind {
        prosody,
        dir: _dir,
        cfg,
        server,
        client: c,
    } = open_bind_service(|cfg| {
        cfg.reconcile.interval_secs = 1;
        // Records written "now" stay younger than the grace for the whole test.
        cfg.reconcile.grace_secs = 600;
    })
    .await;
    let names = [
        ("rl-a", 1),
        ("rl-b", 2),
        ("rl-c", 2),
        ("rl-d", 2),
        ("rl-e", 1),
        ("rl-y", 2),
    ];
    let info = c.accounts(&names).await;
    let tok_a = c.login("rl-a", 1).await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for peer in ["rl-b", "rl-c"] {
        assert_eq!(
            c.pair("/set_user_banding", &tok_a, "rl-a", false, peer)
                .await,
            Ok(0)
        );
    }
    // The service's own store (its token cache sees every change) and an independent view.
    let store = server.app.store.clone();
    let db = direct_store(&cfg).await;
    let acc = |n: &'static str| {
        let db = db.clone();
        async move { db.account_by_name(n).await.unwrap().unwrap() }
    };
    let (a, b, cc, d, e, y) = (
        acc("rl-a").await,
        acc("rl-b").await,
        acc("rl-c").await,
        acc("rl-d").await,
        acc("rl-e").await,
        acc("rl-y").await,
    );
    let pair = |x: i64, z: i64| (x.min(z), x.max(z));
    let old = server.app.now() - OLD;

    // 1. Old records, as killed requests leave them: a registration whose JID was made but not
    //    activated, one whose JID was never made, a bind bound on the server but not `bound`.
    store
        .set_account_state(e.id, AccountState::Pending, old)
        .await
        .unwrap();
    store
        .insert_pending_account(
            NewAccount {
                user_name: "rl-ghost".into(),
                kind: AccountType::Phone,
                device_type: None,
                des: String::new(),
                password_hash: "x".into(),
                jid_node: "urlghost0000000000".into(),
                jid_pwd: vec![0; 40],
            },
            old,
        )
        .await
        .unwrap();
    let (ab0, ab1) = pair(a.id, b.id);
    store
        .set_binding_state(ab0, ab1, BindingState::Binding, old)
        .await
        .unwrap();
    until("first old records repaired", || {
        let db = db.clone();
        async move {
            let (x, p) = db.unfinished(i64::MAX).await.unwrap();
            x.is_empty() && p.is_empty()
        }
    })
    .await;
    // Every run that can see a record written from here on started after the records above were
    // gone: a periodic run (records older than the grace), not the run at start.

    // 2. Young records (their requests still running), an old cancel, and expired and live
    //    captchas and tokens for the prune.
    let now = server.app.now();
    store
        .set_account_state(y.id, AccountState::Pending, now)
        .await
        .unwrap();
    let (ac0, ac1) = pair(a.id, cc.id);
    store
        .set_binding_state(ac0, ac1, BindingState::Binding, now)
        .await
        .unwrap();
    store
        .insert_captcha("rl-expired".into(), "abcde".into(), old)
        .await
        .unwrap();
    store
        .insert_captcha("rl-live".into(), "abcde".into(), now + 600)
        .await
        .unwrap();
    store
        .insert_token(vec![7; 32], a.id, old, old - 10)
        .await
        .unwrap();
    store
        .insert_token(vec![6; 32], a.id, now + 600, now)
        .await
        .unwrap();
    assert!(store.begin_cancel(d.id, old).await.unwrap());
    until("the old cancel finished", || {
        let db = db.clone();
        async move { db.account_by_name("rl-d").await.unwrap().is_none() }
    })
    .await;
    until("the expired captcha and token pruned", || {
        let (db, cfg) = (db.clone(), cfg.clone());
        async move {
            stored_captcha(&cfg, "rl-expired").await.is_none()
                && db.token_account(vec![7; 32], 0).await.unwrap().is_none()
        }
    })
    .await;
    // The run that finished the cancel saw the young records and left them.
    let (accs, pairs) = db.unfinished(i64::MAX).await.unwrap();
    assert_eq!(
        accs.iter()
            .map(|x| (x.user_name.as_str(), x.state))
            .collect::<Vec<_>>(),
        vec![("rl-y", AccountState::Pending)],
        "the young registration is left to its request"
    );
    assert_eq!(
        pairs
            .iter()
            .map(|p| (p.a, p.b, p.state))
            .collect::<Vec<_>>(),
        vec![(ac0, ac1, BindingState::Binding)],
        "the young bind is left to its request"
    );
    // The prune kept what is live.
    assert!(stored_captcha(&cfg, "rl-live").await.is_some());
    assert!(db.token_account(vec![6; 32], 0).await.unwrap().is_some());
    // The young records' requests finish: their final compare-and-set steps still win.
    assert!(store
        .transition_account(y.id, AccountState::Pending, AccountState::Active, now)
        .await
        .unwrap());
    assert!(store
        .transition_binding(ac0, ac1, BindingState::Binding, BindingState::Bound, now)
        .await
        .unwrap());

    // What the loop did, seen from outside: the orphan JID and the cancelled account's JID are
    // gone from Prosody, the rows are gone, the rolled-back pair is on neither roster, the pair
    // whose bind was left to its request is still mutual, the other accounts still log in.
    assert!(!prosody.account_on_disk(&e.jid_node));
    assert!(!prosody.account_on_disk(&d.jid_node));
    for n in ["rl-d", "rl-e", "rl-ghost"] {
        assert!(db.account_by_name(n).await.unwrap().is_none(), "{n}");
    }
    let (_, ja, pa) = &info["rl-a"];
    let (_, jb, pb) = &info["rl-b"];
    let (_, jc, pc) = &info["rl-c"];
    let ab = subs_both_ways(&prosody, (ja, pa), (jb, pb)).await;
    assert_eq!(ab, [None, None]);
    let both = Some("both".to_owned());
    let ac = subs_both_ways(&prosody, (ja, pa), (jc, pc)).await;
    assert_eq!(ac, [both.clone(), both]);
    assert_eq!(
        db.binding(ac0, ac1).await.unwrap().map(|b| b.state),
        Some(BindingState::Bound)
    );
    assert!(db.binding(ab0, ab1).await.unwrap().is_none());
    for n in ["rl-a", "rl-b", "rl-c", "rl-y"] {
        let (_, j, p) = &info[n];
        assert!(prosody.can_login(j, p).await, "{n}");
    }
    let (x, p) = db.unfinished(i64::MAX).await.unwrap();
    assert!(x.is_empty() && p.is_empty());
    let repaired = server
        .app
        .metrics
        .render(Default::default())
        .lines()
        .find_map(|l| l.strip_prefix("register_reconciler_repairs_total "))
        .map(|n| n.trim().parse::<u64>().unwrap());
    assert_eq!(repaired, Some(4), "e, ghost, a-b, d: four repairs");
    println!(
        "loop_repairs_old_records_leaves_young_ones_and_prunes: the loop repaired 4 old records \
         (orphan JID, ghost registration, bind, cancel), left 2 young ones to their requests, \
         pruned the expired captcha and token"
    );
    server.stop().await.unwrap();
}
