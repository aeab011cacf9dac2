//! `/set_user_banding`: make the caller and each named user mutual contacts.
//!
//! Everything is validated before anything changes: the token is `user_name`'s, each peer exists
//! (104), may pair with the caller's type (100) and is not yet bound (109). Then each pair is
//! written `binding`, bound on the XMPP server and marked `bound`; a pair that fails is rolled back
//! (or left for the reconciler) and named in `failed_ls`.
//!
//! `bound` is set by compare-and-set from `binding`, and only then is the pair answered with 0; a
//! pair whose row a cancel or the reconciler claimed meanwhile is rolled back instead.

use std::sync::Arc;

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
    let (pa, pb) = (app.party(me)?, app.party(peer)?);
    // The record: the primary key lets one of two concurrent binds of a pair in (the other gets
    // 109), and the insert is refused when either account stopped being active (a cancel began).
    match app
        .store
        .insert_binding(a, b, BindingState::Binding, app.now())
        .await
    {
        Ok(()) => {}
        Err(StoreError::Exists) => return Err(ApiError::AlreadyInRoster),
        Err(StoreError::Changed) => return Err(interrupted(app, me, peer).await),
        Err(e) => return Err(e.into()),
    }
    let started = std::time::Instant::now();
    let r = app.xmpp.bind(&pa, &pb).await;
    app.metrics.xmpp_op("bind", started.elapsed(), r.is_ok());
    let err = match r {
        // Already mutual contacts on the server (e.g. through the users' own clients): the
        // database now agrees with it.
        Ok(()) | Err(XmppError::AlreadyBound) => {
            match app
                .store
                .transition_binding(a, b, BindingState::Binding, BindingState::Bound, app.now())
                .await
            {
                Ok(true) => return Ok(()),
                // A cancel of either side or the reconciler claimed the pair meanwhile: it is
                // being undone, so this bind did not happen.
                Ok(false) => interrupted(app, me, peer).await,
                // Bound on the server, not recorded: undo (the `binding` row stays for the
                // reconciler if this cannot finish).
                Err(e) => e.into(),
            }
        }
        Err(e) => ApiError::from_roster(e),
    };
    roll_back(app, a, b, &pa, &pb).await;
    Err(err)
}

/// Why a pair was taken from this bind: 104 for a side that is being cancelled, else 107 (the
/// reconciler claimed it; the client may retry).
async fn interrupted(app: &App, me: &Account, peer: &Account) -> ApiError {
    for a in [me, peer] {
        match app.store.account_by_id(a.id).await {
            Ok(Some(x)) if x.state == AccountState::Active => {}
            _ => return ApiError::UserNotExist(a.user_name.clone()),
        }
    }
    ApiError::JidNotLogin("bind interrupted by the reconciler".into())
}

/// Remove a pair that did not become `bound` from both rosters and delete its `binding` row. If
/// the server cannot be reached the row stays, and the reconciler finishes the job.
async fn roll_back(app: &App, a: i64, b: i64, pa: &xmpp::Party, pb: &xmpp::Party) {
    match app.xmpp.unbind(pa, pb).await {
        Ok(()) | Err(XmppError::NotBound) => {
            if let Err(e) = app
                .store
                .delete_binding_in(a, b, BindingState::Binding)
                .await
            {
                tracing::warn!(error = %e, "failed pair left for the reconciler");
            }
        }
        Err(e) => tracing::warn!(error = %e, "half-bound pair left for the reconciler"),
    }
}

/// An active account with this name, or 104.
pub(super) fn active(found: &[Arc<Account>], name: &str) -> Result<Arc<Account>, ApiError> {
    found
        .iter()
        .find(|a| a.user_name == name && a.state == AccountState::Active)
        .cloned()
        .ok_or_else(|| ApiError::UserNotExist(name.to_owned()))
}
