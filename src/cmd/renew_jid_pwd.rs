//! `/renew_jid_pwd`: a new XMPP password for the token owner's JID, set on the XMPP server,
//! stored (sealed like every `jid_pwd`) and returned; the old one no longer logs in.
//!
//! Crash safety: the new password is stored as *pending* before the XMPP server is asked to
//! change it, and replaces `jid_pwd` only once the server has it. A crash, a timeout or an error
//! in between leaves the pending one in the database: the next `/renew_jid_pwd` of the account
//! sets that same password again (setting the password an account already has succeeds) and
//! commits it, and so does the reconciler (`lifecycle::reconcile`, at start and then
//! periodically), so the account never has a password on the server that the service does not
//! know, and `/login` hands out the server's password again by the next reconciler run.
//! Two concurrent renewals set and return the same password.

use serde::Serialize;

use super::reply::Reply;

use crate::app::{App, Call};
use crate::error::ApiError;
use crate::lifecycle::account;

/// The reply: the new XMPP password.
#[derive(Serialize)]
struct Renewed {
    jid_pwd: String,
}

pub async fn run(app: &App, call: &Call) -> Result<Reply, ApiError> {
    let me = app.token_owner_named(call).await?;
    let jid_pwd = account::renew_jid_pwd(app, &me).await?;
    tracing::info!(user = %me.user_name, "XMPP password renewed");
    Ok(Reply::ok(Renewed { jid_pwd }))
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
