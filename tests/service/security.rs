//! Each security rule of SPEC §8, written as the attack it stops (the others live beside the
//! feature they guard: captcha replay and forged signatures in accounts.rs, someone else's token in
//! bindings.rs, a token reused after cancel in tcp.rs).

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{stored_bytes, Env, Opts};

#[tokio::test]
async fn password_guessing_hits_the_lock_and_the_lock_expires() {
    let env = Env::start_tuned(Opts::default(), |c| {
        c.security.lockout_threshold = 3;
        c.security.lockout_secs = 3;
    })
    .await;
    env.account("victim", 2).await;
    // Any wrong password counts, one too short to be anybody's included.
    let app = &env.server().app;
    let mut third = 0;
    for guess in ["123", "password", "qwerty"] {
        third = app.now();
        assert_eq!(env.login("victim", guess, 2).await["result"], 102);
    }
    // The third claim locked this network out until at least `third + 3`.
    let locked_until = third + 3;
    // The attacker now guesses right, but the account is locked: same answer as a wrong guess.
    assert_eq!(env.login("victim", "password1", 2).await["result"], 102);
    // Polled with the right password (refusals while locked count nothing): let in once the
    // lock has ended on the service's clock, not before.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = env.login("victim", "password1", 2).await;
        if v["result"] == 0 {
            break;
        }
        assert_eq!(v["result"], 102);
        assert!(std::time::Instant::now() < deadline, "the lock expires");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        app.now() >= locked_until,
        "not let in before {locked_until}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_guesses_gets_threshold_verdicts_then_the_lock() {
    let env = Env::start(Opts::default()).await;
    env.account("burst", 2).await;
    let guesses = (0..60).map(|i| {
        let p = crate::harness::signed(
            "/login",
            &[
                ("user_name", "burst"),
                ("password", &format!("guess-{i}")),
                ("type", "2"),
            ],
        );
        let (http, base) = (env.http.clone(), env.base.clone());
        async move { crate::harness::post_form(&http, &base, "/login", &p).await["result"].clone() }
    });
    for r in futures::future::join_all(guesses).await {
        assert_eq!(r, 102);
    }
    // Default threshold 5: five guesses had their password looked at, 55 met the lock.
    assert_eq!(env.server().app.metrics.login_failures(), (5, 55));
    assert_eq!(env.login("burst", "password1", 2).await["result"], 102);
}

#[tokio::test]
async fn a_device_login_for_a_phone_counts_nothing_against_it() {
    let env = Env::start(Opts::default()).await;
    env.account("13700000001", 1).await;
    for _ in 0..10 {
        assert_eq!(
            env.login("13700000001", "wrong-guess", 2).await["result"],
            102
        );
    }
    let acc = env
        .server()
        .app
        .store
        .account_by_name("13700000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((acc.failed_logins, acc.locked_until), (0, 0));
    assert_eq!(env.login("13700000001", "password1", 1).await["result"], 0);
}

#[tokio::test]
async fn database_holds_no_secret_in_the_clear() {
    let env = Env::start(Opts::default()).await;
    let (token, _, jid_pwd) = env.account("leaky", 2).await;
    let cfg = &env.server().app.cfg;
    let (bytes, tables) = stored_bytes(cfg, None).await;
    if cfg.database.is_postgres() {
        assert!(tables >= 4, "the scan sees the tables");
    } else {
        assert!(bytes.len() > 4096);
    }
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(has("leaky"), "the scan does see plain columns");
    assert!(!has("password1"), "login password in the clear");
    assert!(!has(&token), "access token in the clear");
    assert!(!has(&jid_pwd), "jid_pwd in the clear");
}

/// Run `burst` inside one rate-limit window (the clock's minute): start it early in a window, and
/// if it still straddled two, run it again at the start of the next (whose counts are fresh).
async fn in_one_rate_window<F, Fut>(env: &Env, mut burst: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let now = || env.server().app.now();
    for _ in 0..3 {
        if now() % 60 > 40 {
            let next = (now() / 60 + 1) * 60;
            while now() < next {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let window = now() / 60;
        burst().await;
        if now() / 60 == window {
            return;
        }
        let next = (now() / 60 + 1) * 60;
        while now() < next {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("three bursts in a row straddled a minute");
}

#[tokio::test]
async fn rate_limit_per_client_ip() {
    let env = Env::start_tuned(Opts::default(), |c| c.security.rate_per_minute = 3).await;
    // The outcome of the last burst (one that stayed within one window) is checked.
    let outcome = std::sync::Mutex::new(Vec::new());
    in_one_rate_window(&env, || async {
        let mut seen = Vec::new();
        for _ in 0..3 {
            env.captcha().await;
        }
        let r = crate::harness::fetch(&env.http, &env.base, "/verify_code").await;
        let status = r.status().as_u16();
        let result = if status == 429 {
            r.json::<Value>().await.unwrap()["result"].clone()
        } else {
            Value::Null
        };
        seen.push((status, result));
        // A forged X-Forwarded-For from an untrusted peer changes nothing.
        let r = env
            .http
            .get(format!("{}/verify_code", env.base))
            .header("x-forwarded-for", "203.0.113.9")
            .send()
            .await
            .unwrap();
        seen.push((r.status().as_u16(), Value::Null));
        *outcome.lock().unwrap() = seen;
    })
    .await;
    let seen = outcome.into_inner().unwrap();
    assert_eq!(seen[0], (429, serde_json::json!(112)));
    assert_eq!(seen[1].0, 429, "a forged X-Forwarded-For is ignored");
    // Token checks are not rate-limited.
    let v = env
        .post(
            "/get_users",
            &[("access_token", "x"), ("user_name_ls", "[\"a\"]")],
        )
        .await;
    assert_eq!(v["result"], 4);
}

#[tokio::test]
async fn slow_header_client_is_cut() {
    let env = Env::start_tuned(Opts::default(), |c| c.http.header_timeout_ms = 500).await;
    let mut s = TcpStream::connect(env.server().addrs.http).await.unwrap();
    // Never finish the TLS handshake or the headers.
    s.write_all(b"\x16\x03\x01").await.unwrap();
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "connection closed by the server: {r:?}"
    );
}

#[tokio::test]
async fn tcp_api_refuses_other_networks() {
    let env = Env::start_tuned(Opts::default(), |c| c.tcp.allow = vec!["10.0.0.0/8".into()]).await;
    let mut s = TcpStream::connect(env.server().addrs.tcp).await.unwrap();
    let _ = s
        .write_all(b"/verify_access_token {\"access_token\":\"x\"}\n")
        .await;
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(r, Ok(0) | Err(_)), "closed without a reply: {r:?}");
}

/// A TLS 1.1 ClientHello, written byte by byte (no TLS library here builds one any more): version
/// 3.2, no `supported_versions` extension, two TLS 1.1 cipher suites.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend(rand::random::<[u8; 32]>()); // random
    body.push(0); // no session id
    body.extend([0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, AES128-SHA
    body.extend([0x01, 0x00]); // compression: null
    body.extend([0x00, 0x00]); // no extensions
    let mut hs = vec![0x01, 0x00];
    hs.extend((body.len() as u16).to_be_bytes());
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

#[tokio::test]
async fn tls_1_1_client_hello_gets_a_fatal_handshake_failure_alert_and_tls_1_2_is_served() {
    let env = Env::start(Opts::default()).await;
    let mut s = TcpStream::connect(env.server().addrs.http).await.unwrap();
    s.write_all(&tls11_client_hello()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut reply))
        .await
        .expect("the server answers and closes")
        .unwrap();
    // One alert record: fatal (2), handshake_failure (40) — rustls offers no version below 1.2
    // to agree on; then the connection is closed.
    assert!(reply.len() >= 7, "reply {reply:02x?}");
    assert_eq!(reply[0], 0x15, "an alert record: {reply:02x?}");
    assert_eq!(
        &reply[5..7],
        &[2, 40],
        "fatal handshake_failure: {reply:02x?}"
    );
    assert_eq!(reply.len(), 7, "nothing but the alert: {reply:02x?}");
    let modern = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert_eq!(
        modern
            .get(format!("{}/verify_code", env.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
