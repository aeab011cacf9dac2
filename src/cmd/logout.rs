//! `/logout`: revoke the access token used, at once (over HTTPS and over TCP: the token cache
//! forgets the account through its change hook, as for `/cancel`).

use super::reply::Reply;

use crate::app::{App, Call};
use crate::auth::crypto;
use crate::error::ApiError;

pub async fn run(app: &App, call: &Call) -> Result<Reply, ApiError> {
    let me = app.token_owner_named(call).await?;
    // `token_owner_named` found the token, so it is present.
    let token = call.required("access_token")?;
    // False only when a concurrent logout or password change revoked it first: gone either way.
    app.store
        .revoke_token(me.id, crypto::token_hash(token))
        .await?;
    tracing::info!(user = %me.user_name, "logged out");
    Ok(Reply::done())
}

#[cfg(test)]
mod tests {
    use super::run;
    use crate::cmd::testkit::{code, Kit};
    use crate::types::AccountType;

    #[tokio::test]
    async fn logout_revokes_only_the_token_used() {
        let (k, a, token) = Kit::with_account("lamp", AccountType::Device).await;
        let kept = k.token(a.id).await;
        let p = [("access_token", token.as_str()), ("user_name", "lamp")];
        assert_eq!(code(&run(&k.app, &k.signed(&p)).await), 0);
        assert_eq!(code(&run(&k.app, &k.signed(&p)).await), 4, "revoked");
        let c = k.call(&[("access_token", &kept)]);
        assert!(k.app.token_holder(&c).await.is_ok());
    }

    #[tokio::test]
    async fn logout_checks_the_token_its_owner_and_the_signature() {
        let (k, _, token) = Kit::with_account("lamp", AccountType::Device).await;
        k.account("phone", AccountType::Phone).await;
        assert_eq!(
            code(&run(&k.app, &k.signed(&[("access_token", &token)])).await),
            2
        );
        let other = [("access_token", token.as_str()), ("user_name", "phone")];
        assert_eq!(code(&run(&k.app, &k.signed(&other)).await), 100);
        let mine = [("access_token", token.as_str()), ("user_name", "lamp")];
        assert_eq!(code(&run(&k.app, &k.call(&mine)).await), 6, "devices sign");
        k.clock.advance(k.app.cfg.security.token_ttl_secs as i64);
        assert_eq!(code(&run(&k.app, &k.signed(&mine)).await), 4, "expired");
    }
}
