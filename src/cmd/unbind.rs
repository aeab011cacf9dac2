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

use serde_json::Value;

use crate::app::{App, Call};
use crate::error::ApiError;
use crate::lifecycle::pair;

pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
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
    Ok(pair::outcome(failed))
}
