//! Bind, unbind and get_user_banding over HTTPS, checked on both rosters independently (the bind
//! tokens themselves, and the attacks they stop, are in `bind_tokens.rs`).

use crate::harness::roster_item as roster_sub;
use crate::harness::{bound_item, items_both_ways, variants, Env, Opts, ProsodyExt, CAPTCHA};

/// The peers list naming the device of the scenario.
const DEV_A: &str = r#"["dev-a"]"#;

async fn bind_scenario(o: Opts) {
    let env = Env::start(o).await;
    let (tok_p, jid_p, pwd_p) = env.account("phone-a", 1).await;
    let (tok_d, jid_d, pwd_d) = env.account("dev-a", 2).await;
    let (tok_p2, _, _) = env.account("phone-b", 1).await;

    // A bind token of dev-a's (the device shows it; the phone redeems it).
    let dev_token = || {
        let (env, tok) = (&env, tok_d.clone());
        async move {
            let p = [("access_token", tok.as_str()), ("user_name", "dev-a")];
            let v = env.post_signed("/get_bind_token", &p).await;
            assert_eq!(v["result"], 0, "{v}");
            v["bind_token"].as_str().unwrap().to_owned()
        }
    };
    let bind_with = |tok: String, who: &'static str, peers: &'static str, bt: Option<String>| {
        let env = &env;
        async move {
            let mut p = vec![
                ("access_token", tok.as_str()),
                ("user_name", who),
                ("user_name_ls", peers),
            ];
            if let Some(bt) = &bt {
                p.push(("bind_token", bt.as_str()));
            }
            env.post("/set_user_banding", &p).await
        }
    };
    let bind =
        |tok: String, who: &'static str, peers: &'static str| bind_with(tok, who, peers, None);
    // Someone else's token → 100; no bind token → 100; phone with phone → 100; bad token → 4.
    assert_eq!(
        bind(tok_p2.clone(), "phone-a", r#"["dev-a"]"#).await["result"],
        100
    );
    assert_eq!(
        bind(tok_p.clone(), "phone-a", r#"["ghost"]"#).await["result"],
        100
    );
    assert_eq!(
        bind(tok_p.clone(), "phone-a", r#"["phone-b"]"#).await["result"],
        100
    );
    assert_eq!(
        bind("x".into(), "phone-a", r#"["dev-a"]"#).await["result"],
        4
    );
    // Nothing changed on the server.
    assert!(roster_sub(&env, &jid_p, &pwd_p, &jid_d).await.is_none());

    let v = bind_with(tok_p.clone(), "phone-a", DEV_A, Some(dev_token().await)).await;
    assert_eq!(v["result"], 0, "{v}");
    // Both rosters say both, with the peer's user_name and a group naming its type.
    assert_eq!(
        items_both_ways(&env.prosody, (&jid_p, &pwd_p), (&jid_d, &pwd_d)).await,
        [
            bound_item("dev-a", "Device"),
            bound_item("phone-a", "Phone")
        ]
    );
    // Already bound.
    let v = bind_with(tok_p.clone(), "phone-a", DEV_A, Some(dev_token().await)).await;
    assert_eq!(v["result"], 109, "{v}");

    // get_user_banding: the roster as the server holds it, with our names.
    let banding = |tok: &String| {
        let (env, tok) = (&env, tok.clone());
        async move {
            let p = [("access_token", tok.as_str()), ("user_name", "phone-a")];
            env.post("/get_user_banding", &p).await
        }
    };
    let v = banding(&tok_p).await;
    assert_eq!(v["result"], 0, "{v}");
    let items = v["roster_item"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["jid"], jid_d.as_str());
    assert_eq!(items[0]["subscriptionType"], "both");
    assert_eq!(items[0]["nickname"], "dev-a");
    assert_eq!(items[0]["groups"], serde_json::json!(["Device"]));
    assert_eq!(items[0]["user_name"], "dev-a");
    assert_eq!(items[0]["type"], 2);
    let v = banding(&tok_p2).await;
    assert_eq!(v["result"], 100);

    // Unbind: both rosters empty, second unbind → 110.
    let unbind = |peers: &'static str| {
        let (env, tok) = (&env, tok_p.clone());
        async move {
            env.post(
                "/set_user_unbanding",
                &[
                    ("access_token", &tok),
                    ("user_name", "phone-a"),
                    ("user_name_ls", peers),
                ],
            )
            .await
        }
    };
    assert_eq!(unbind(r#"["dev-a"]"#).await["result"], 0);
    assert!(roster_sub(&env, &jid_p, &pwd_p, &jid_d).await.is_none());
    assert!(roster_sub(&env, &jid_d, &pwd_d, &jid_p).await.is_none());
    assert_eq!(unbind(r#"["dev-a"]"#).await["result"], 110);
    // A name that does not exist answers as one not bound: unbinding tells nobody which exist.
    assert_eq!(unbind(r#"["ghost"]"#).await["result"], 110);

    // Bind again, then cancel the device: the phone's roster loses it.
    let v = bind_with(tok_p.clone(), "phone-a", DEV_A, Some(dev_token().await)).await;
    assert_eq!(v["result"], 0, "{v}");
    let cancel = [
        ("user_name", "dev-a"),
        ("password", "password1"),
        ("type", "2"),
    ];
    assert_eq!(env.post_signed("/cancel", &cancel).await["result"], 0);
    assert!(
        roster_sub(&env, &jid_p, &pwd_p, &jid_d).await.is_none(),
        "cancel removed the binding from the peer"
    );
    let v = banding(&tok_p).await;
    assert_eq!(v["roster_item"], serde_json::json!([]));
    let _ = CAPTCHA;
}

variants! {
    bind_c2s_plaintext => bind_scenario(Opts::default());
    bind_c2s_tls => bind_scenario(Opts::TLS);
    bind_privileged => bind_scenario(Opts::PRIVILEGED);
}

#[tokio::test]
async fn accounts_by_ibr() {
    let env = Env::start(Opts::IBR).await;
    let (_, jid, pwd) = env.account("ibr-user", 1).await;
    assert!(env.prosody.can_login(&jid, &pwd).await);
    env.captcha().await;
    let v = env
        .post(
            "/cancel",
            &[
                ("user_name", "ibr-user"),
                ("password", "password1"),
                ("type", "1"),
                ("verify_code", CAPTCHA),
            ],
        )
        .await;
    assert_eq!(v["result"], 0);
    assert!(!env.prosody.can_login(&jid, &pwd).await);
}
