//! `/get_user_banding`: the caller's roster as the XMPP server holds it.
//!
//! Each item is `{"jid", "subscriptionType", "nickname", "groups"}`, plus the peer's `user_name`
//! and `type` when the JID belongs to one of our accounts.

use serde::Serialize;

use super::reply::Reply;
use crate::app::{App, Call};
use crate::error::ApiError;

#[derive(Serialize)]
struct Roster {
    roster_item: Vec<Item>,
}

#[derive(Serialize)]
struct Item {
    jid: String,
    #[serde(rename = "subscriptionType")]
    subscription: String,
    nickname: String,
    groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_name: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<i64>,
}

pub async fn run(app: &App, call: &Call) -> Result<Reply, ApiError> {
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
    let roster_item = items
        .into_iter()
        .map(|i| {
            let node = i.jid.strip_suffix(&suffix);
            let a = ours.iter().find(|a| node == Some(a.jid_node.as_str()));
            Item {
                user_name: a.map(|a| a.user_name.clone()),
                kind: a.map(|a| a.kind.code()),
                jid: i.jid,
                subscription: i.subscription,
                nickname: i.nickname,
                groups: i.groups,
            }
        })
        .collect();
    Ok(Reply::ok(Roster { roster_item }))
}

#[cfg(test)]
mod tests {
    use super::run;
    use crate::cmd::testkit::{code, Kit};
    use crate::lifecycle::fake_port::{Fault, Op};
    use crate::types::AccountType;

    #[tokio::test]
    async fn the_roster_names_our_accounts() {
        let (k, (_, tp), (d, _)) = Kit::with_bound_pair().await;
        let c = k.call(&[("access_token", &tp), ("user_name", "p")]);
        let v = run(&k.app, &c).await.unwrap().into_json();
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
        let (k, _, tp) = Kit::with_account("p", AccountType::Phone).await;
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
