//! `/cancel`: after the login checks, remove every binding (both rosters), delete the JID, revoke
//! every token and delete the account.
//!
//! The account is marked `deleting` and its tokens revoked in one transaction before the first
//! remote step, so the account is unusable at once and gains no new pair (a bind's insert needs
//! both accounts `active`); `lifecycle::account::finish_delete` does the remote work and is also what the reconciler runs
//! for a cancel that a crash or a lost link interrupted. Of two concurrent cancels of one account
//! one wins; the other gets 102, as any request for an account that is no longer active.

use super::reply::Reply;

use crate::app::{App, Call};
use crate::auth::login;
use crate::error::ApiError;
use crate::lifecycle::account;

pub async fn run(app: &App, call: &Call) -> Result<Reply, ApiError> {
    let (me, _) = login::authenticate(app, call, false).await?;
    if !account::begin_delete(app, &me).await? {
        return Err(ApiError::UserOrPassword);
    }
    account::finish_delete(app, &me).await?;
    tracing::info!(user = %me.user_name, "cancelled");
    Ok(Reply::done())
}

#[cfg(test)]
mod tests {
    use super::run;
    use crate::cmd::testkit::{code, credentials, Kit, PASSWORD};
    use crate::lifecycle::fake_port::{Fault, Op};
    use crate::store::{Account, AccountState};
    use crate::types::AccountType;

    const LAMP: &[(&str, &str)] = &[("user_name", "lamp"), ("password", PASSWORD), ("type", "2")];

    /// A device "lamp" bound to a phone "phone": the lamp, its token, the phone.
    async fn bound_lamp(k: &Kit) -> (Account, String, Account) {
        let (lamp, token) = k.account("lamp", AccountType::Device).await;
        let (phone, _) = k.account("phone", AccountType::Phone).await;
        k.bind(&lamp, &phone).await;
        (lamp, token, phone)
    }

    #[tokio::test]
    async fn a_cancel_unbinds_deletes_the_jid_and_the_account() {
        let k = Kit::new().await;
        let (lamp, token, phone) = bound_lamp(&k).await;
        assert_eq!(code(&run(&k.app, &k.signed(LAMP)).await), 0);
        assert!(k.named("lamp").await.is_none());
        assert!(!k.xmpp.has_account(&lamp.jid_node));
        assert!(!k.xmpp.is_bound(&lamp.jid_node, &phone.jid_node));
        assert!(k.app.store.bindings_of(phone.id).await.unwrap().is_empty());
        let c = k.call(&[("access_token", &token)]);
        assert_eq!(k.app.token_holder(&c).await.unwrap_err().code(), 4);
        // Gone: a second cancel is refused as an unknown user.
        assert_eq!(code(&run(&k.app, &k.signed(LAMP)).await), 102);
    }

    #[tokio::test]
    async fn the_login_checks_come_first() {
        let k = Kit::new().await;
        k.account("lamp", AccountType::Device).await;
        k.account("phone", AccountType::Phone).await;
        assert_eq!(code(&run(&k.app, &k.signed(&LAMP[..2])).await), 2);
        assert_eq!(code(&run(&k.app, &k.call(LAMP)).await), 6);
        let wrong = credentials("lamp", "wrong-1", "2");
        assert_eq!(code(&run(&k.app, &k.signed(&wrong)).await), 102);
        let phone = credentials("phone", PASSWORD, "1");
        assert_eq!(code(&run(&k.app, &k.call(&phone)).await), 5);
        assert_eq!(code(&run(&k.app, &k.human(&phone).await).await), 0);
        assert!(k.named("lamp").await.is_some());
    }

    #[tokio::test]
    async fn a_cancel_the_server_cannot_finish_is_left_deleting() {
        let k = Kit::new().await;
        bound_lamp(&k).await;
        k.xmpp.fail_once(Op::Unbind, Fault::Timeout);
        assert_eq!(code(&run(&k.app, &k.signed(LAMP)).await), 9);
        assert_eq!(k.named("lamp").await.unwrap().state, AccountState::Deleting);
        // Unusable at once: a new attempt answers 102.
        assert_eq!(code(&run(&k.app, &k.signed(LAMP)).await), 102);
        // The JID refusing to go answers as a provisioning failure.
        let k = Kit::new().await;
        k.account("lamp", AccountType::Device).await;
        k.xmpp.fail_once(Op::Delete, Fault::Refused);
        assert_eq!(code(&run(&k.app, &k.signed(LAMP)).await), 101);
        assert_eq!(k.named("lamp").await.unwrap().state, AccountState::Deleting);
    }

    #[tokio::test]
    async fn of_two_concurrent_cancels_one_wins() {
        let k = Kit::new().await;
        k.account("lamp", AccountType::Device).await;
        let (c1, c2) = (k.signed(LAMP), k.signed(LAMP));
        let (a, b) = tokio::join!(run(&k.app, &c1), run(&k.app, &c2));
        let mut codes = [code(&a), code(&b)];
        codes.sort();
        assert_eq!(codes, [0, 102]);
    }
}
