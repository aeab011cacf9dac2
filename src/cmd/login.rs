//! `/login`: captcha (humans) or signature (devices), then the password; a new access token.
//!
//! Unknown name, wrong password, wrong type and a locked account all answer 102, and all take one
//! Argon2id verification, so the reply time does not tell which.

use serde::Serialize;

use super::reply::Reply;
use crate::app::UserInfo;

use crate::app::{App, Call};
use crate::auth::{crypto, login};
use crate::error::ApiError;

#[derive(Serialize)]
struct LoggedIn<'a> {
    user_info: UserInfo<'a>,
    access_token: String,
    expires_at: i64,
}

pub async fn run(app: &App, call: &Call) -> Result<Reply, ApiError> {
    let (account, _) = login::authenticate(app, call, true).await?;
    let token = crypto::new_token();
    let expires = app.now() + app.cfg.security.token_ttl_secs as i64;
    let hash = crypto::token_hash(&token);
    app.store
        .insert_token(hash.clone(), account.id, expires, app.now())
        .await?;
    // At most `security.max_tokens_per_account` live tokens: the oldest go.
    app.store
        .trim_tokens(account.id, hash, app.cfg.security.max_tokens_per_account)
        .await?;
    Ok(Reply::ok(LoggedIn {
        user_info: app.user_info(&account, true)?,
        access_token: token,
        expires_at: expires,
    }))
}

#[cfg(test)]
mod tests {
    use super::run;
    use crate::cmd::testkit::{code, credentials, Kit, PASSWORD};
    use crate::types::AccountType;

    fn device(password: &str) -> [(&str, &str); 3] {
        credentials("lamp", password, "2")
    }

    #[tokio::test]
    async fn a_device_logs_in_and_gets_a_token_that_expires() {
        let (k, a, _) = Kit::with_account("lamp", AccountType::Device).await;
        let v = run(&k.app, &k.signed(&device(PASSWORD)))
            .await
            .unwrap()
            .into_json();
        assert_eq!(v["result"], 0);
        assert_eq!(v["user_info"]["user_name"], "lamp");
        assert_eq!(v["user_info"]["jid_pwd"], k.app.jid_pwd(&a).unwrap());
        let ttl = k.app.cfg.security.token_ttl_secs as i64;
        assert_eq!(v["expires_at"], k.app.now() + ttl);
        let token = v["access_token"].as_str().unwrap();
        let c = k.call(&[("access_token", token)]);
        assert!(k.app.token_holder(&c).await.is_ok());
        k.clock.advance(ttl);
        assert_eq!(k.app.token_holder(&c).await.unwrap_err().code(), 4);
    }

    #[tokio::test]
    async fn a_phone_needs_a_captcha_and_a_device_a_signature() {
        let k = Kit::new().await;
        k.account("phone", AccountType::Phone).await;
        k.account("lamp", AccountType::Device).await;
        let p = credentials("phone", PASSWORD, "1");
        assert_eq!(code(&run(&k.app, &k.signed(&p)).await), 5);
        assert_eq!(code(&run(&k.app, &k.human(&p).await).await), 6);
        assert_eq!(code(&run(&k.app, &k.human_signed(&p).await).await), 0);
        assert_eq!(code(&run(&k.app, &k.call(&device(PASSWORD))).await), 6);
        assert_eq!(code(&run(&k.app, &k.signed(&device("x")[1..])).await), 2);
    }

    #[tokio::test]
    async fn unknown_names_wrong_types_and_wrong_passwords_answer_102() {
        let k = Kit::new().await;
        k.account("lamp", AccountType::Device).await;
        let unknown = credentials("nobody", PASSWORD, "2");
        assert_eq!(code(&run(&k.app, &k.signed(&unknown)).await), 102);
        let typ = credentials("lamp", PASSWORD, "3");
        assert_eq!(code(&run(&k.app, &k.human_signed(&typ).await).await), 102);
        assert_eq!(code(&run(&k.app, &k.signed(&device("wrong-1"))).await), 102);
        assert_eq!(k.app.metrics.login_failures(), (3, 0));
    }

    #[tokio::test]
    async fn a_network_is_locked_out_after_the_threshold_until_the_lock_ends() {
        let k = Kit::new().await;
        k.account("lamp", AccountType::Device).await;
        let sec = k.app.cfg.security.clone();
        for _ in 0..sec.lockout_threshold {
            assert_eq!(code(&run(&k.app, &k.signed(&device("wrong-1"))).await), 102);
        }
        // Now even the right password is refused from this network...
        assert_eq!(code(&run(&k.app, &k.signed(&device(PASSWORD))).await), 102);
        assert_eq!(k.app.metrics.login_failures().1, 1, "refused as locked");
        // ...but not from another one.
        let mut other = k.signed(&device(PASSWORD));
        other.client_ip = "192.0.2.1".parse().unwrap();
        assert_eq!(code(&run(&k.app, &other).await), 0);
        k.clock.advance(sec.lockout_secs as i64 - 1);
        assert_eq!(code(&run(&k.app, &k.signed(&device(PASSWORD))).await), 102);
        k.clock.advance(1);
        assert_eq!(code(&run(&k.app, &k.signed(&device(PASSWORD))).await), 0);
    }

    #[tokio::test]
    async fn guesses_from_many_networks_lock_the_account_for_every_network() {
        let k = Kit::with(|c| c.security.lockout_account_threshold = 4).await;
        k.account("lamp", AccountType::Device).await;
        for i in 0..4 {
            let mut c = k.signed(&device("wrong-1"));
            c.client_ip = format!("198.51.100.{i}").parse().unwrap();
            assert_eq!(code(&run(&k.app, &c).await), 102);
        }
        let fresh = || {
            let mut c = k.signed(&device(PASSWORD));
            c.client_ip = "203.0.113.9".parse().unwrap();
            c
        };
        assert_eq!(code(&run(&k.app, &fresh()).await), 102);
        k.clock.advance(k.app.cfg.security.lockout_secs as i64);
        assert_eq!(code(&run(&k.app, &fresh()).await), 0);
    }

    #[tokio::test]
    async fn only_the_newest_tokens_are_kept() {
        let k = Kit::with(|c| c.security.max_tokens_per_account = 2).await;
        k.account("lamp", AccountType::Device).await;
        let mut tokens = Vec::new();
        for _ in 0..3 {
            let v = run(&k.app, &k.signed(&device(PASSWORD)))
                .await
                .unwrap()
                .into_json();
            tokens.push(v["access_token"].as_str().unwrap().to_owned());
            k.clock.advance(1);
        }
        let k = &k;
        let valid = |t: &str| {
            let c = k.call(&[("access_token", t)]);
            async move { k.app.token_holder(&c).await.is_ok() }
        };
        assert!(!valid(&tokens[0]).await, "the oldest went");
        assert!(valid(&tokens[1]).await && valid(&tokens[2]).await);
    }

    #[tokio::test]
    async fn a_full_hashing_queue_answers_112_and_counts_nothing() {
        let k = Kit::with(|c| c.security.hash_queue = 1).await;
        k.account("lamp", AccountType::Device).await;
        let held = k.app.hasher.permit().unwrap();
        assert_eq!(code(&run(&k.app, &k.signed(&device("wrong-1"))).await), 112);
        assert_eq!(k.app.metrics.login_failures(), (0, 0));
        drop(held);
        assert_eq!(code(&run(&k.app, &k.signed(&device(PASSWORD))).await), 0);
    }
}
