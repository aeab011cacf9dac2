//! `/renew_jid_pwd`: a new XMPP password for the token owner's JID, set on the XMPP server,
//! stored (sealed like every `jid_pwd`) and returned; the old one no longer logs in.
//!
//! Crash safety: the new password is stored as *pending* before the XMPP server is asked to
//! change it, and replaces `jid_pwd` only once the server has it. A crash, a timeout or an error
//! in between leaves the pending one in the database: the next `/renew_jid_pwd` of the account
//! sets that same password again (setting the password an account already has succeeds) and
//! commits it, so the account never has a password on the server that the service does not know.
//! Two concurrent renewals set and return the same password.

use serde::Serialize;

use super::reply::Reply;

use crate::app::{App, Call};
use crate::auth::crypto;
use crate::error::ApiError;
use crate::lifecycle::account::new_jid_password;

/// The reply: the new XMPP password.
#[derive(Serialize)]
struct Renewed {
    jid_pwd: String,
}

pub async fn run(app: &App, call: &Call) -> Result<Reply, ApiError> {
    let me = app.token_owner_named(call).await?;
    let current = app.jid_pwd(&me)?;
    let fresh = crypto::seal(
        &app.secrets.encryption_key,
        &me.jid_node,
        &new_jid_password(),
    );
    // Stored before the server hears of it; an interrupted renewal's password is taken up.
    let pending = app
        .jid_pwds
        .begin_jid_pwd(me.id, fresh, app.now())
        .await?
        // Cancelled meanwhile.
        .ok_or(ApiError::AccessToken)?;
    let new =
        crypto::open(&app.secrets.encryption_key, &me.jid_node, &pending).ok_or(ApiError::NoJid)?;
    let changed = match app.xmpp.set_password(&me.jid_node, &current, &new).await {
        // Over c2s the old password no longer logs in when an interrupted renewal had already
        // changed it: log in with the pending one, which the server then has.
        Err(xmpp::XmppError::AuthFailed) => app.xmpp.set_password(&me.jid_node, &new, &new).await,
        other => other,
    };
    changed.map_err(ApiError::from_roster)?;
    // False when a concurrent renewal committed the same password first.
    app.jid_pwds
        .commit_jid_pwd(me.id, pending, app.now())
        .await?;
    tracing::info!(user = %me.user_name, "XMPP password renewed");
    Ok(Reply::ok(Renewed { jid_pwd: new }))
}

#[cfg(test)]
mod tests {
    use super::run;
    use crate::cmd::testkit::{code, Kit};
    use crate::error::ApiError;
    use crate::lifecycle::fake_port::{Fault, Op};
    use crate::types::AccountType;

    fn renewed(r: &Result<super::Reply, ApiError>) -> String {
        let v = r.as_ref().unwrap().clone().into_json();
        v["jid_pwd"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn a_renewal_sets_stores_and_returns_a_new_password() {
        let k = Kit::new().await;
        let (a, token) = k.account("lamp", AccountType::Device).await;
        let old = k.app.jid_pwd(&a).unwrap();
        let p = [("access_token", token.as_str()), ("user_name", "lamp")];
        let new = renewed(&run(&k.app, &k.signed(&p)).await);
        assert_ne!(new, old);
        assert_eq!(k.xmpp.password_of(&a.jid_node), Some(new.clone()));
        let stored = k.named("lamp").await.unwrap();
        assert_eq!(k.app.jid_pwd(&stored).unwrap(), new);
    }

    #[tokio::test]
    async fn an_interrupted_renewal_is_finished_with_the_same_password() {
        let k = Kit::new().await;
        let (a, token) = k.account("lamp", AccountType::Device).await;
        let old = k.app.jid_pwd(&a).unwrap();
        let p = [("access_token", token.as_str()), ("user_name", "lamp")];
        k.xmpp.fail_once(Op::SetPassword, Fault::Timeout);
        let r = run(&k.app, &k.signed(&p)).await;
        assert_eq!(code(&r), ApiError::Timeout.code());
        assert_eq!(k.xmpp.password_of(&a.jid_node), Some(old.clone()));
        assert_eq!(k.app.jid_pwd(&k.named("lamp").await.unwrap()).unwrap(), old);
        let first = renewed(&run(&k.app, &k.signed(&p)).await);
        assert_eq!(k.xmpp.password_of(&a.jid_node), Some(first.clone()));
        // The pending one was taken up, and a later renewal draws a fresh one.
        let second = renewed(&run(&k.app, &k.signed(&p)).await);
        assert_ne!(second, first);
    }

    #[tokio::test]
    async fn a_wrong_token_or_name_changes_nothing() {
        let k = Kit::new().await;
        let (a, token) = k.account("lamp", AccountType::Device).await;
        k.account("other", AccountType::Device).await;
        let wrong = [("access_token", "nope"), ("user_name", "lamp")];
        assert_eq!(code(&run(&k.app, &k.signed(&wrong)).await), 4);
        let stranger = [("access_token", token.as_str()), ("user_name", "other")];
        let not_yours = ApiError::NotPermitted(String::new()).code();
        assert_eq!(code(&run(&k.app, &k.signed(&stranger)).await), not_yours);
        assert_eq!(k.xmpp.calls(Op::SetPassword), 0);
        assert_eq!(
            k.xmpp.password_of(&a.jid_node),
            Some(k.app.jid_pwd(&a).unwrap())
        );
    }
}
