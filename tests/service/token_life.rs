//! Token and password life (issue 18, point 5), each written as the attack it stops: a token
//! that leaked keeps working after its owner logged out or changed the password; a stolen token
//! used to guess the password through `/change_password`; a leaked token the operator revokes.

use crate::harness::{assert_signed, pairs, signed, Env, Opts, CAPTCHA};

/// `/verify_access_token` over a new TCP connection: the backend's view of the token.
async fn tcp_valid(env: &Env, token: &str) -> bool {
    let v = crate::harness::tcp_verify(env.server().addrs.tcp, token).await;
    assert_signed(&v);
    match v["result"].as_i64() {
        Some(0) => true,
        Some(4) => false,
        other => panic!("unexpected {other:?}: {v}"),
    }
}

/// An HTTPS call needing the token (the caller's own roster): true when the token is accepted.
async fn https_valid(env: &Env, name: &str, token: &str, device: bool) -> bool {
    let base = [("user_name", name), ("access_token", token)];
    let p = if device {
        signed("/get_user_banding", &base)
    } else {
        base.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let v = env.post("/get_user_banding", &pairs(&p)).await;
    match v["result"].as_i64() {
        Some(0) => true,
        Some(4) => false,
        other => panic!("unexpected {other:?}: {v}"),
    }
}

/// `/change_password` as a phone (captcha) or a device (signed).
async fn change_password(
    env: &Env,
    name: &str,
    token: &str,
    old: &str,
    new: &str,
    device: bool,
) -> i64 {
    let mut base = vec![
        ("user_name", name),
        ("access_token", token),
        ("old_password", old),
        ("new_password", new),
    ];
    let p = if device {
        signed("/change_password", &base)
    } else {
        env.captcha().await;
        base.push(("verify_code", CAPTCHA));
        base.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    env.post("/change_password", &pairs(&p)).await["result"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn a_logged_out_token_is_refused_over_https_and_tcp_even_once_cached() {
    let env = Env::start(Opts::default()).await;
    let (token, _, _) = env.account("out-cam", 2).await;
    let other = env.second_token("out-cam", "password1", 2).await;
    // The backend checked it twice: the second answer came from the token cache's memory.
    assert!(tcp_valid(&env, &token).await);
    assert!(tcp_valid(&env, &token).await);
    assert!(https_valid(&env, "out-cam", &token, true).await);
    // A device's logout is signed like its other calls.
    let unsigned = env
        .post(
            "/logout",
            &[("user_name", "out-cam"), ("access_token", &token)],
        )
        .await;
    assert_eq!(unsigned["result"], 6);
    let p = signed(
        "/logout",
        &[("user_name", "out-cam"), ("access_token", &token)],
    );
    assert_eq!(env.post("/logout", &pairs(&p)).await["result"], 0);
    assert!(
        !tcp_valid(&env, &token).await,
        "TCP still accepts a logged-out token"
    );
    assert!(!https_valid(&env, "out-cam", &token, true).await);
    // Logging out again with it is refused like any dead token.
    assert_eq!(env.post("/logout", &pairs(&p)).await["result"], 4);
    // Only the token used was revoked: the other session of the account lives on.
    assert!(tcp_valid(&env, &other).await);
    assert!(https_valid(&env, "out-cam", &other, true).await);
}

#[tokio::test]
async fn a_changed_password_revokes_every_token_and_the_old_password() {
    let env = Env::start(Opts::default()).await;
    let (token, _, _) = env.account("pw-phone", 1).await;
    let other = env.second_token("pw-phone", "password1", 1).await;
    for t in [&token, &other] {
        assert!(tcp_valid(&env, t).await);
        assert!(tcp_valid(&env, t).await, "cached");
    }
    // A phone answers a captcha, as for /login.
    let no_captcha = env
        .post(
            "/change_password",
            &[
                ("user_name", "pw-phone"),
                ("access_token", &token),
                ("old_password", "password1"),
                ("new_password", "password2"),
            ],
        )
        .await;
    assert_eq!(no_captcha["result"], 5);
    // A new password that is too short is refused before anything is checked or spent.
    assert_eq!(
        change_password(&env, "pw-phone", &token, "password1", "short", false).await,
        2
    );
    assert_eq!(
        change_password(&env, "pw-phone", &token, "password1", "password2", false).await,
        0
    );
    for t in [&token, &other] {
        assert!(
            !tcp_valid(&env, t).await,
            "TCP still accepts a token of before"
        );
        assert!(!https_valid(&env, "pw-phone", t, false).await);
    }
    assert_eq!(env.login("pw-phone", "password1", 1).await["result"], 102);
    let v = env.login("pw-phone", "password2", 1).await;
    assert_eq!(v["result"], 0);
    assert!(tcp_valid(&env, v["access_token"].as_str().unwrap()).await);
}

#[tokio::test]
async fn guessing_the_old_password_with_a_stolen_token_meets_the_login_lock() {
    let env = Env::start_tuned(Opts::default(), |c| c.security.lockout_threshold = 3).await;
    let (stolen, _, _) = env.account("pw-cam", 2).await;
    for i in 0..3 {
        let guess = format!("guess-{i}");
        let r = change_password(&env, "pw-cam", &stolen, &guess, "mine-now", true).await;
        assert_eq!(r, 102);
    }
    // The thief's network is locked out of the account: even the right old password fails...
    assert_eq!(
        change_password(&env, "pw-cam", &stolen, "password1", "mine-now", true).await,
        102
    );
    // ...and so does /login from there: the guesses were counted as failed logins.
    assert_eq!(env.login("pw-cam", "password1", 2).await["result"], 102);
    // The password did not change.
    let acc = env
        .server()
        .app
        .store
        .account_by_name("pw-cam")
        .await
        .unwrap()
        .unwrap();
    assert!(env
        .server()
        .app
        .hasher
        .verify("password1".into(), acc.password_hash)
        .await
        .unwrap());
    // Another account's token cannot change this one's password.
    let (mine, _, _) = env.account("pw-other", 2).await;
    let r = change_password(&env, "pw-cam", &mine, "password1", "mine-now", true).await;
    assert_eq!(r, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_revokes_a_leaked_token_from_the_command_line() {
    // The service keeps its token cache: the CLI asks the running instance (admin hand-off),
    // whose cache forgets the tokens at once.
    let env = Env::start(Opts::default()).await;
    let (leaked, _, _) = env.account("leak-cam", 2).await;
    let second = env.second_token("leak-cam", "password1", 2).await;
    let (kept, _, _) = env.account("keep-cam", 2).await;
    // Checked twice: the second answer comes from memory.
    for t in [&leaked, &second, &leaked, &second] {
        assert!(tcp_valid(&env, t).await);
    }
    let cfg = env.server().app.cfg.clone();
    let code = register::service::cli::token(
        cfg.clone(),
        register::service::cli::TokenAction::Revoke {
            name: "leak-cam".into(),
        },
    )
    .await;
    assert_eq!(code, 0);
    for t in [&leaked, &second] {
        assert!(!tcp_valid(&env, t).await);
        assert!(!https_valid(&env, "leak-cam", t, true).await);
    }
    assert!(
        tcp_valid(&env, &kept).await,
        "another account's token stays"
    );
    let code = register::service::cli::token(
        cfg,
        register::service::cli::TokenAction::Revoke {
            name: "nobody".into(),
        },
    )
    .await;
    assert_eq!(code, 1);
}
