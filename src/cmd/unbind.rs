//! `/set_user_unbanding`: remove the caller and each named user from each other's rosters.
//!
//! Each pair goes `bound` → `unbinding` before the server is touched and its row is deleted after;
//! an unbind the server could not finish keeps its `unbinding` row and the reconciler completes it.

use std::sync::Arc;

use serde_json::{json, Value};
use xmpp::XmppError;

use crate::app::{App, Call};
use crate::error::ApiError;
use crate::store::{Account, BindingState};
use crate::types::user_name_list;

pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
    let me = app.token_owner_named(call).await?;
    let peers = peers(app, call, &me).await?;
    for p in &peers {
        match app.store.binding(me.id.min(p.id), me.id.max(p.id)).await? {
            Some(b) if b.state == BindingState::Bound => {}
            _ => return Err(ApiError::NotInRoster),
        }
    }
    let mut failed = Vec::new();
    for p in &peers {
        if let Err(e) = unbind_pair(app, &me, p).await {
            tracing::warn!(peer = %p.user_name, error = %e, "unbind failed");
            failed.push((p.user_name.clone(), e));
        }
    }
    Ok(outcome(failed))
}

async fn unbind_pair(app: &App, me: &Account, peer: &Account) -> Result<(), ApiError> {
    let (a, b) = (me.id.min(peer.id), me.id.max(peer.id));
    // The record, by compare-and-set: of two concurrent unbinds of a pair one moves it to
    // `unbinding`, the other gets 110.
    if !app
        .store
        .transition_binding(
            a,
            b,
            BindingState::Bound,
            BindingState::Unbinding,
            app.now(),
        )
        .await?
    {
        return Err(ApiError::NotInRoster);
    }
    let started = std::time::Instant::now();
    let r = app.xmpp.unbind(&app.party(me)?, &app.party(peer)?).await;
    app.metrics.xmpp_op("unbind", started.elapsed(), r.is_ok());
    match r {
        Ok(()) | Err(XmppError::NotBound) => {
            app.store
                .delete_binding_in(a, b, BindingState::Unbinding)
                .await?;
            Ok(())
        }
        // The `unbinding` row stays: the reconciler finishes the unbind.
        Err(e) => Err(ApiError::from_roster(e)),
    }
}

/// The active accounts named in `user_name_ls` (104 for the first missing; 2 for the caller).
pub(super) async fn peers(
    app: &App,
    call: &Call,
    me: &Account,
) -> Result<Vec<Arc<Account>>, ApiError> {
    let names = user_name_list(call.required("user_name_ls")?, super::bind::MAX_PEERS)?;
    let wanted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    if wanted.contains(&me.user_name) {
        return Err(ApiError::Params("a user cannot bind to itself".into()));
    }
    let found = app.store.accounts_by_names(&wanted).await?;
    wanted
        .iter()
        .map(|n| super::bind::active(&found, n))
        .collect()
}

/// The reply of a bind or unbind: 0, or the first failure's code with every failed name.
pub(super) fn outcome(failed: Vec<(String, ApiError)>) -> Value {
    match failed.first() {
        None => json!({"result": 0}),
        Some((_, e)) => json!({
            "result": e.code(),
            "failed_ls": failed.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        }),
    }
}
