//! `/renew_jid_pwd` (issue 18, point 5) as the attack it stops: a `jid_pwd` that leaked keeps
//! logging in to the XMPP server. Checked on the XMPP server itself, through the testkit's own
//! client: after a renewal the old password fails an independent login and the new one succeeds.
//! Also the crash rule: a renewal interrupted before or after the server change is finished by
//! the next call, and the account never has a password the service does not know.

use register::auth::crypto;
use serde_json::Value;

use crate::harness::{signed, Env, Opts, ProsodyExt};

/// `/renew_jid_pwd` as a phone (token only) or a device (signed).
async fn renew(env: &Env, name: &str, token: &str, device: bool) -> Value {
    let base = [("user_name", name), ("access_token", token)];
    let p = if device {
        signed("/renew_jid_pwd", &base)
    } else {
        base.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let p: Vec<(&str, &str)> = p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    env.post("/renew_jid_pwd", &p).await
}

async fn renews_and_the_old_password_stops_working(o: Opts) {
    let env = Env::start(o).await;
    for (name, kind) in [("renew-phone", 1u8), ("renew-cam", 2)] {
        let device = kind == 2;
        let (token, jid, old) = env.account(name, kind).await;
        assert!(env.prosody.can_login(&jid, &old).await, "{name}: before");
        let v = renew(&env, name, &token, device).await;
        assert_eq!(v["result"], 0, "{name}: {v}");
        let new = v["jid_pwd"].as_str().unwrap().to_owned();
        assert_ne!(new, old);
        assert!(
            !env.prosody.can_login(&jid, &old).await,
            "{name}: the old jid_pwd still logs in"
        );
        assert!(
            env.prosody.can_login(&jid, &new).await,
            "{name}: the new jid_pwd does not log in"
        );
        // The service uses the new one from now on: a login returns it, and the roster (read
        // over c2s with the stored password in c2s mode) is there.
        let l = env.login(name, "password1", kind).await;
        assert_eq!(l["user_info"]["jid_pwd"], new.as_str());
        let p = if device {
            signed(
                "/get_user_banding",
                &[("user_name", name), ("access_token", &token)],
            )
        } else {
            vec![
                ("user_name".into(), name.into()),
                ("access_token".into(), token.clone()),
            ]
        };
        let p: Vec<(&str, &str)> = p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let r = env.post("/get_user_banding", &p).await;
        assert_eq!(r["result"], 0, "{name}: roster after renewal: {r}");
    }
    // Someone else's token: 100; no token: 4.
    let (token, _, _) = env.account("renew-other", 1).await;
    let p = [
        ("user_name", "renew-phone"),
        ("access_token", token.as_str()),
    ];
    assert_eq!(env.post("/renew_jid_pwd", &p).await["result"], 100);
    let p = [("user_name", "renew-phone"), ("access_token", "nope")];
    assert_eq!(env.post("/renew_jid_pwd", &p).await["result"], 4);
}

/// Component mode: XEP-0133 change-user-password through the component.
#[tokio::test]
async fn after_renew_jid_pwd_the_old_password_fails_an_independent_login_by_xep_0133() {
    renews_and_the_old_password_stops_working(Opts::default()).await;
}

/// Ibr mode: XEP-0077 password change as the user over c2s (what Openfire needs).
#[tokio::test]
async fn after_renew_jid_pwd_the_old_password_fails_an_independent_login_by_xep_0077() {
    renews_and_the_old_password_stops_working(Opts {
        ibr: true,
        ..Opts::default()
    })
    .await;
}

/// The two places a crash can interrupt a renewal, made by doing the renewal's first steps by
/// hand: the pending password stored only, and stored and set on the server. Either way the next
/// call returns that same password, which then logs in, and the old one does not.
#[tokio::test]
async fn an_interrupted_renewal_is_finished_by_the_next_call() {
    for ibr in [false, true] {
        let env = Env::start(Opts {
            ibr,
            ..Opts::default()
        })
        .await;
        let app = &env.server().app;
        for (name, server_changed) in [("cut-before", false), ("cut-after", true)] {
            let (token, jid, old) = env.account(name, 1).await;
            let node = jid.split('@').next().unwrap();
            let acc = app.store.account_by_name(name).await.unwrap().unwrap();
            let pending = "pendingpassword0123456789";
            let sealed = crypto::seal(&app.secrets.encryption_key, node, pending);
            let stored = app
                .jid_pwds
                .begin_jid_pwd(acc.id, sealed.clone(), app.now())
                .await
                .unwrap();
            assert_eq!(stored, Some(sealed));
            if server_changed {
                app.xmpp.change_password(node, &old, pending).await.unwrap();
            }
            // The process "died" here. The next call finishes that renewal.
            let v = renew(&env, name, &token, false).await;
            assert_eq!(v["result"], 0, "{name} (ibr {ibr}): {v}");
            assert_eq!(v["jid_pwd"], pending, "{name} (ibr {ibr})");
            assert!(env.prosody.can_login(&jid, pending).await, "{name}");
            assert!(!env.prosody.can_login(&jid, &old).await, "{name}");
            // And the next renewal is a fresh one again.
            let v = renew(&env, name, &token, false).await;
            assert_eq!(v["result"], 0);
            let newer = v["jid_pwd"].as_str().unwrap();
            assert_ne!(newer, pending);
            assert!(env.prosody.can_login(&jid, newer).await, "{name}");
            assert!(!env.prosody.can_login(&jid, pending).await, "{name}");
        }
    }
}
