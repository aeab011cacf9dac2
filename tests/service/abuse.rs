//! Floods, each written as the attack it stops (issue 18, point 3): addresses rotated inside one
//! IPv6 prefix, one account's token used without end, a login flood past the hashing queue, and
//! tokens piled up by logging in again and again.

use serde_json::Value;

use crate::harness::{assert_signed, post_form, signed, tcp_verify, Env, Opts};

/// One `/verify_access_token` over a new TCP connection, its `sign` checked.
async fn tcp_check(env: &Env, token: &str) -> Value {
    let v = tcp_verify(env.server().addrs.tcp, token).await;
    assert_signed(&v);
    v
}

/// A refusal for load: the status, `Retry-After` within the minute, and the signed body 112.
async fn assert_refused(r: reqwest::Response, status: u16) {
    assert_eq!(r.status(), status);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let v: Value = r.json().await.unwrap();
    assert_signed(&v);
    assert_eq!(v["result"], 112);
}

#[tokio::test]
async fn addresses_rotated_within_one_ipv6_prefix_are_limited_as_one_client() {
    let env = Env::start_tuned(Opts::default(), |c| {
        c.security.rate_per_minute = 3;
        // The client address comes from a proxy on loopback that the service trusts.
        c.http.trusted_proxies = vec!["127.0.0.1".into()];
        c.captcha.fixed_answer.clear();
    })
    .await;
    let from = |ip: &str| {
        env.http
            .get(format!("{}/verify_code", env.base))
            .header("x-forwarded-for", ip)
            .send()
    };
    for host in 1..=3 {
        let r = from(&format!("2001:db8:7:7::{host:x}")).await.unwrap();
        assert_eq!(r.status(), 200, "host {host} of the /64");
    }
    // A fourth address of the same /64 is the same client.
    assert_refused(from("2001:db8:7:7:ffff::1").await.unwrap(), 429).await;
    // The next /64 is another client.
    assert_eq!(from("2001:db8:7:8::1").await.unwrap().status(), 200);
}

/// Every costly endpoint of the table (`cmd/endpoints.rs`) is limited per client network: past
/// `rate_per_minute`, `/login`, `/register`, `/cancel` and the others answer 429 with 112 before
/// their command runs. Each endpoint is tried from its own client (a trusted proxy names it), so
/// each starts with a full budget.
#[tokio::test]
async fn login_register_cancel_and_every_costly_endpoint_are_rate_limited() {
    let env = Env::start_tuned(Opts::default(), |c| {
        c.security.rate_per_minute = 2;
        c.http.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    // Within the budget each command runs and refuses the bare request: 2 (parameters) where the
    // password is checked first, 4 (no access token) where the token is.
    let costly = [
        ("/login", 2),
        ("/register", 2),
        ("/cancel", 2),
        ("/change_password", 2),
        ("/renew_jid_pwd", 4),
        ("/set_user_banding", 4),
        ("/set_user_unbanding", 4),
    ];
    for (i, (path, code)) in costly.iter().enumerate() {
        let client = format!("198.51.100.{}", i + 1);
        let send = || {
            env.http
                .post(format!("{}{path}", env.base))
                .header("x-forwarded-for", &client)
                .form(&[("user_name", "nobody")])
                .send()
        };
        for _ in 0..2 {
            let r = send().await.unwrap();
            assert_eq!(r.status(), 200, "{path} within the budget");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["result"], *code, "{path} within the budget");
        }
        assert_refused(send().await.unwrap(), 429).await;
    }
}

#[tokio::test]
async fn one_accounts_token_is_limited_per_account_but_not_over_tcp() {
    let env = Env::start_tuned(Opts::default(), |c| c.security.account_rate_per_minute = 3).await;
    let (token, _, _) = env.account("busy-cam", 2).await;
    let (other, _, _) = env.account("calm-cam", 2).await;
    let list = |token: &str, name: &str| {
        let p = [("access_token", token), ("user_name", name)];
        env.signed_request("/get_user_banding", &p)
    };
    for _ in 0..3 {
        let v: Value = list(&token, "busy-cam").await.json().await.unwrap();
        assert_eq!(v["result"], 0, "{v}");
    }
    assert_refused(list(&token, "busy-cam").await, 429).await;
    // Another account is not affected, and neither are the backends' token checks over TCP.
    let v: Value = list(&other, "calm-cam").await.json().await.unwrap();
    assert_eq!(v["result"], 0);
    for _ in 0..10 {
        assert_eq!(tcp_check(&env, &token).await["validate"], true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_past_the_hashing_queue_is_refused_with_503() {
    let env = Env::start_tuned(Opts::default(), |c| {
        c.security.hash_concurrency = 1;
        c.security.hash_queue = 2;
        c.security.lockout_threshold = 1000;
        c.security.lockout_account_threshold = 1000;
    })
    .await;
    let (token, _, _) = env.account("flooded", 2).await;
    let logins = (0..40).map(|i| {
        let guess = format!("guess-{i}");
        let p = [
            ("user_name", "flooded"),
            ("password", &guess),
            ("type", "2"),
        ];
        env.signed_request("/login", &p)
    });
    let mut busy = 0;
    let mut wrong = 0;
    for r in futures::future::join_all(logins).await {
        if r.status() == 503 {
            busy += 1;
            assert_refused(r, 503).await;
        } else {
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["result"], 102, "{v}");
            wrong += 1;
        }
    }
    assert!(busy > 0, "the queue of 2 overflowed (40 at once)");
    // A refused login counts nothing against the account: only the verified ones did.
    assert_eq!(env.server().app.metrics.login_failures(), (wrong, 0));
    let acc = env
        .server()
        .app
        .store
        .account_by_name("flooded")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acc.failed_logins as u64, wrong);
    assert_eq!(env.server().app.hasher.queued(), 0, "every place freed");
    // The backends' token checks were never in that queue.
    assert_eq!(tcp_check(&env, &token).await["validate"], true);
}

#[tokio::test]
async fn logging_in_again_and_again_keeps_only_the_newest_tokens() {
    let env = Env::start_tuned(Opts::default(), |c| c.security.max_tokens_per_account = 2).await;
    let (first, _, _) = env.account("pile", 2).await;
    // Cached by a check over TCP before it is revoked.
    assert_eq!(tcp_check(&env, &first).await["validate"], true);
    let mut tokens = vec![first];
    for _ in 0..2 {
        let v = env.login("pile", "password1", 2).await;
        assert_eq!(v["result"], 0);
        tokens.push(v["access_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        tcp_check(&env, &tokens[0]).await["validate"],
        false,
        "oldest revoked"
    );
    let p = signed(
        "/get_user_banding",
        &[("access_token", &tokens[0]), ("user_name", "pile")],
    );
    let v = post_form(&env.http, &env.base, "/get_user_banding", &p).await;
    assert_eq!(v["result"], 4);
    for t in &tokens[1..] {
        assert_eq!(tcp_check(&env, t).await["validate"], true);
    }
}

/// A device login from `ip` (through the trusted proxy on loopback).
async fn login_from(env: &Env, ip: &str, name: &str, password: &str) -> Value {
    let p = signed(
        "/login",
        &[("user_name", name), ("password", password), ("type", "2")],
    );
    let r = env
        .http
        .post(format!("{}/login", env.base))
        .header("x-forwarded-for", ip)
        .form(&p)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_signed(&v);
    v
}

#[tokio::test]
async fn a_strangers_guesses_lock_the_strangers_network_out_not_the_owner() {
    let env = Env::start_tuned(Opts::default(), |c| {
        c.http.trusted_proxies = vec!["127.0.0.1".into()];
        c.captcha.fixed_answer.clear();
        c.security.lockout_threshold = 3;
        c.security.lockout_account_threshold = 7;
    })
    .await;
    assert_eq!(env.register("cam-home", "password1", 2).await, 0);
    let stranger = "198.51.100.7";
    for i in 0..3 {
        let v = login_from(&env, stranger, "cam-home", &format!("guess-{i}")).await;
        assert_eq!(v["result"], 102);
    }
    // The stranger now has the right password, and is locked out all the same...
    let v = login_from(&env, stranger, "cam-home", "password1").await;
    assert_eq!(v["result"], 102, "the stranger's network is locked out");
    // ...while the owner, at home in another network, logs in.
    let home = "2001:db8:100:1::5";
    assert_eq!(
        login_from(&env, home, "cam-home", "password1").await["result"],
        0
    );
    // Guesses spread over many networks meet the account-wide cap (7): then nobody gets in,
    // not even from a network that never failed.
    for n in 1..=7 {
        let v = login_from(&env, &format!("203.0.113.{n}"), "cam-home", "nope-nope").await;
        assert_eq!(v["result"], 102);
    }
    let v = login_from(&env, "2001:db8:200:1::5", "cam-home", "password1").await;
    assert_eq!(
        v["result"], 102,
        "the account-wide lock holds everywhere else"
    );
    // ...but not at home, where the owner last logged in (that network keeps its own lock).
    let v = login_from(&env, "2001:db8:100:1::9", "cam-home", "password1").await;
    assert_eq!(v["result"], 0, "the owner at home: {v}");
}

#[tokio::test]
async fn hostile_user_names_are_refused_and_the_link_stays_up() {
    let env = Env::start(Opts::default()).await;
    for bad in ["cam\u{FFFF}", "cam\u{202E}1", "ca\u{200B}m"] {
        assert_eq!(env.register(bad, "password1", 2).await, 2, "{bad:?}");
    }
    assert_eq!(
        *env.server().app.xmpp.link_watch().borrow(),
        xmpp::LinkState::Up,
        "the component link is still up"
    );
    // One spelling per name: the full-width twin of a registered name is that name.
    assert_eq!(env.register("cam-77", "password1", 2).await, 0);
    assert_eq!(env.register("ｃａｍ-７７", "password1", 2).await, 103);
    let v = env.login("ｃａｍ-７７", "password1", 2).await;
    assert_eq!(v["result"], 0, "{v}");
    assert_eq!(v["user_info"]["user_name"], "cam-77");
}
