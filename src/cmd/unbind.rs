//! `/set_user_unbanding`: remove the caller and each named user from each other's rosters.
//!
//! Either account of a pair may unbind it, and only they: the caller is the owner of
//! `access_token`, who must be `user_name` (else 100), and each name must be bound to the caller
//! (else 110, also for a name that does not exist, so that unbinding is no way to learn which
//! names do). With `all=1` (a device after a factory reset) every pair of the caller is unbound,
//! and `user_name_ls` may be left out.
//!
//! Each pair goes `bound` → `unbinding` before the server is touched and its row is deleted after;
//! an unbind the server could not finish keeps its `unbinding` row and the reconciler completes it.

use super::reply::{self, Reply};

use crate::app::{App, Call};
use crate::error::ApiError;
use crate::lifecycle::pair;

pub async fn run(app: &App, call: &Call) -> Result<Reply, ApiError> {
    let me = app.token_owner_named(call).await?;
    let peers = match call.get("all") {
        Some("1") | Some("true") => {
            // A factory reset: the codes the device showed before it bind nobody any more.
            app.store.void_bind_tokens(me.id).await?;
            pair::bound_peers(app, &me).await?
        }
        None | Some("") | Some("0") | Some("false") => {
            match pair::named_peers(app, call, &me).await {
                // With bind tokens, an unknown name answers as a name one is not bound to: the
                // reply does not tell which names exist. `consent = "none"` keeps the seed's 104.
                Err(ApiError::UserNotExist(_)) if app.cfg.binding.consent != "none" => {
                    return Err(ApiError::NotInRoster)
                }
                r => r?,
            }
        }
        Some(_) => return Err(ApiError::Params("all must be 1 or 0".into())),
    };
    for p in &peers {
        if !pair::is_bound(app, me.id, p.id).await? {
            return Err(ApiError::NotInRoster);
        }
    }
    let mut failed = Vec::new();
    for p in &peers {
        if let Err(e) = pair::unbind(app, &me, p).await {
            tracing::warn!(peer = %p.user_name, error = %e, "unbind failed");
            failed.push((p.user_name.clone(), e));
        }
    }
    Ok(reply::outcome(failed))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::run;
    use crate::cmd::testkit::{code, Kit};
    use crate::lifecycle::fake_port::{Fault, Op};
    use crate::lifecycle::pair::{self, PairKey};
    use crate::store::BindingState;
    use crate::types::AccountType;

    async fn unbind_as_d(k: &Kit, td: &str, extra: &[(&str, &str)]) -> i64 {
        code(&run(&k.app, &k.signed_as(td, "d", extra)).await)
    }

    /// [`unbind_as_d`] of the names in `list` (a JSON array).
    async fn unbind_names(k: &Kit, td: &str, list: &str) -> i64 {
        unbind_as_d(k, td, &[("user_name_ls", list)]).await
    }

    #[tokio::test]
    async fn unbinding_clears_both_rosters_and_the_row() {
        let (k, (p, _), (d, td)) = Kit::with_bound_pair().await;
        assert_eq!(unbind_names(&k, &td, r#"["p"]"#).await, 0);
        assert!(!k.xmpp.is_bound(&p.jid_node, &d.jid_node));
        assert!(pair::row(&k.app, PairKey::of(p.id, d.id))
            .await
            .unwrap()
            .is_none());
        assert_eq!(unbind_names(&k, &td, r#"["p"]"#).await, 110);
    }

    #[tokio::test]
    async fn names_not_bound_or_unknown_answer_110_and_other_errors_their_code() {
        let k = Kit::new().await;
        let (_, (_, td)) = k.bound_pair().await;
        k.account("p2", AccountType::Phone).await;
        for names in [r#"["p2"]"#, r#"["zz"]"#] {
            assert_eq!(unbind_names(&k, &td, names).await, 110);
        }
        assert_eq!(unbind_as_d(&k, &td, &[("all", "maybe")]).await, 2);
        assert_eq!(unbind_as_d(&k, &td, &[]).await, 2);
        assert_eq!(unbind_as_d(&k, "nope", &[("all", "1")]).await, 4);
        let c = k.signed(&[("access_token", &td), ("user_name", "p"), ("all", "1")]);
        assert_eq!(code(&run(&k.app, &c).await), 100);
        // The seed's 104 for an unknown name when bind tokens are off.
        let k = Kit::with(|c| c.binding.consent = "none".into()).await;
        let (_, (_, td)) = k.bound_pair().await;
        assert_eq!(unbind_names(&k, &td, r#"["zz"]"#).await, 104);
    }

    #[tokio::test]
    async fn all_unbinds_every_pair_and_voids_bind_tokens() {
        let (k, (p, _), (d, td)) = Kit::with_bound_pair().await;
        let (p2, _) = k.account("p2", AccountType::Phone).await;
        k.bind(&d, &p2).await;
        let t = k.bind_token("d", &td, "").await;
        assert_eq!(unbind_as_d(&k, &td, &[("all", "1")]).await, 0);
        assert!(!k.xmpp.is_bound(&p.jid_node, &d.jid_node));
        assert!(!k.xmpp.is_bound(&p2.jid_node, &d.jid_node));
        let hash = crate::auth::crypto::token_hash(&t);
        let found = k.app.store.bind_token(hash, k.app.now()).await.unwrap();
        assert!(found.is_none(), "voided");
    }

    #[tokio::test]
    async fn an_unbind_the_server_did_not_finish_stays_for_the_reconciler() {
        let (k, (p, _), (d, td)) = Kit::with_bound_pair().await;
        k.xmpp.fail_once(Op::Unbind, Fault::Timeout);
        let c = k.signed_as(&td, "d", &[("user_name_ls", r#"["p"]"#)]);
        let v = run(&k.app, &c).await.unwrap().into_json();
        assert_eq!(v, json!({"result": 9, "failed_ls": ["p"]}));
        let row = pair::row(&k.app, PairKey::of(p.id, d.id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.state, BindingState::Unbinding);
        let rep = crate::lifecycle::reconcile::run(&k.app, k.app.now() + 1, &mut |_, _| {})
            .await
            .unwrap();
        assert_eq!(rep.unbinds_finished, 1);
        assert!(pair::row(&k.app, PairKey::of(p.id, d.id))
            .await
            .unwrap()
            .is_none());
    }
}
