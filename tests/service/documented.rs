//! Behaviours docs/API.md, docs/CONFIG.md and SECURITY.md promise that no other test exercised
//! (issue 16), each end to end against a real Prosody and checked from outside where it can be:
//! Wechat accounts, the checks done before a bind changes anything, a partial bind, codes 3 and
//! 105–107, concurrent cancels, a cancel revoking every token, a random captcha answered from the
//! database, captcha and token expiry, the `timestamp` window, the per-IP rate limits and a
//! trusted proxy's `X-Forwarded-For` over plain HTTP, and the XMPP TLS settings.
//!
//! Time-dependent rules wait on the service's own clock (whole seconds) until the outcome is
//! certain, never on a sleep; a rate-limit burst that straddles a minute window is run again
//! (the window is the clock's minute), so no assertion depends on the machine's speed.

use std::path::PathBuf;
use std::time::Duration;

use register::service::server::Server;
use serde_json::{json, Value};
use xmpp::testkit::{Prosody, ProsodyOptions, TestClient};

use register::store::BindingState;

use crate::harness::roster_item as item;
use crate::harness::{
    assert_signed, bound_item, issued_answer, items_both_ways, signed, test_config, Env, Opts,
    ProsodyExt, CAPTCHA,
};

const PW: &str = "password1";

/// The stored state of the pair of accounts `a` and `b` (ids); `None`: no row.
async fn pair_state(env: &Env, a: i64, b: i64) -> Option<BindingState> {
    let store = &env.server().app.store;
    let row = store.binding(a.min(b), a.max(b)).await.unwrap();
    row.map(|r| r.state)
}

fn pairs(p: &[(String, String)]) -> Vec<(&str, &str)> {
    p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

/// `/verify_access_token` over the TCP API.
async fn tcp_verify(env: &Env, token: &str) -> Value {
    crate::harness::tcp_verify_signed(env.server().addrs.tcp, token).await
}

async fn bind(env: &Env, token: &str, me: &str, peers: &str) -> Value {
    env.post(
        "/set_user_banding",
        &[
            ("access_token", token),
            ("user_name", me),
            ("user_name_ls", peers),
        ],
    )
    .await
}

async fn cancel_device(env: &Env, name: &str) -> Value {
    let p = signed(
        "/cancel",
        &[("user_name", name), ("password", PW), ("type", "2")],
    );
    env.post("/cancel", &pairs(&p)).await
}

/// Wait until the service's clock reads at least `t` (whole seconds).
async fn clock_reaches(env: &Env, t: i64) {
    while env.server().app.now() < t {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Prosody's file for account `node`.
fn prosody_account_file(p: &Prosody, node: &str) -> PathBuf {
    p.account_file(node)
}

/// Run one SQL statement on the service's database, behind its back (SQLite or PostgreSQL).
async fn exec_sql(env: &Env, sqlite: &str, pg: &str) {
    let cfg = &env.server().app.cfg;
    if cfg.database.is_postgres() {
        let (c, conn) = tokio_postgres::connect(&cfg.database.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c.batch_execute(pg).await.unwrap();
    } else {
        let db = rusqlite::Connection::open(cfg.data_dir.join("register.db")).unwrap();
        db.busy_timeout(Duration::from_secs(10)).unwrap();
        db.execute_batch(sqlite).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wechat_account_registers_logs_in_and_binds_a_device_in_group_wechat() {
    let env = Env::start_tuned(Opts::default(), open_bind).await;
    let (tok_w, jid_w, pwd_w) = env.account("wx-openid-1", 3).await;
    let (_, jid_d, pwd_d) = env.account("wx-cam", 2).await;
    env.account("wx-phone", 1).await;
    // Its JID is real, the replies say type 3, a wrong type is refused like a wrong password.
    assert!(env.prosody.can_login(&jid_w, &pwd_w).await);
    let v = env.login("wx-openid-1", PW, 3).await;
    assert_eq!(v["user_info"]["type"], 3, "{v}");
    assert_eq!(env.login("wx-openid-1", PW, 1).await["result"], 102);
    let v = env
        .post(
            "/get_users",
            &[
                ("access_token", &tok_w),
                ("user_name_ls", r#"["wx-openid-1"]"#),
            ],
        )
        .await;
    assert_eq!(v["result"], 0, "{v}");
    assert_eq!(v["user_info_ls"][0]["type"], 3, "{v}");
    // Wechat pairs with devices only.
    assert_eq!(
        bind(&env, &tok_w, "wx-openid-1", r#"["wx-phone"]"#).await["result"],
        100
    );
    let v = bind(&env, &tok_w, "wx-openid-1", r#"["wx-cam"]"#).await;
    assert_eq!(v["result"], 0, "{v}");
    assert_eq!(
        items_both_ways(&env.prosody, (&jid_w, &pwd_w), (&jid_d, &pwd_d)).await,
        [
            bound_item("wx-cam", "Device"),
            bound_item("wx-openid-1", "Wechat")
        ]
    );
    let v = env
        .post(
            "/get_user_banding",
            &[("access_token", &tok_w), ("user_name", "wx-openid-1")],
        )
        .await;
    assert_eq!(v["roster_item"][0]["user_name"], "wx-cam", "{v}");
    assert_eq!(v["roster_item"][0]["type"], 2, "{v}");
    let v = env
        .post(
            "/set_user_unbanding",
            &[
                ("access_token", &tok_w),
                ("user_name", "wx-openid-1"),
                ("user_name_ls", r#"["wx-cam"]"#),
            ],
        )
        .await;
    assert_eq!(v["result"], 0, "{v}");
    assert_eq!(item(&env, &jid_w, &pwd_w, &jid_d).await, None);
    assert_eq!(item(&env, &jid_d, &pwd_d, &jid_w).await, None);
}

#[tokio::test]
async fn bind_checks_every_name_before_anything_changes() {
    let env = Env::start_tuned(Opts::default(), open_bind).await;
    let (tok, jid_p, pwd_p) = env.account("ck-p", 1).await;
    let (_, jid_1, pwd_1) = env.account("ck-d1", 2).await;
    let (_, jid_2, pwd_2) = env.account("ck-d2", 2).await;
    env.account("ck-p2", 1).await;
    let jids = [
        (jid_p.as_str(), pwd_p.as_str()),
        (jid_1.as_str(), pwd_1.as_str()),
        (jid_2.as_str(), pwd_2.as_str()),
    ];
    // One unknown name among good ones: 104, and the good ones are not bound either.
    let v = bind(&env, &tok, "ck-p", r#"["ck-d1","ck-ghost","ck-d2"]"#).await;
    assert_eq!(v["result"], 104, "{v}");
    nothing_changed(&env, &jids).await;
    // One name of a type that may not pair (phone with phone) after a good one: 100.
    let v = bind(&env, &tok, "ck-p", r#"["ck-d1","ck-p2"]"#).await;
    assert_eq!(v["result"], 100, "{v}");
    nothing_changed(&env, &jids).await;
    // One already bound after a new one: 109, and the new one is not bound.
    assert_eq!(bind(&env, &tok, "ck-p", r#"["ck-d1"]"#).await["result"], 0);
    let v = bind(&env, &tok, "ck-p", r#"["ck-d2","ck-d1"]"#).await;
    assert_eq!(v["result"], 109, "{v}");
    assert!(env.prosody.roster(&jid_2, &pwd_2).await.is_empty());
    assert_eq!(
        item(&env, &jid_p, &pwd_p, &jid_2).await,
        None,
        "ck-d2 was bound although ck-d1 was already"
    );
}

/// No roster holds anything, and ck-p has no pair row.
async fn nothing_changed(env: &Env, jids: &[(&str, &str)]) {
    for (jid, pwd) in jids {
        assert!(env.prosody.roster(jid, pwd).await.is_empty(), "{jid}");
    }
    let store = &env.server().app.store;
    let p = store.account_by_name("ck-p").await.unwrap().unwrap();
    assert!(store.bindings_of(p.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn partial_bind_names_failed_ls_binds_the_rest_and_answers_105_106() {
    // No token cache: the test changes accounts behind the service's back.
    let env = Env::start_tuned(Opts::default(), |c| {
        open_bind(c);
        c.database.token_cache_entries = 0;
    })
    .await;
    let (tok, jid_p, pwd_p) = env.account("pb-p", 1).await;
    let (_, jid_ok, pwd_ok) = env.account("pb-ok", 2).await;
    env.account("pb-nojid", 2).await;
    let (_, jid_gone, _) = env.account("pb-gone", 2).await;
    // pb-nojid's sealed jid_pwd no longer opens (the account has no usable JID: 106).
    exec_sql(
        &env,
        "UPDATE accounts SET jid_pwd = zeroblob(40) WHERE user_name = 'pb-nojid'",
        "UPDATE accounts SET jid_pwd = decode(repeat('00', 40), 'hex') WHERE user_name = 'pb-nojid'",
    )
    .await;
    // pb-gone's JID was removed from the XMPP server behind the service's back (its stored JID
    // is refused: 105).
    let node = jid_gone.split('@').next().unwrap();
    std::fs::remove_file(prosody_account_file(&env.prosody, node)).unwrap();

    let v = bind(&env, &tok, "pb-p", r#"["pb-gone"]"#).await;
    assert_eq!(
        (v["result"].clone(), v["failed_ls"].clone()),
        (json!(105), json!(["pb-gone"])),
        "{v}"
    );
    let v = bind(&env, &tok, "pb-p", r#"["pb-ok","pb-nojid"]"#).await;
    assert_eq!(
        (v["result"].clone(), v["failed_ls"].clone()),
        (json!(106), json!(["pb-nojid"])),
        "the first failure's code and the failed names: {v}"
    );
    // The other pair is bound on both rosters and in the database.
    assert_both(&env, (&jid_p, &pwd_p), &jid_ok).await;
    assert_both(&env, (&jid_ok, &pwd_ok), &jid_p).await;
    let store = &env.server().app.store;
    let id = |n: &'static str| {
        let store = store.clone();
        async move { store.account_by_name(n).await.unwrap().unwrap().id }
    };
    let (p, ok, nojid) = (id("pb-p").await, id("pb-ok").await, id("pb-nojid").await);
    assert_eq!(pair_state(&env, p, ok).await, Some(BindingState::Bound));
    assert_eq!(pair_state(&env, p, nojid).await, None);
}

#[tokio::test]
async fn pair_already_mutual_through_the_users_own_clients_is_recorded_bound() {
    let env = Env::start_tuned(Opts::default(), open_bind).await;
    let (tok, jid_p, pwd_p) = env.account("am-p", 1).await;
    let (_, jid_d, pwd_d) = env.account("am-d", 2).await;
    // The two users make each other mutual contacts with their own XMPP clients (the testkit's),
    // the subscription handshake both ways, repeated until both rosters say `both`.
    let node = |j: &str| j.split('@').next().unwrap().to_owned();
    let mut cp = xmpp::testkit::TestClient::login(&env.prosody, &node(&jid_p), &pwd_p)
        .await
        .unwrap();
    let mut cd = xmpp::testkit::TestClient::login(&env.prosody, &node(&jid_d), &pwd_d)
        .await
        .unwrap();
    let presence = |to: &str, kind: &str| -> minidom::Element {
        format!("<presence xmlns='jabber:client' to='{to}' type='{kind}'/>")
            .parse()
            .unwrap()
    };
    let sub = |r: Vec<xmpp::RosterEntry>, peer: &str| {
        r.into_iter()
            .find(|e| e.jid == peer)
            .map(|e| e.subscription)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        cp.send_element(&presence(&jid_d, "subscribe"))
            .await
            .unwrap();
        cd.send_element(&presence(&jid_p, "subscribed"))
            .await
            .unwrap();
        cd.send_element(&presence(&jid_p, "subscribe"))
            .await
            .unwrap();
        cp.send_element(&presence(&jid_d, "subscribed"))
            .await
            .unwrap();
        let on_p = sub(cp.roster().await.unwrap(), &jid_d);
        let on_d = sub(cd.roster().await.unwrap(), &jid_p);
        if on_p.as_deref() == Some("both") && on_d.as_deref() == Some("both") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the clients' own handshake did not make them mutual: {on_p:?} {on_d:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cp.close().await;
    cd.close().await;
    // The service records the pair as bound and answers 0.
    let v = bind(&env, &tok, "am-p", r#"["am-d"]"#).await;
    assert_eq!(v["result"], 0, "{v}");
    let store = &env.server().app.store;
    let p = store.account_by_name("am-p").await.unwrap().unwrap().id;
    let d = store.account_by_name("am-d").await.unwrap().unwrap().id;
    assert_eq!(pair_state(&env, p, d).await, Some(BindingState::Bound));
    assert_both(&env, (&jid_p, &pwd_p), &jid_d).await;
    assert_eq!(bind(&env, &tok, "am-p", r#"["am-d"]"#).await["result"], 109);
}

#[tokio::test]
async fn two_concurrent_cancels_give_0_and_102_and_every_token_is_revoked() {
    let env = Env::start(Opts::default()).await;
    let (t1, jid, pwd) = env.account("cc-dev", 2).await;
    let mut tokens = vec![t1];
    for _ in 0..2 {
        let v = env.login("cc-dev", PW, 2).await;
        tokens.push(v["access_token"].as_str().unwrap().to_owned());
    }
    for t in &tokens {
        assert_eq!(tcp_verify(&env, t).await["validate"], true);
    }
    let (x, y) = tokio::join!(cancel_device(&env, "cc-dev"), cancel_device(&env, "cc-dev"));
    let mut r = vec![x["result"].as_i64().unwrap(), y["result"].as_i64().unwrap()];
    r.sort();
    assert_eq!(
        r,
        vec![0, 102],
        "of two concurrent cancels, the second gets 102"
    );
    // Every token of the account is revoked, not only the last one.
    for t in &tokens {
        let v = tcp_verify(&env, t).await;
        assert_eq!(
            (v["result"].clone(), v["validate"].clone()),
            (json!(4), json!(false))
        );
    }
    assert!(!env.prosody.can_login(&jid, &pwd).await);
    assert_eq!(
        env.register("cc-dev", PW, 2).await,
        0,
        "the name is free again"
    );
}

#[tokio::test]
async fn random_captcha_answered_from_the_database_and_captcha_expiry() {
    // No fixed answer: every challenge is random.
    let env = Env::start_tuned(Opts::default(), |c| {
        c.captcha.fixed_answer = String::new();
        c.captcha.ttl_secs = 4;
    })
    .await;
    let reg = |answer: &str, name: &str| {
        vec![
            ("user_name".to_owned(), name.to_owned()),
            ("password".to_owned(), PW.to_owned()),
            ("type".to_owned(), "1".to_owned()),
            ("verify_code".to_owned(), answer.to_owned()),
        ]
    };
    let cfg = env.server().app.cfg.clone();
    // A wrong answer fails (an answer from outside the captcha alphabet can never be right).
    env.captcha().await;
    assert_eq!(
        env.post("/register", &pairs(&reg("zzzzz", "rc-1"))).await["result"],
        5
    );
    // The issued answer, read where the service keeps it, succeeds.
    let id = env.captcha().await;
    let answer = issued_answer(&cfg, &id).await;
    assert_eq!(answer.len(), cfg.captcha.length);
    assert_ne!(answer, CAPTCHA);
    assert_eq!(
        env.post("/register", &pairs(&reg(&answer, "rc-1"))).await["result"],
        0
    );
    // An expired challenge fails with its right answer: wait until the clock is past its
    // expiry (issued no later than `issued`, good for 4 s).
    let id = env.captcha().await;
    let issued = env.server().app.now();
    let answer = issued_answer(&cfg, &id).await;
    clock_reaches(&env, issued + 4).await;
    assert_eq!(
        env.post("/register", &pairs(&reg(&answer, "rc-2"))).await["result"],
        5,
        "an expired captcha is refused"
    );
}

#[tokio::test]
async fn token_expires_end_to_end() {
    let env = Env::start_tuned(Opts::default(), |c| c.security.token_ttl_secs = 3).await;
    let (token, _, _) = env.account("te-dev", 2).await;
    // Valid at first (issued 3 s ahead of its expiry)...
    let v = tcp_verify(&env, &token).await;
    assert_eq!(v["validate"], true, "{v}");
    let expires_at = v["expires_at"].as_i64().unwrap();
    assert!(expires_at <= env.server().app.now() + 3);
    // (A device signs its token requests.)
    let p = signed(
        "/get_users",
        &[("access_token", &token), ("user_name_ls", r#"["te-dev"]"#)],
    );
    let p = pairs(&p);
    assert_eq!(env.post("/get_users", &p).await["result"], 0);
    // ...refused everywhere once the clock reaches `expires_at`.
    clock_reaches(&env, expires_at).await;
    let v = tcp_verify(&env, &token).await;
    assert_eq!(
        (v["result"].clone(), v["validate"].clone()),
        (json!(4), json!(false))
    );
    assert_eq!(env.post("/get_users", &p).await["result"], 4);
}

#[tokio::test]
async fn param_sign_timestamp_outside_the_window_is_refused_either_way() {
    let env = Env::start(Opts::default()).await;
    env.account("ts-dev", 2).await;
    let window = env.server().app.cfg.security.timestamp_window_secs as i64;
    let login_at = |offset: i64| {
        let env = &env;
        async move {
            let ts = (env.server().app.now() + offset).to_string();
            let p = signed(
                "/login",
                &[
                    ("user_name", "ts-dev"),
                    ("password", PW),
                    ("type", "2"),
                    ("timestamp", &ts),
                ],
            );
            env.post("/login", &pairs(&p)).await["result"].clone()
        }
    };
    // Far enough outside (a minute) that the clock's progress cannot bring it in.
    assert_eq!(login_at(window + 60).await, 6, "future timestamp");
    assert_eq!(login_at(-window - 60).await, 6, "past timestamp");
    assert_eq!(login_at(60).await, 0, "a little ahead, within the window");
    assert_eq!(login_at(0).await, 0);
}

/// Plain HTTP (`http.tls = false`) behind a trusted proxy (127.0.0.1): the proxy's
/// `X-Forwarded-For` decides the client IP, so each forwarded client has its own budget on every
/// rate-limited endpoint (`/verify_code`, `/login`, `/register`, `/cancel`).
#[tokio::test]
async fn plain_http_behind_a_trusted_proxy_rate_limits_each_forwarded_client() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let data = tempfile::tempdir().unwrap();
    let mut cfg = test_config(&prosody, data.path().join("data"), Opts::default()).await;
    cfg.http.tls = false;
    cfg.http.trusted_proxies = vec!["127.0.0.1/32".into()];
    cfg.security.rate_per_minute = 2;
    let server = Server::start(cfg).await.expect("service starts");
    assert!(
        !server.app.cfg.data_dir.join("cert.pem").exists(),
        "no certificate is made for plain HTTP"
    );
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", server.addrs.http.port());
    let send = |path: &'static str, ip: String| {
        let (http, base) = (&http, &base);
        async move {
            let r = http
                .post(format!("{base}{path}"))
                .header("x-forwarded-for", ip)
                .form(&[("user_name", "nobody"), ("password", PW), ("type", "2")])
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body = if path == "/verify_code" && status == 200 {
                Value::Null
            } else {
                let v: Value = r.json().await.unwrap();
                assert_signed(&v);
                v["result"].clone()
            };
            (status, body)
        }
    };
    let mut proven = false;
    for attempt in 0..3 {
        let window = server.app.now() / 60;
        let mut seen = Vec::new();
        for (i, path) in ["/verify_code", "/login", "/register", "/cancel"]
            .into_iter()
            .enumerate()
        {
            let ip = format!("198.51.{attempt}.{}", i + 1);
            for _ in 0..3 {
                seen.push((path, send(path, ip.clone()).await));
            }
        }
        // A client the proxy forwards for the first time still gets through.
        let fresh = send("/login", format!("198.51.{attempt}.99")).await;
        if server.app.now() / 60 != window {
            continue; // the burst straddled two windows: run it again
        }
        for (k, (path, (status, result))) in seen.iter().enumerate() {
            if k % 3 < 2 {
                assert_eq!(*status, 200, "{path} within the budget");
            } else {
                assert_eq!(
                    (*status, result.clone()),
                    (429, json!(112)),
                    "{path} over the budget"
                );
            }
        }
        assert_eq!(fresh.0, 200, "another forwarded client has its own budget");
        proven = true;
        break;
    }
    assert!(proven, "three bursts in a row straddled a minute");
    server.stop().await.unwrap();
    drop(prosody);
}

#[tokio::test]
async fn database_error_answers_3() {
    let env = Env::start(Opts::default()).await;
    exec_sql(&env, "DROP TABLE captchas", "DROP TABLE captchas").await;
    let r = crate::harness::fetch(&env.http, &env.base, "/verify_code").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_signed(&v);
    assert_eq!(v["result"], 3, "{v}");
}

#[tokio::test]
async fn bind_without_a_c2s_session_answers_107_and_binds_nothing() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let env = Env::start_tuned(Opts::default(), |c| {
        open_bind(c);
        c.xmpp.c2s_addr = format!("127.0.0.1:{port}");
    })
    .await;
    let (tok, jid_p, pwd_p) = env.account("ns-p", 1).await;
    let (_, jid_d, pwd_d) = env.account("ns-d", 2).await;
    let v = bind(&env, &tok, "ns-p", r#"["ns-d"]"#).await;
    assert_eq!(
        (v["result"].clone(), v["failed_ls"].clone()),
        (json!(107), json!(["ns-d"])),
        "{v}"
    );
    assert_eq!(item(&env, &jid_p, &pwd_p, &jid_d).await, None);
    assert_eq!(item(&env, &jid_d, &pwd_d, &jid_p).await, None);
}

/// The user's own client refuses the service's subscription request: the bind answers 108 and
/// the pair is not bound. The refusing client runs on a thread of its own, so a busy service
/// runtime cannot hold its answer back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_refused_by_the_users_own_client_answers_108() {
    let env = Env::start_tuned(Opts::default(), open_bind).await;
    let (tok, jid_p, pwd_p) = env.account("rf-p", 1).await;
    let (_, jid_d, pwd_d) = env.account("rf-d", 2).await;
    let node_d = jid_d.split('@').next().unwrap().to_owned();
    let mut own = TestClient::login(&env.prosody, &node_d, &pwd_d)
        .await
        .expect("the device's own client logs in");
    own.available().await.expect("available");
    let asker = jid_p.clone();
    let refusing = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let refused = own
                .refuse_subscription(&asker, Duration::from_secs(30))
                .await;
            own.close().await;
            refused
        })
    });
    let v = bind(&env, &tok, "rf-p", r#"["rf-d"]"#).await;
    refusing
        .join()
        .unwrap()
        .expect("the phone's request reached the device's own client, which refused it");
    assert_eq!(
        (v["result"].clone(), v["failed_ls"].clone()),
        (json!(108), json!(["rf-d"])),
        "{v}"
    );
    assert_ne!(
        item(&env, &jid_p, &pwd_p, &jid_d).await.map(|i| i.0),
        Some("both".into())
    );
}

#[tokio::test]
async fn xmpp_certificate_from_an_untrusted_ca_is_refused() {
    // Prosody's certificate is signed by the testkit's CA, which the service is not given: the
    // system roots do not know it, so no c2s session is made (107) and nothing is bound.
    let env = Env::start_tuned(Opts::TLS, |c| {
        open_bind(c);
        c.xmpp.tls_ca_file = String::new();
    })
    .await;
    let (tok, jid_p, pwd_p) = env.account("ca-p", 1).await;
    let (_, jid_d, _) = env.account("ca-d", 2).await;
    let v = bind(&env, &tok, "ca-p", r#"["ca-d"]"#).await;
    assert_eq!(v["result"], 107, "{v}");
    assert_eq!(item(&env, &jid_p, &pwd_p, &jid_d).await, None);
}

#[tokio::test]
async fn c2s_tls_optional_binds_over_tls_when_offered() {
    // Prosody offers STARTTLS but would accept plaintext too, so only the service's own choice
    // can make its c2s sessions encrypted.
    let prosody = Prosody::start(ProsodyOptions {
        tls: true,
        tls_optional: true,
        ..Default::default()
    });
    let data = tempfile::tempdir().unwrap();
    let o = Opts::TLS;
    let mut cfg = test_config(&prosody, data.path().join("data"), o).await;
    open_bind(&mut cfg);
    cfg.xmpp.c2s_tls = "optional".into();
    let env = Env::start_with(prosody, data, cfg).await;
    let (tok, jid_p, pwd_p) = env.account("op-p", 1).await;
    let (_, jid_d, pwd_d) = env.account("op-d", 2).await;
    let v = bind(&env, &tok, "op-p", r#"["op-d"]"#).await;
    assert_eq!(v["result"], 0, "{v}");
    // Before any verification client logs in: every c2s session Prosody authenticated as either
    // user is the service's, and each was encrypted before it authenticated.
    let log = env.prosody.log();
    for jid in [&jid_p, &jid_d] {
        let sessions = c2s_logins(&log, jid);
        assert!(
            !sessions.is_empty(),
            "no c2s login as {jid} in Prosody's log"
        );
        assert!(
            sessions.iter().all(|(_, tls)| *tls),
            "a c2s session as {jid} was not encrypted: {sessions:?}"
        );
    }
    assert_both(&env, (&jid_p, &pwd_p), &jid_d).await;
    assert_both(&env, (&jid_d, &pwd_d), &jid_p).await;
}

/// Asserts that `peer` is on the roster of `user` (JID and password) with a `both` subscription.
async fn assert_both(env: &Env, user: (&str, &str), peer: &str) {
    assert_eq!(
        item(env, user.0, user.1, peer).await.map(|i| i.0),
        Some("both".into())
    );
}

/// Prosody's c2s logins as `jid` in its log, in order: (session tag, whether the stream was
/// encrypted when it authenticated). A tag counts as a new session from its "Client connected".
fn c2s_logins(log: &str, jid: &str) -> Vec<(String, bool)> {
    let authenticated = format!("Authenticated as {jid}");
    let mut encrypted: std::collections::HashMap<&str, bool> = Default::default();
    let mut logins = Vec::new();
    for line in log.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(level) = words
            .iter()
            .position(|w| ["debug", "info", "warn", "error"].contains(w))
        else {
            continue;
        };
        let Some(tag) = level.checked_sub(1).map(|i| words[i]) else {
            continue;
        };
        if line.contains("Client connected") {
            encrypted.insert(tag, false);
        } else if line.contains("Stream encrypted") {
            encrypted.insert(tag, true);
        } else if line.trim_end().ends_with(&authenticated) {
            logins.push((tag.to_owned(), encrypted.get(tag).copied().unwrap_or(false)));
        }
    }
    logins
}

/// These tests prove the seed's bind by name (codes 104, 105–107, `failed_ls`), which
/// `binding.consent = "none"` keeps for old clients; bind tokens are proven in bind_tokens.rs.
fn open_bind(c: &mut register::service::config::Config) {
    c.binding.consent = "none".into();
}
