//! `/cancel`: after the login checks, remove every binding (both rosters), delete the JID, revoke
//! every token and delete the account.
//!
//! The account is marked `deleting` and its tokens revoked in one transaction before the first
//! remote step, so the account is unusable at once; [`finish`] does the remote work and is also
//! what the reconciler runs for a cancel that a crash or a lost link interrupted.

use serde_json::{json, Value};
use xmpp::XmppError;

use crate::app::{App, Call};
use crate::error::ApiError;
use crate::store::{Account, BindingState};

pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
    let (account, _) = super::login::authenticate(app, call, false).await?;
    app.store.begin_cancel(account.id, app.now()).await?;
    finish(app, &account).await?;
    tracing::info!(user = %account.user_name, "cancelled");
    Ok(json!({"result": 0}))
}

/// Unbind every peer, delete the JID, delete the row. Stops at the first failure, leaving the
/// `deleting` record for the reconciler.
pub async fn finish(app: &App, account: &Account) -> Result<(), ApiError> {
    let me = app.party(account)?;
    for b in app.store.bindings_of(account.id).await? {
        let peer_id = if b.a == account.id { b.b } else { b.a };
        if let Some(peer) = app.store.account_by_id(peer_id).await? {
            app.store
                .set_binding_state(b.a, b.b, BindingState::Unbinding, app.now())
                .await?;
            match app.xmpp.unbind(&me, &app.party(&peer)?).await {
                Ok(()) | Err(XmppError::NotBound) => {}
                Err(e) => return Err(ApiError::from_roster(e)),
            }
        }
        app.store.delete_binding(b.a, b.b).await?;
    }
    match app
        .xmpp
        .delete_account(&account.jid_node, &me.password)
        .await
    {
        Ok(()) | Err(XmppError::NotFound) => {}
        Err(e) => return Err(ApiError::from_provisioning(e)),
    }
    app.store.delete_account(account.id).await?;
    Ok(())
}
