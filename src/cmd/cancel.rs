//! `/cancel`: after the login checks, remove every binding (both rosters), delete the JID, revoke
//! every token and delete the account.
//!
//! The account is marked `deleting` and its tokens revoked in one transaction before the first
//! remote step, so the account is unusable at once and gains no new pair (a bind's insert needs
//! both accounts `active`); [`finish`] does the remote work and is also what the reconciler runs
//! for a cancel that a crash or a lost link interrupted. Of two concurrent cancels of one account
//! one wins; the other gets 102, as any request for an account that is no longer active.

use serde_json::{json, Value};
use xmpp::XmppError;

use crate::app::{App, Call};
use crate::error::ApiError;
use crate::store::{Account, BindingState};

pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
    let (account, _) = super::login::authenticate(app, call, false).await?;
    if !app.store.begin_cancel(account.id, app.now()).await? {
        return Err(ApiError::UserOrPassword);
    }
    finish(app, &account).await?;
    tracing::info!(user = %account.user_name, "cancelled");
    Ok(json!({"result": 0}))
}

/// What [`finish`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Pairs removed from both rosters.
    pub pairs: u64,
    /// Whether the JID still existed and was deleted.
    pub jid_deleted: bool,
}

/// Unbind every peer, delete the JID, delete the row. A pair that cannot be unbound now keeps its
/// `unbinding` row, the others are still done, and the JID and the row stay (`deleting`) for the
/// reconciler, which runs this again; every step is idempotent.
pub async fn finish(app: &App, account: &Account) -> Result<Finished, ApiError> {
    let mut done = Finished::default();
    let mut first_err = None;
    for b in app.store.bindings_of(account.id).await? {
        let peer_id = if b.a == account.id { b.b } else { b.a };
        if let Some(peer) = app.store.account_by_id(peer_id).await? {
            // Claims the pair from any state: a bind in flight then fails its compare-and-set
            // to `bound` and rolls back.
            app.store
                .set_binding_state(b.a, b.b, BindingState::Unbinding, app.now())
                .await?;
            match app
                .xmpp
                .unbind(&app.party(account)?, &app.party(&peer)?)
                .await
            {
                Ok(()) | Err(XmppError::NotBound) => {}
                Err(e) => {
                    tracing::warn!(user = %account.user_name, peer = %peer.user_name, error = %e,
                        "cancel: unbind failed; left for the reconciler");
                    first_err.get_or_insert(ApiError::from_roster(e));
                    continue;
                }
            }
        }
        app.store.delete_binding(b.a, b.b).await?;
        done.pairs += 1;
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    // Deleting through the component needs no password: an account whose `jid_pwd` cannot be
    // opened (e.g. a lost encryption key) can still be removed in `component` mode.
    let jid_pwd = app.jid_pwd(account).unwrap_or_default();
    done.jid_deleted = delete_jid(app, &account.jid_node, &jid_pwd)
        .await
        .map_err(ApiError::from_provisioning)?;
    app.store.delete_account(account.id).await?;
    Ok(done)
}

/// Delete a JID; true when it existed. A JID that is already gone is success (`NotFound`; in
/// `ibr` mode, where deleting means logging in, `AuthFailed`).
pub async fn delete_jid(app: &App, node: &str, jid_pwd: &str) -> Result<bool, XmppError> {
    match app.xmpp.delete_account(node, jid_pwd).await {
        Ok(()) => Ok(true),
        Err(XmppError::NotFound) => Ok(false),
        Err(XmppError::AuthFailed) if app.xmpp.config().accounts == xmpp::AccountsMode::Ibr => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}
