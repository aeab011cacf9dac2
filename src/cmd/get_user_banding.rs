//! `/get_user_banding`: the caller's roster as the XMPP server holds it.
//!
//! Each item is `{"jid", "subscriptionType", "nickname", "groups"}`, plus the peer's `user_name`
//! and `type` when the JID belongs to one of our accounts.

use serde_json::{json, Value};

use crate::app::{App, Call};
use crate::error::ApiError;

pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
    let me = app.token_owner_named(call).await?;
    let items = app
        .xmpp
        .roster(&app.party(&me)?)
        .await
        .map_err(ApiError::from_roster)?;
    let suffix = format!("@{}", app.xmpp.domain());
    let nodes: Vec<String> = items
        .iter()
        .filter_map(|i| i.jid.strip_suffix(&suffix).map(str::to_owned))
        .collect();
    let ours = app.store.accounts_by_nodes(&nodes).await?;
    let out: Vec<Value> = items
        .into_iter()
        .map(|i| {
            let mut v = json!({
                "jid": i.jid,
                "subscriptionType": i.subscription,
                "nickname": i.nickname,
                "groups": i.groups,
            });
            if let Some(a) = ours
                .iter()
                .find(|a| i.jid.strip_suffix(&suffix) == Some(a.jid_node.as_str()))
            {
                v["user_name"] = a.user_name.clone().into();
                v["type"] = a.kind.code().into();
            }
            v
        })
        .collect();
    Ok(json!({"result": 0, "roster_item": out}))
}

#[cfg(test)]
mod tests {
    use super::run;
    use crate::cmd::testkit::{code, Kit};
    use crate::lifecycle::fake_port::{Fault, Op};
    use crate::types::AccountType;

    #[tokio::test]
    async fn the_roster_names_our_accounts() {
        let k = Kit::new().await;
        let ((_, tp), (d, _)) = k.bound_pair().await;
        let c = k.call(&[("access_token", &tp), ("user_name", "p")]);
        let v = run(&k.app, &c).await.unwrap();
        assert_eq!(v["result"], 0);
        let item = &v["roster_item"][0];
        assert_eq!(item["jid"], format!("{}@kit.test", d.jid_node));
        assert_eq!(item["subscriptionType"], "both");
        assert_eq!(item["nickname"], "d");
        assert_eq!(item["groups"][0], "Device");
        assert_eq!(item["user_name"], "d");
        assert_eq!(item["type"], 2);
    }

    #[tokio::test]
    async fn server_failures_and_other_users_get_their_codes() {
        let k = Kit::new().await;
        let (_, tp) = k.account("p", AccountType::Phone).await;
        let c = k.call(&[("access_token", &tp), ("user_name", "p")]);
        assert_eq!(code(&run(&k.app, &c).await), 0);
        k.xmpp.fail_once(Op::Roster, Fault::Timeout);
        assert_eq!(code(&run(&k.app, &c).await), 9);
        k.xmpp.fail_once(Op::Roster, Fault::AuthFailed);
        assert_eq!(code(&run(&k.app, &c).await), 105);
        k.xmpp.fail_once(Op::Roster, Fault::Refused);
        assert_eq!(code(&run(&k.app, &c).await), 107);
        let other = k.call(&[("access_token", &tp), ("user_name", "q")]);
        assert_eq!(code(&run(&k.app, &other).await), 100);
        let none = k.call(&[("access_token", "nope"), ("user_name", "p")]);
        assert_eq!(code(&run(&k.app, &none).await), 4);
    }
}
