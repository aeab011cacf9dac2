//! Races: one name registered twice at once, one pair bound (and unbound) twice at once; and
//! the reconciler racing live requests.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{check_consistent, join, open_bind_service, sorted, subs_both_ways, OpenBind, Stream};

// ---------------------------------------------------------------------------------------------
// One name registered twice at once, one pair bound (and unbound) twice at once.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_same_name_and_same_pair() {
    let OpenBind {
        prosody,
        dir: _dir,
        server,
        client: c,
        ..
    } = open_bind_service(|_| {}).await;
    let rounds = 4;
    let mut tally: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for i in 0..rounds {
        // Same name, twice at once: two devices, then two phones (captchas fetched first, so
        // both requests leave together).
        let name = format!("race-{i}");
        let (kind, ids) = if i % 2 == 0 {
            (2, (None, None))
        } else {
            (
                1,
                (
                    Some(c.captcha().await.unwrap()),
                    Some(c.captcha().await.unwrap()),
                ),
            )
        };
        let (x, y) = tokio::join!(
            c.register_with(&name, kind, ids.0),
            c.register_with(&name, kind, ids.1)
        );
        let mut r = vec![x.unwrap(), y.unwrap()];
        r.sort();
        assert_eq!(r, vec![0, 103], "register {name}");
        tally.entry("register").or_default().extend(&r);
        // Exactly one account, with one JID that logs in.
        crate::harness::active_account(&server, &prosody, &name).await;

        // A fresh pair; bound twice at once — the same caller twice, then each side at once.
        let (p, d) = (format!("rp-{i}"), format!("rd-{i}"));
        assert_eq!(c.register(&p, 1).await, Ok(0));
        assert_eq!(c.register(&d, 2).await, Ok(0));
        let lp = c.login(&p, 1).await.unwrap();
        let ld = c.login(&d, 2).await.unwrap();
        let tp = lp["access_token"].as_str().unwrap();
        let td = ld["access_token"].as_str().unwrap();
        let (x, y) = if i % 2 == 0 {
            tokio::join!(
                c.pair("/set_user_banding", tp, &p, false, &d),
                c.pair("/set_user_banding", tp, &p, false, &d)
            )
        } else {
            tokio::join!(
                c.pair("/set_user_banding", tp, &p, false, &d),
                c.pair("/set_user_banding", td, &d, true, &p)
            )
        };
        let r = sorted(x, y);
        assert_eq!(r, vec![0, 109], "bind {p}-{d}");
        tally.entry("bind").or_default().extend(&r);
        let (jp, pp) = (
            lp["user_info"]["jid"].as_str().unwrap(),
            lp["user_info"]["jid_pwd"].as_str().unwrap(),
        );
        let (jd, pd) = (
            ld["user_info"]["jid"].as_str().unwrap(),
            ld["user_info"]["jid_pwd"].as_str().unwrap(),
        );
        let both = Some("both".to_owned());
        let subs = subs_both_ways(&prosody, (jp, pp), (jd, pd)).await;
        assert_eq!(subs, [both.clone(), both]);

        // Unbound twice at once: one 0, one 110, neither roster keeps the other.
        let (x, y) = tokio::join!(
            c.pair("/set_user_unbanding", tp, &p, false, &d),
            c.pair("/set_user_unbanding", td, &d, true, &p)
        );
        let r = sorted(x, y);
        assert_eq!(r, vec![0, 110], "unbind {p}-{d}");
        tally.entry("unbind").or_default().extend(&r);
        let subs = subs_both_ways(&prosody, (jp, pp), (jd, pd)).await;
        assert_eq!(subs, [None, None]);
    }
    let (a, b) = server.app.store.unfinished(i64::MAX).await.unwrap();
    assert!(a.is_empty() && b.is_empty());
    for (what, codes) in &tally {
        let wins = codes.iter().filter(|c| **c == 0).count();
        println!(
            "concurrent_same_name_and_same_pair: {what}: {} requests in {} races; {} won (0), {} lost ({:?})",
            codes.len(),
            rounds,
            wins,
            codes.len() - wins,
            codes.iter().filter(|c| **c != 0).collect::<Vec<_>>()
        );
    }
    server.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// The reconciler taking every record while requests are in flight (as the run at start and
// `register reconcile` do): its claims and the requests' last steps are compare-and-set, so a
// request either finishes (and the record is skipped) or is undone and not answered 0.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciler_racing_live_requests() {
    let OpenBind {
        prosody,
        dir: _dir,
        server,
        client,
        ..
    } = open_bind_service(|_| {}).await;
    let stream = Stream::new(client.clone());
    let tasks = stream.spawn("rr", 4, 3);
    let app = server.app.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut total = register::lifecycle::reconcile::Report::default();
            let mut runs = 0;
            while !stop.load(Ordering::SeqCst) {
                let r = register::lifecycle::reconcile::run(&app, app.now() + 1, &mut |_, _| {})
                    .await
                    .unwrap();
                runs += 1;
                total.found += r.found;
                total.repaired += r.repaired;
                total.skipped += r.skipped;
                total.failed += r.failed;
                total.pending_removed += r.pending_removed;
                total.orphan_jids_deleted += r.orphan_jids_deleted;
                total.binds_rolled_back += r.binds_rolled_back;
                total.unbinds_finished += r.unbinds_finished;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            (runs, total)
        })
    };
    join(tasks).await;
    stop.store(true, Ordering::SeqCst);
    let (runs, total) = racer.await.unwrap();
    let last =
        register::lifecycle::reconcile::run(&server.app, server.app.now() + 1, &mut |_, _| {})
            .await
            .unwrap();
    assert_eq!(last.failed, 0, "{last:?}");
    let res = std::mem::take(&mut *stream.results.lock().unwrap());
    let found = check_consistent(&prosody, server.app.store.as_ref(), &client, &res).await;
    let (regs_acked, binds_acked) = res.acked();
    println!(
        "reconciler_racing_live_requests: {} requests; acknowledged {} registrations + {} binds; \
         refused {:?}; {runs} reconciler runs alongside: {total:?}; last run {last:?}",
        res.sent, regs_acked, binds_acked, res.errors
    );
    println!("  found intact: {found:?}");
    // The reconciler met records whose requests were in flight (it takes every record, as the
    // run at start does), and each meeting ended one documented way: the request finished first
    // (skipped), or the reconciler claimed the record and the request failed — 101 for a
    // registration it undid, 107 for a bind it rolled back (docs/API.md). No other failure.
    assert!(
        total.found > 0,
        "the reconciler never met an in-flight record: {total:?}"
    );
    assert_eq!(
        total.found,
        total.skipped + total.repaired + total.failed,
        "{total:?}"
    );
    // Every request whose record the reconciler undid failed: a registration with 101, a bind
    // with 107. A record it could not finish in one run (e.g. while its
    // request still held the XMPP session) is finished by a later run, where a claimed bind
    // counts as an unbind; so the failed requests lie between the clean repairs and those plus
    // the retried ones — and no request failed for any other reason.
    let failed_requests: u64 = res.errors.values().sum();
    let undone = total.pending_removed + total.binds_rolled_back;
    let retried = total.unbinds_finished + total.failed + last.repaired;
    assert!(
        (undone..=undone + retried).contains(&failed_requests),
        "{failed_requests} failed requests for {undone} records undone (+{retried} retried): \
         {:?} {total:?} {last:?}",
        res.errors
    );
    assert!(
        res.errors.keys().all(|c| [101, 107].contains(c)),
        "refused with other codes: {:?}",
        res.errors
    );
    assert_eq!(res.no_reply, 0);
    assert_eq!(found.accounts_intact as usize, regs_acked);
    assert_eq!(found.pairs_intact as usize, binds_acked);
    assert_eq!(found.pairs_bound_unacked, 0);
    server.stop().await.unwrap();
}
