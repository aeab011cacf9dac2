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
