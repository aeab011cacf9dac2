//! `/renew_jid_pwd`: a new XMPP password for the token owner's JID, set on the XMPP server,
//! stored (sealed like every `jid_pwd`) and returned; the old one no longer logs in.
//!
//! Crash safety: the new password is stored as *pending* before the XMPP server is asked to
//! change it, and replaces `jid_pwd` only once the server has it. A crash, a timeout or an error
//! in between leaves the pending one in the database: the next `/renew_jid_pwd` of the account
//! sets that same password again (setting the password an account already has succeeds) and
//! commits it, so the account never has a password on the server that the service does not know.
//! Two concurrent renewals set and return the same password.

use serde_json::{json, Value};

use crate::app::{App, Call};
use crate::auth::crypto;
use crate::error::ApiError;

pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
    let me = app.token_owner_named(call).await?;
    let current = app.jid_pwd(&me)?;
    let fresh = crypto::seal(
        &app.secrets.encryption_key,
        &me.jid_node,
        &super::new_jid_password(),
    );
    // Stored before the server hears of it; an interrupted renewal's password is taken up.
    let pending = app
        .jid_pwds
        .begin_jid_pwd(me.id, fresh, app.now())
        .await?
        // Cancelled meanwhile.
        .ok_or(ApiError::AccessToken)?;
    let new =
        crypto::open(&app.secrets.encryption_key, &me.jid_node, &pending).ok_or(ApiError::NoJid)?;
    let changed = match app.xmpp.change_password(&me.jid_node, &current, &new).await {
        // Over c2s the old password no longer logs in when an interrupted renewal had already
        // changed it: log in with the pending one, which the server then has.
        Err(xmpp::XmppError::AuthFailed) => {
            app.xmpp.change_password(&me.jid_node, &new, &new).await
        }
        other => other,
    };
    changed.map_err(ApiError::from_roster)?;
    // False when a concurrent renewal committed the same password first.
    app.jid_pwds
        .commit_jid_pwd(me.id, pending, app.now())
        .await?;
    tracing::info!(user = %me.user_name, "XMPP password renewed");
    Ok(json!({"result": 0, "jid_pwd": new}))
}
