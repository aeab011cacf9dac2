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
//!
//! One renewal per account at a time: the pending password is claimed (by a request or the
//! reconciler) and, while the claim is younger than `account::renewal_lease_secs`, another
//! renewal answers 112; a renewal overtaken all the same (its claim lapsed on a slow server)
//! sets the stored password again. Then every XMPP session of the account is ended, so nothing
//! stays logged in with the old password (where the server allows it; a refusal is logged and
//! counted, and the renewal still succeeds). The interleavings are in `account::finish_renewal`.

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
    use crate::auth::crypto;
    use crate::cmd::testkit::{code, Kit};
    use crate::error::ApiError;
    use crate::lifecycle::account::renewal_lease_secs;
    use crate::lifecycle::fake_port::{Fault, Op};
    use crate::lifecycle::reconcile;
    use crate::store::Account;
    use crate::types::AccountType;

    fn renewed(r: &Result<super::Reply, ApiError>) -> String {
        let v = r.as_ref().unwrap().clone().into_json();
        v["jid_pwd"].as_str().unwrap().to_owned()
    }

    /// A kit with device "lamp": the kit, the account, its token and its first `jid_pwd`.
    async fn lamp() -> (Kit, Account, String, String) {
        let k = Kit::new().await;
        let (a, token) = k.account("lamp", AccountType::Device).await;
        let old = k.app.jid_pwd(&a).unwrap();
        (k, a, token, old)
    }

    /// A signed `/renew_jid_pwd` of "lamp" with `token`.
    async fn renew(k: &Kit, token: &str) -> Result<super::Reply, ApiError> {
        run(
            &k.app,
            &k.signed(&[("access_token", token), ("user_name", "lamp")]),
        )
        .await
    }

    /// What the store says "lamp"'s password is, which `/login` hands out.
    async fn stored(k: &Kit) -> String {
        k.app.jid_pwd(&k.named("lamp").await.unwrap()).unwrap()
    }

    /// The server and the store agree, and nothing is left pending: `/login` hands out the
    /// password the server has.
    async fn agreed(k: &Kit, a: &Account) -> String {
        let s = stored(k).await;
        assert_eq!(k.xmpp.password_of(&a.jid_node), Some(s.clone()));
        let left = k.app.jid_pwds.pending_jid_pwds(i64::MAX).await.unwrap();
        assert!(left.is_empty(), "left pending: {left:?}");
        s
    }

    /// R1 renews and hangs in its server change; meanwhile its claim lapses, R2 takes its
    /// password P1 up and commits it, and R3 sets and commits P2; then R1's change of P1 lands,
    /// and R1's next call to the server meets `then` (if any). R1's answer, and P2.
    async fn overtaken(
        k: &Kit,
        token: &str,
        then: Option<Fault>,
    ) -> (Result<super::Reply, ApiError>, String) {
        k.xmpp.fail_once(Op::SetPassword, Fault::Hang);
        tokio::join!(renew(k, token), async {
            k.xmpp.hung(1).await;
            k.clock.advance(renewal_lease_secs(&k.app) + 1);
            let p1 = renewed(&renew(k, token).await);
            let p2 = renewed(&renew(k, token).await);
            assert_ne!(p1, p2);
            assert_eq!(stored(k).await, p2);
            if let Some(f) = then {
                k.xmpp.fail_once(Op::SetPassword, f);
            }
            k.xmpp.release();
            p2
        })
    }

    #[tokio::test]
    async fn a_renewal_sets_stores_and_returns_a_new_password() {
        let (k, a, token, old) = lamp().await;
        let new = renewed(&renew(&k, &token).await);
        assert_ne!(new, old);
        assert_eq!(agreed(&k, &a).await, new);
    }

    #[tokio::test]
    async fn an_interrupted_renewal_is_finished_with_the_same_password() {
        let (k, a, token, old) = lamp().await;
        k.xmpp.fail_once(Op::SetPassword, Fault::Timeout);
        let r = renew(&k, &token).await;
        assert_eq!(code(&r), ApiError::Timeout.code());
        assert_eq!(k.xmpp.password_of(&a.jid_node), Some(old.clone()));
        assert_eq!(stored(&k).await, old);
        // Within the claim another renewal is refused; after it, the pending one is taken up.
        assert_eq!(code(&renew(&k, &token).await), 112);
        k.clock.advance(renewal_lease_secs(&k.app) + 1);
        let first = renewed(&renew(&k, &token).await);
        assert_eq!(agreed(&k, &a).await, first);
        // The pending one was taken up, and a later renewal draws a fresh one.
        let second = renewed(&renew(&k, &token).await);
        assert_ne!(second, first);
    }

    #[tokio::test]
    async fn a_wrong_token_or_name_changes_nothing() {
        let (k, a, token, old) = lamp().await;
        k.account("other", AccountType::Device).await;
        assert_eq!(code(&renew(&k, "nope").await), 4);
        let stranger = [("access_token", token.as_str()), ("user_name", "other")];
        let not_yours = ApiError::NotPermitted(String::new()).code();
        assert_eq!(code(&run(&k.app, &k.signed(&stranger)).await), not_yours);
        assert_eq!(k.xmpp.calls(Op::SetPassword), 0);
        assert_eq!(k.xmpp.password_of(&a.jid_node), Some(old));
    }

    /// Two renewals at once: the second is refused with 112 while the first is still setting its
    /// password, and changes nothing; the first ends with server and store agreeing.
    #[tokio::test]
    async fn a_second_renewal_while_one_is_under_way_is_busy() {
        let (k, a, token, old) = lamp().await;
        k.xmpp.fail_once(Op::SetPassword, Fault::Hang);
        let (first, ()) = tokio::join!(renew(&k, &token), async {
            k.xmpp.hung(1).await;
            assert_eq!(code(&renew(&k, &token).await), 112);
            assert_eq!(k.xmpp.calls(Op::SetPassword), 1, "the second set nothing");
            assert_eq!(stored(&k).await, old);
            k.xmpp.release();
        });
        let first = renewed(&first);
        assert_eq!(agreed(&k, &a).await, first);
    }

    /// The review's interleaving: R1's change of P1 is so slow that its claim lapses; R2 takes
    /// P1 up and commits it; R3 sets and commits P2; then R1's change of P1 lands on the server
    /// last. R1's commit finds the row moved on, and R1 sets the stored P2 again: the server and
    /// the store agree on P2, and R1 answers P2 (what the account now has).
    #[tokio::test]
    async fn a_slow_change_that_lands_after_a_newer_renewal_is_undone() {
        let (k, a, token, _) = lamp().await;
        let (r1, p2) = overtaken(&k, &token, None).await;
        assert_eq!(renewed(&r1), p2);
        assert_eq!(agreed(&k, &a).await, p2);
        // R1's late change, then its setting P2 again.
        assert_eq!(k.xmpp.calls(Op::SetPassword), 4);
    }

    /// The same, with setting the stored password again failing too: it stays pending, so the
    /// reconciler (not a request's luck) brings the server back to what the store says.
    #[tokio::test]
    async fn a_failed_repair_after_a_lost_race_is_left_for_the_reconciler() {
        let (k, a, token, _) = lamp().await;
        // R1's setting P2 again times out.
        let (r1, p2) = overtaken(&k, &token, Some(Fault::Timeout)).await;
        assert_eq!(code(&r1), ApiError::Timeout.code());
        assert_ne!(
            k.xmpp.password_of(&a.jid_node),
            Some(p2.clone()),
            "R1 landed last"
        );
        assert_eq!(stored(&k).await, p2);
        k.clock.advance(renewal_lease_secs(&k.app) + 1);
        let rep = reconcile::run(&k.app, k.app.now(), &mut |_, _| {})
            .await
            .unwrap();
        assert_eq!(rep.renewals_finished, 1, "{rep:?}");
        assert_eq!(agreed(&k, &a).await, p2);
    }

    /// The reconciler against a request: the reconciler claims an old pending P1 and is slow; a
    /// request meanwhile is busy; once the claim lapses the request takes P1 up, a newer one sets
    /// P2, and the reconciler's late P1 is undone by the reconciler itself.
    #[tokio::test]
    async fn the_reconciler_and_a_request_end_agreeing() {
        let (k, a, token, _) = lamp().await;
        let sealed = crypto::seal(
            &k.app.secrets.encryption_key,
            &a.jid_node,
            "pending-p1-0000000001",
        );
        let now = k.app.now();
        let begun = k
            .app
            .jid_pwds
            .begin_jid_pwd(a.id, Some(sealed), now, now)
            .await;
        assert!(matches!(
            begun,
            Ok(crate::store::jid_pwd::Begun::Pending(_))
        ));
        k.clock.advance(renewal_lease_secs(&k.app) + 1);
        k.xmpp.fail_once(Op::SetPassword, Fault::Hang);
        let reconciled = async {
            reconcile::run(&k.app, k.app.now(), &mut |_, _| {})
                .await
                .unwrap()
        };
        let (rep, p2) = tokio::join!(reconciled, async {
            k.xmpp.hung(1).await;
            assert_eq!(
                code(&renew(&k, &token).await),
                112,
                "the reconciler holds it"
            );
            k.clock.advance(renewal_lease_secs(&k.app) + 1);
            let p1 = renewed(&renew(&k, &token).await);
            assert_eq!(p1, "pending-p1-0000000001");
            let p2 = renewed(&renew(&k, &token).await);
            k.xmpp.release();
            p2
        });
        assert_eq!((rep.renewals_finished, rep.failed), (1, 0), "{rep:?}");
        assert_eq!(agreed(&k, &a).await, p2);
    }

    /// The old password's sessions are ended after the change; when the server refuses that,
    /// the renewal still succeeds (the password has changed) and the failure is counted.
    #[tokio::test]
    async fn sessions_are_ended_and_a_refusal_does_not_fail_the_renewal() {
        let (k, a, token, _) = lamp().await;
        renewed(&renew(&k, &token).await);
        assert_eq!(k.xmpp.calls(Op::EndSessions), 1);
        k.xmpp.fail_once(Op::EndSessions, Fault::Refused);
        let new = renewed(&renew(&k, &token).await);
        assert_eq!(k.xmpp.calls(Op::EndSessions), 2);
        assert_eq!(agreed(&k, &a).await, new);
        let m = k.app.metrics.render(Default::default());
        for needle in [
            "register_xmpp_operations_total{op=\"end_sessions\",ok=\"true\"} 1",
            "register_xmpp_operations_total{op=\"end_sessions\",ok=\"false\"} 1",
        ] {
            assert!(m.contains(needle), "missing {needle} in\n{m}");
        }
    }
}
