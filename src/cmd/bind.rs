//! `/set_user_banding`: make the caller and each named user mutual contacts.
//!
//! Everything is validated before anything changes: the token is `user_name`'s, each peer exists
//! (104), may pair with the caller's type (100) and is not yet bound (109). Then each pair is
//! written `binding`, bound on the XMPP server and marked `bound`; a pair that fails is rolled back
//! (or left for the reconciler) and named in `failed_ls`.

use serde_json::Value;
use xmpp::XmppError;

use crate::app::{App, Call};
use crate::error::ApiError;
use crate::store::{Account, AccountState, BindingState, StoreError};

/// Most peers one request may name.
pub const MAX_PEERS: usize = 100;

pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
    let me = app.token_owner_named(call).await?;
    let peers = super::unbind::peers(app, call, &me).await?;
    for p in &peers {
        if !me.kind.may_bind(p.kind) {
            return Err(ApiError::NotPermitted(format!(
                "type {} may not bind type {}",
                me.kind.code(),
                p.kind.code()
            )));
        }
        if app
            .store
            .binding(me.id.min(p.id), me.id.max(p.id))
            .await?
            .is_some()
        {
            return Err(ApiError::AlreadyInRoster);
        }
    }
    let mut failed: Vec<(String, ApiError)> = Vec::new();
    for p in &peers {
        if let Err(e) = bind_pair(app, &me, p).await {
            tracing::warn!(peer = %p.user_name, error = %e, "bind failed");
            failed.push((p.user_name.clone(), e));
        }
    }
    Ok(super::unbind::outcome(failed))
}

async fn bind_pair(app: &App, me: &Account, peer: &Account) -> Result<(), ApiError> {
    let (a, b) = (me.id.min(peer.id), me.id.max(peer.id));
    match app
        .store
        .insert_binding(a, b, BindingState::Binding, app.now())
        .await
    {
        Ok(()) => {}
        Err(StoreError::Exists) => return Err(ApiError::AlreadyInRoster),
        Err(e) => return Err(e.into()),
    }
    let (pa, pb) = (app.party(me)?, app.party(peer)?);
    let started = std::time::Instant::now();
    let r = app.xmpp.bind(&pa, &pb).await;
    app.metrics.xmpp_op("bind", started.elapsed(), r.is_ok());
    match r {
        // Already mutual contacts on the server (e.g. through the users' own clients): the
        // database now agrees with it.
        Ok(()) | Err(XmppError::AlreadyBound) => {
            app.store
                .set_binding_state(a, b, BindingState::Bound, app.now())
                .await?;
            Ok(())
        }
        Err(e) => {
            match app.xmpp.unbind(&pa, &pb).await {
                Ok(()) | Err(XmppError::NotBound) => app.store.delete_binding(a, b).await?,
                Err(e2) => tracing::warn!(error = %e2, "half-bound pair left for the reconciler"),
            }
            Err(ApiError::from_roster(e))
        }
    }
}

/// An active account with this name, or 104.
pub(super) fn active(found: &[Account], name: &str) -> Result<Account, ApiError> {
    found
        .iter()
        .find(|a| a.user_name == name && a.state == AccountState::Active)
        .cloned()
        .ok_or_else(|| ApiError::UserNotExist(name.to_owned()))
}
