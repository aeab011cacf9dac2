//! `/change_password`: the token's owner proves the old password through the login checks
//! (a captcha for phones, a signature for devices, the counted verification and its lock-out),
//! then the new password's Argon2id hash replaces the old one and every token of the account is
//! revoked, the one used included, in one transaction. The client logs in again.
//!
//! A wrong old password is a failed login like any other: it counts toward the lock-out of the
//! caller's network and of the account, so a stolen token does not give an unlimited guessing
//! oracle for the password.

use super::reply::Reply;

use crate::app::{App, Call};
use crate::auth::login;
use crate::error::ApiError;
use crate::types::{Password, UserName};

pub async fn run(app: &App, call: &Call) -> Result<Reply, ApiError> {
    // Parameters first: a malformed request spends no captcha and counts nothing.
    let name = UserName::parse(call.required("user_name")?)?;
    let old = call.required("old_password")?.to_owned();
    let new = Password::parse(call.required("new_password")?)?;
    let (me, _) = app.token_holder(call).await?;
    if me.user_name != name.as_str() {
        return Err(ApiError::NotPermitted(
            "access_token belongs to another user".into(),
        ));
    }
    // The signature (devices) and the captcha (phones) are checked here, once.
    let account = login::verify_password(app, call, &me.user_name, me.kind, old, false).await?;
    let hash = app.hasher.hash(new.as_str().to_owned()).await?;
    if !app.store.set_password(account.id, hash, app.now()).await? {
        // Cancelled meanwhile.
        return Err(ApiError::UserOrPassword);
    }
    tracing::info!(user = %account.user_name, "password changed; every token revoked");
    Ok(Reply::done())
}

#[cfg(test)]
mod tests {
    use super::run;
    use crate::cmd::testkit::{code, Kit, PASSWORD};
    use crate::types::AccountType;

    fn params<'a>(token: &'a str, old: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("access_token", token),
            ("user_name", "lamp"),
            ("old_password", old),
            ("new_password", "password2"),
        ]
    }

    #[tokio::test]
    async fn a_new_password_revokes_every_token() {
        let (k, a, token) = Kit::with_account("lamp", AccountType::Device).await;
        let other = k.token(a.id).await;
        assert_eq!(
            code(&run(&k.app, &k.signed(&params(&token, PASSWORD))).await),
            0
        );
        for t in [&token, &other] {
            let c = k.call(&[("access_token", t)]);
            assert_eq!(k.app.token_holder(&c).await.unwrap_err().code(), 4);
        }
        let login = [
            ("user_name", "lamp"),
            ("password", "password2"),
            ("type", "2"),
        ];
        let r = crate::auth::login::authenticate(&k.app, &k.signed(&login), true).await;
        assert!(r.is_ok(), "{:?}", r.err());
    }

    #[tokio::test]
    async fn tokens_parameters_and_proofs_are_checked() {
        let (k, _, token) = Kit::with_account("lamp", AccountType::Device).await;
        let (_, other) = k.account("phone", AccountType::Phone).await;
        let mut short = params(&token, PASSWORD);
        short[3].1 = "short";
        assert_eq!(code(&run(&k.app, &k.signed(&short)).await), 2);
        assert_eq!(
            code(&run(&k.app, &k.signed(&params("nope", PASSWORD))).await),
            4
        );
        assert_eq!(
            code(&run(&k.app, &k.signed(&params(&other, PASSWORD))).await),
            100
        );
        assert_eq!(
            code(&run(&k.app, &k.call(&params(&token, PASSWORD))).await),
            6
        );
        // A phone answers a captcha instead.
        let mut phone = params(&other, PASSWORD);
        phone[1].1 = "phone";
        assert_eq!(code(&run(&k.app, &k.call(&phone)).await), 5);
        assert_eq!(code(&run(&k.app, &k.human(&phone).await).await), 0);
    }

    #[tokio::test]
    async fn a_wrong_old_password_counts_toward_the_lock_out() {
        let (k, _, token) = Kit::with_account("lamp", AccountType::Device).await;
        for _ in 0..k.app.cfg.security.lockout_threshold {
            assert_eq!(
                code(&run(&k.app, &k.signed(&params(&token, "wrong-1"))).await),
                102
            );
        }
        assert_eq!(
            code(&run(&k.app, &k.signed(&params(&token, PASSWORD))).await),
            102
        );
        k.clock.advance(k.app.cfg.security.lockout_secs as i64);
        assert_eq!(
            code(&run(&k.app, &k.signed(&params(&token, PASSWORD))).await),
            0
        );
    }
}
