//! Register, login, get_users and cancel over HTTPS, checked on the XMPP server independently.

use serde_json::Value;

use crate::harness::{signed, Env, Opts, ProsodyExt, CAPTCHA};

fn owned(p: &[(String, String)]) -> Vec<(&str, &str)> {
    p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

#[tokio::test]
async fn register_login_get_users_cancel() {
    let env = Env::start(Opts::default()).await;
    let (token, jid, jid_pwd) = env.account("13800138000", 1).await;
    assert!(jid.ends_with(&format!("@{}", env.prosody.domain)));
    assert!(
        !jid.starts_with("13800138000"),
        "the node is not derived from the user name"
    );
    // The JID really exists: an independent client logs in with jid_pwd.
    assert!(
        env.prosody.can_login(&jid, &jid_pwd).await,
        "new JID logs in"
    );

    // Taken name.
    assert_eq!(env.register("13800138000", "password2", 1).await, 103);
    // Wrong password, unknown user, wrong type.
    assert_eq!(
        env.login("13800138000", "password2", 1).await["result"],
        102
    );
    assert_eq!(env.login("nobody", "password1", 1).await["result"], 102);
    assert_eq!(
        env.login("13800138000", "password1", 3).await["result"],
        102
    );

    // get_users: own jid_pwd only, request order, unknown names left out, no password fields.
    // (Over HTTPS a caller sees itself and its bound accounts only: the phone binds dev-1 first,
    // redeeming a bind token of the device's.)
    let (dtok, _, _) = env.account("dev-1", 2).await;
    let p = crate::harness::signed(
        "/get_bind_token",
        &[("access_token", &dtok), ("user_name", "dev-1")],
    );
    let p: Vec<(&str, &str)> = p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let bt = env.post("/get_bind_token", &p).await;
    let bt = bt["bind_token"].as_str().unwrap();
    let v = env
        .post(
            "/set_user_banding",
            &[
                ("access_token", token.as_str()),
                ("user_name", "13800138000"),
                ("bind_token", bt),
            ],
        )
        .await;
    assert_eq!(v["result"], 0, "{v}");
    let v = env
        .post(
            "/get_users",
            &[
                ("access_token", &token),
                ("user_name_ls", r#"["dev-1","ghost","13800138000"]"#),
            ],
        )
        .await;
    assert_eq!(v["result"], 0);
    let ls = v["user_info_ls"].as_array().unwrap();
    assert_eq!(ls.len(), 2);
    assert_eq!(ls[0]["user_name"], "dev-1");
    assert_eq!(ls[0]["type"], 2);
    assert_eq!(ls[0]["device_type"], "cam");
    assert!(
        ls[0].get("jid_pwd").is_none(),
        "another user's jid_pwd is never returned"
    );
    assert_eq!(ls[1]["jid_pwd"], jid_pwd.as_str());
    for u in ls {
        assert!(u.get("password").is_none());
    }
    // Bad token, bad list.
    let v = env
        .post(
            "/get_users",
            &[("access_token", "nope"), ("user_name_ls", r#"["dev-1"]"#)],
        )
        .await;
    assert_eq!(v["result"], 4);
    let v = env
        .post(
            "/get_users",
            &[("access_token", &token), ("user_name_ls", "dev-1")],
        )
        .await;
    assert_eq!(v["result"], 2);
    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let many = serde_json::to_string(&many).unwrap();
    let v = env
        .post(
            "/get_users",
            &[("access_token", &token), ("user_name_ls", &many)],
        )
        .await;
    assert_eq!(v["result"], 2);

    // Cancel: wrong password refused; then the JID is gone and the token dead.
    let cancel = |password: &'static str| {
        let env = &env;
        async move {
            env.captcha().await;
            let p = [
                ("user_name", "13800138000"),
                ("password", password),
                ("type", "1"),
                ("verify_code", CAPTCHA),
            ];
            env.post("/cancel", &p).await
        }
    };
    let v = cancel("wrongpass").await;
    assert_eq!(v["result"], 102);
    let v = cancel("password1").await;
    assert_eq!(v["result"], 0, "{v}");
    assert!(
        !env.prosody.can_login(&jid, &jid_pwd).await,
        "cancelled JID no longer logs in"
    );
    let v = env
        .post(
            "/get_users",
            &[("access_token", &token), ("user_name_ls", r#"["dev-1"]"#)],
        )
        .await;
    assert_eq!(v["result"], 4);
    assert_eq!(
        env.login("13800138000", "password1", 1).await["result"],
        102
    );
    // The name is free again.
    assert_eq!(env.register("13800138000", "password3", 1).await, 0);
}

/// An app polling `/get_users` for the same list gets the same signed bytes while nothing it
/// shows changes (a reply kept in memory), and each change in the very next reply: the caller's
/// own `jid_pwd` renewed, the device unbound.
#[tokio::test]
async fn a_polled_get_users_shows_each_change_at_once() {
    let env = Env::start(Opts::default()).await;
    let (token, _, jid_pwd) = env.account("13800138009", 1).await;
    let (dtok, _, _) = env.account("dev-9", 2).await;
    let p = signed(
        "/get_bind_token",
        &[("access_token", &dtok), ("user_name", "dev-9")],
    );
    let bt = env.post("/get_bind_token", &owned(&p)).await;
    let bind = [
        ("access_token", token.as_str()),
        ("user_name", "13800138009"),
        ("bind_token", bt["bind_token"].as_str().unwrap()),
    ];
    assert_eq!(env.post("/set_user_banding", &bind).await["result"], 0);
    let list = r#"["dev-9","ghost","13800138009"]"#;
    let ask = [("access_token", token.as_str()), ("user_name_ls", list)];
    let poll = || env.post("/get_users", &ask);
    let names = |v: &Value| -> Vec<String> {
        let ls = v["user_info_ls"].as_array().unwrap();
        ls.iter()
            .map(|u| u["user_name"].as_str().unwrap().into())
            .collect()
    };
    let first = poll().await;
    assert_eq!(names(&first), ["dev-9", "13800138009"]);
    assert_eq!(first["user_info_ls"][1]["jid_pwd"], jid_pwd.as_str());
    for _ in 0..3 {
        assert_eq!(poll().await, first, "nothing changed");
    }

    let renew = [
        ("access_token", token.as_str()),
        ("user_name", "13800138009"),
    ];
    let v = env.post("/renew_jid_pwd", &renew).await;
    assert_eq!(v["result"], 0, "{v}");
    let renewed = poll().await;
    assert_ne!(v["jid_pwd"], jid_pwd.as_str());
    assert_eq!(renewed["user_info_ls"][1]["jid_pwd"], v["jid_pwd"]);
    assert_eq!(poll().await, renewed);

    let unbind = [
        ("access_token", token.as_str()),
        ("user_name", "13800138009"),
        ("user_name_ls", r#"["dev-9"]"#),
    ];
    assert_eq!(env.post("/set_user_unbanding", &unbind).await["result"], 0);
    assert_eq!(names(&poll().await), ["13800138009"]);
    assert_eq!(names(&poll().await), ["13800138009"]);
}

#[tokio::test]
async fn captcha_rules() {
    let env = Env::start(Opts::default()).await;
    let reg = |c: &'static str| {
        vec![
            ("user_name", "cap-user"),
            ("password", "password1"),
            ("type", "1"),
            ("verify_code", c),
        ]
    };
    // No captcha fetched: no challenge id.
    let fresh = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let v = crate::harness::post_unchecked(&fresh, &env.base, "/register", &reg(CAPTCHA)).await;
    assert_eq!(v["result"], 5);
    // Wrong answer spends the challenge: the right answer afterwards fails too.
    env.captcha().await;
    assert_eq!(env.post("/register", &reg("zzzzz")).await["result"], 5);
    assert_eq!(env.post("/register", &reg(CAPTCHA)).await["result"], 5);
    // Right answer works once, case-insensitively, by cookie…
    env.captcha().await;
    assert_eq!(env.post("/register", &reg("ABCDE")).await["result"], 0);
    // …and by parameter, from a client without cookies.
    let id = env.captcha().await;
    let mut p = vec![
        ("user_name", "cap-user2"),
        ("password", "password1"),
        ("type", "1"),
        ("verify_code", CAPTCHA),
    ];
    p.push(("verify_code_id", &id));
    let v = crate::harness::post_unchecked(&fresh, &env.base, "/register", &p).await;
    assert_eq!(v["result"], 0);
    // Reused id.
    let v = crate::harness::post_unchecked(&fresh, &env.base, "/register", &p).await;
    assert_eq!(v["result"], 5);
    // Missing captcha.
    assert_eq!(
        env.post(
            "/register",
            &[
                ("user_name", "x1"),
                ("password", "password1"),
                ("type", "1")
            ]
        )
        .await["result"],
        5
    );
}

#[tokio::test]
async fn devices_sign_and_params_are_checked() {
    let env = Env::start(Opts::default()).await;
    // A device without param_sign → 6; with a wrong one → 6; signed → 0.
    let base = [
        ("user_name", "cam-1"),
        ("password", "password1"),
        ("type", "2"),
        ("device_type", "cam"),
    ];
    assert_eq!(env.post("/register", &base).await["result"], 6);
    let mut bad = signed("/register", &base);
    bad.last_mut().unwrap().1 = "00".repeat(32);
    assert_eq!(env.post("/register", &owned(&bad)).await["result"], 6);
    // A timestamp outside the window is a replay.
    let old = signed(
        "/register",
        &[
            ("user_name", "cam-1"),
            ("password", "password1"),
            ("type", "2"),
            ("device_type", "cam"),
            ("timestamp", "1000"),
        ],
    );
    assert_eq!(env.post("/register", &owned(&old)).await["result"], 6);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let fresh = signed(
        "/register",
        &[
            ("user_name", "cam-1"),
            ("password", "password1"),
            ("type", "2"),
            ("device_type", "cam"),
            ("timestamp", &now),
        ],
    );
    assert_eq!(env.post("/register", &owned(&fresh)).await["result"], 0);
    // Login without param_sign → 6 (the seed requires it on /login).
    assert_eq!(
        env.post(
            "/login",
            &[
                ("user_name", "cam-1"),
                ("password", "password1"),
                ("type", "2")
            ]
        )
        .await["result"],
        6
    );
    // Missing or malformed parameters → 2.
    for p in [
        vec![("password", "password1"), ("type", "2")],
        vec![
            ("user_name", "x y"),
            ("password", "password1"),
            ("type", "2"),
            ("device_type", "c"),
        ],
        vec![
            ("user_name", "cam-2"),
            ("password", "short"),
            ("type", "2"),
            ("device_type", "c"),
        ],
        vec![
            ("user_name", "cam-2"),
            ("password", "password1"),
            ("type", "9"),
            ("device_type", "c"),
        ],
        vec![
            ("user_name", "cam-2"),
            ("password", "password1"),
            ("type", "2"),
        ],
    ] {
        let s = signed("/register", &p);
        assert_eq!(
            env.post("/register", &owned(&s)).await["result"],
            2,
            "{p:?}"
        );
    }
    // JSON bodies and GET work the same.
    let p = signed(
        "/register",
        &[
            ("user_name", "cam-3"),
            ("password", "password1"),
            ("type", "2"),
            ("device_type", "cam"),
        ],
    );
    let body: serde_json::Map<String, Value> = p
        .iter()
        .map(|(a, b)| (a.clone(), Value::String(b.clone())))
        .collect();
    let v: Value = env
        .http
        .post(format!("{}/register", env.base))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["result"], 0, "{v}");
    let p = crate::harness::signed_as(
        "GET",
        "/login",
        &[
            ("user_name", "cam-3"),
            ("password", "password1"),
            ("type", "2"),
        ],
        crate::harness::APP_KEY.as_bytes(),
    );
    let v = env.get("/login", &owned(&p)).await;
    assert_eq!(v["result"], 0, "{v}");
    assert!(v["user_info"]["jid_pwd"].is_string());
}

#[tokio::test]
async fn lockout_after_failed_logins() {
    let env = Env::start(Opts::default()).await;
    env.account("lock-me", 2).await;
    for _ in 0..5 {
        assert_eq!(
            env.login("lock-me", "wrong-password", 2).await["result"],
            102
        );
    }
    // Locked: even the right password is refused for now.
    assert_eq!(env.login("lock-me", "password1", 2).await["result"], 102);
}
