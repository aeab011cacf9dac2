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

use std::sync::Arc;

use serde_json::{json, Value};
use xmpp::XmppError;

use crate::app::{App, Call};
use crate::error::ApiError;
use crate::store::{Account, AccountState, BindingState};
use crate::types::user_name_list;

pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
    let me = app.token_owner_named(call).await?;
    let peers = match call.get("all") {
        Some("1") | Some("true") => {
            // A factory reset: the codes the device showed before it bind nobody any more.
            app.store.void_bind_tokens(me.id).await?;
            bound_peers(app, &me).await?
        }
        None | Some("") | Some("0") | Some("false") => match peers(app, call, &me).await {
            // With bind tokens, an unknown name answers as a name one is not bound to: the
            // reply does not tell which names exist. `consent = "none"` keeps the seed's 104.
            Err(ApiError::UserNotExist(_)) if app.cfg.binding.consent != "none" => {
                return Err(ApiError::NotInRoster)
            }
            r => r?,
        },
        Some(_) => return Err(ApiError::Params("all must be 1 or 0".into())),
    };
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

/// Every account bound to `me` (pairs still being bound or unbound are left to their operation).
async fn bound_peers(app: &App, me: &Account) -> Result<Vec<Arc<Account>>, ApiError> {
    let mut out = Vec::new();
    for b in app.store.bindings_of(me.id).await? {
        if b.state != BindingState::Bound {
            continue;
        }
        let other = if b.a == me.id { b.b } else { b.a };
        // A peer being cancelled is left to its cancel, which removes the pair.
        match app.store.account_by_id(other).await? {
            Some(a) if a.state == AccountState::Active => out.push(Arc::new(a)),
            _ => {}
        }
    }
    Ok(out)
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
