//! The component link down: the service stays up on the database, XMPP operations fail fast with
//! their documented codes, /readyz says not ready, the link comes back by itself, and the
//! periodic reconciler — not the test — repairs what the outage left as soon as the link is back.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use xmpp::testkit::{Prosody, ProsodyOptions};

use super::{owned, verify_token, wait_link, Client, PASSWORD};
use crate::harness::{signed, test_config, Opts, ProsodyExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_down_degrades_and_recovers() {
    let mut prosody = Prosody::start(ProsodyOptions::default());
    let data = tempfile::tempdir().unwrap();
    let mut cfg = test_config(&prosody, data.path().join("data"), Opts::default()).await;
    // The loop's timer never fires within the test: only the link coming back can start the run
    // that repairs the outage's records. No grace: every record older than the run is taken.
    cfg.reconcile.interval_secs = 3600;
    cfg.reconcile.grace_secs = 0;
    // These tests bind by name: the open bind of old clients (bind tokens: bind_tokens.rs).
    cfg.binding.consent = "none".into();
    let timeout = Duration::from_millis(cfg.xmpp.timeout_ms);
    let server = crate::harness::start_service(cfg).await;
    let c = Client::new(&server.app.cfg.data_dir, server.addrs.http.port());
    let readyz = format!("http://{}/readyz", server.addrs.admin);
    assert_eq!(reqwest::get(&readyz).await.unwrap().status(), 200);
    for (n, k) in [("ld-p", 1), ("ld-d", 2), ("ld-c", 2)] {
        assert_eq!(c.register(n, k).await, Ok(0));
    }
    let old = c.login("ld-p", 1).await.unwrap();
    let old_token = old["access_token"].as_str().unwrap().to_owned();
    let (jp, pp) = (
        old["user_info"]["jid"].as_str().unwrap().to_owned(),
        old["user_info"]["jid_pwd"].as_str().unwrap().to_owned(),
    );
    // ld-c is bound to ld-p, and will be cancelled while the server is away.
    let lc = c.login("ld-c", 2).await.unwrap();
    let c_token = lc["access_token"].as_str().unwrap().to_owned();
    let jc = lc["user_info"]["jid"].as_str().unwrap().to_owned();
    let c_node = jc.split('@').next().unwrap().to_owned();
    assert_eq!(
        c.pair("/set_user_banding", &old_token, "ld-p", false, "ld-c")
            .await,
        Ok(0)
    );

    prosody = super::stopped(prosody).await;
    wait_link(&server, false, 20).await;
    let down = Instant::now();

    // Not ready, but alive.
    let r = reqwest::get(&readyz).await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["xmpp_link"], false);
    assert_eq!(body["database"], true);
    // Login, tokens and get_users work from the database.
    let t = Instant::now();
    let v = c.login("ld-p", 1).await.unwrap();
    assert_eq!(v["result"], 0, "{v}");
    let login_ms = t.elapsed().as_millis();
    let v = verify_token(server.addrs.tcp, &old_token).await;
    assert_eq!(
        (v["result"].clone(), v["validate"].clone()),
        (json!(0), json!(true))
    );
    let v = c
        .post(
            "/get_users",
            &owned(&[
                ("access_token", &old_token),
                // (ld-c: over HTTPS a caller sees only itself and its bound accounts.)
                ("user_name_ls", r#"["ld-p","ld-c"]"#),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(v["result"], 0, "{v}");
    assert_eq!(v["user_info_ls"].as_array().unwrap().len(), 2);
    // What needs the XMPP server fails fast, and nothing is written for a registration.
    let t = Instant::now();
    let reg_r = c.register("ld-new", 2).await.unwrap();
    let register_ms = t.elapsed().as_millis();
    assert_eq!(reg_r, 101, "register while down (docs/API.md: 101 at once)");
    assert!(t.elapsed() < timeout / 2, "register took {register_ms} ms");
    assert!(server
        .app
        .store
        .account_by_name("ld-new")
        .await
        .unwrap()
        .is_none());
    let t = Instant::now();
    let bind_r = c
        .pair("/set_user_banding", &old_token, "ld-p", false, "ld-d")
        .await
        .unwrap();
    let bind_ms = t.elapsed().as_millis();
    assert_eq!(bind_r, 107, "bind while down (docs/API.md: binds 107)");
    assert!(t.elapsed() < timeout, "bind took {bind_ms} ms");
    // A cancel is accepted (the account is unusable at once) but cannot unbind its peer: the
    // reply says so, and the record stays for the reconciler.
    let t = Instant::now();
    let v = c
        .post(
            "/cancel",
            &signed(
                "/cancel",
                &[("user_name", "ld-c"), ("password", PASSWORD), ("type", "2")],
            ),
        )
        .await
        .unwrap();
    let cancel_ms = t.elapsed().as_millis();
    let cancel_r = v["result"].as_i64().unwrap();
    assert_eq!(
        cancel_r, 107,
        "cancel while down carries the unbind's error (the peer's session cannot be made)"
    );
    assert!(t.elapsed() < timeout, "cancel took {cancel_ms} ms");
    assert_eq!(verify_token(server.addrs.tcp, &c_token).await["result"], 4);
    assert_eq!(c.login("ld-c", 2).await.unwrap()["result"], 102);
    assert_eq!(
        c.register("ld-c", 2).await,
        Ok(103),
        "the name stays reserved"
    );

    // Both records (the bind's, the cancel's) were written at or before `written`; the run the
    // link's return starts takes records older than its own second, so let the clock pass it.
    let written = server.app.now();
    while server.app.now() <= written {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (accs, pairs) = server.app.store.unfinished(i64::MAX).await.unwrap();
    let mut states: Vec<&str> = pairs.iter().map(|p| p.state.as_str()).collect();
    states.sort();
    assert_eq!(
        (accs.len(), states),
        (1, vec!["binding", "unbinding"]),
        "left for the reconciler: the cancelled account, its pair with ld-p (unbinding), the \
         failed bind's pair"
    );
    let repairs = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("register_reconciler_repairs_total "))
            .map(|n| n.trim().parse().unwrap())
            .unwrap_or(0)
    };
    let metrics = format!("http://{}/metrics", server.addrs.admin);
    let repaired_before = repairs(&reqwest::get(&metrics).await.unwrap().text().await.unwrap());
    let prosody = tokio::task::spawn_blocking(move || {
        prosody.restart();
        prosody
    })
    .await
    .unwrap();
    // Ready again by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(&readyz).await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "/readyz did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back_after = down.elapsed();
    // The failed bind and the cancel left their records; the loop's run on the link's return
    // rolls the bind back and finishes the cancel (unbinds the peer, deletes the JID and the
    // account) — nothing here calls the reconciler.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (a, b) = server.app.store.unfinished(i64::MAX).await.unwrap();
        if a.is_empty() && b.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reconciler loop left {a:?} {b:?} after the link came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let repaired =
        repairs(&reqwest::get(&metrics).await.unwrap().text().await.unwrap()) - repaired_before;
    assert_eq!(
        repaired, 3,
        "the loop rolled the bind back, finished the unbind and the cancel"
    );
    let repaired_after = back_after.as_secs_f64();
    assert!(!prosody.account_on_disk(&c_node));
    assert!(server
        .app
        .store
        .account_by_name("ld-c")
        .await
        .unwrap()
        .is_none());
    assert!(
        prosody.roster(&jp, &pp).await.iter().all(|i| i.jid != jc),
        "ld-p keeps the cancelled ld-c"
    );
    assert_eq!(c.register("ld-new", 2).await, Ok(0));
    println!(
        "link_down_degrades_and_recovers: while down: login {login_ms} ms (0), token verified, get_users 0, \
         register {register_ms} ms ({reg_r}), bind {bind_ms} ms ({bind_r}), cancel {cancel_ms} ms ({cancel_r}), /readyz 503; ready again {:.1}s \
         after the outage began; the loop repaired {repaired} records ({repaired_after:.1}s)",
        back_after.as_secs_f64()
    );
    server.stop().await.unwrap();
}
