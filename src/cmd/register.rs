//! `/register`: reserve the name, create the JID, then make the account active.
//!
//! The row is written `pending` before the JID is created and `active` after, so a crash or a lost
//! link leaves a record the reconciler undoes (deleting the JID if it was made). A reply of 0 means
//! the JID exists and the activation is committed (it survives a process kill).
//!
//! Two requests for one name race on the `UNIQUE` user name: the second insert fails and gets 103.
//! The activation is a compare-and-set from `pending`, so a reconciler that claimed the row first
//! (it turns `pending` into `deleting`) makes this request undo its JID instead of answering 0.

use serde_json::{json, Value};
use xmpp::XmppError;

use crate::app::{App, Call};
use crate::auth::crypto;
use crate::error::ApiError;
use crate::store::{AccountState, NewAccount, StoreError};
use crate::types::{bounded_text, AccountType, Password, UserName};

pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
    let name = UserName::parse(call.required("user_name")?)?;
    let password = Password::parse(call.required("password")?)?;
    let kind = AccountType::parse(call.required("type")?)?;
    let des = bounded_text("des", call.get("des").unwrap_or(""), 0, 256)?;
    let device_type = match kind {
        AccountType::Device => Some(bounded_text(
            "device_type",
            call.required("device_type")?,
            1,
            32,
        )?),
        _ => None,
    };
    app.check_human_or_device(call, kind == AccountType::Device, false)
        .await?;
    if app.store.account_by_name(name.as_str()).await?.is_some() {
        return Err(ApiError::UserExists);
    }
    link_up(app)?;
    let password_hash = app.hasher.hash(password.as_str().to_owned()).await?;
    // Again after the (slow) hash: a link lost meanwhile fails here, before anything is written.
    link_up(app)?;
    let node = super::new_jid_node();
    let jid_pwd = super::new_jid_password();
    let new = NewAccount {
        user_name: name.to_string(),
        kind,
        device_type,
        des,
        password_hash,
        jid_node: node.clone(),
        jid_pwd: crypto::seal(&app.secrets.encryption_key, &node, &jid_pwd),
    };
    let id = match app.store.insert_pending_account(new, app.now()).await {
        Ok(id) => id,
        Err(StoreError::Exists) => return Err(ApiError::UserExists),
        Err(e) => return Err(e.into()),
    };
    let started = std::time::Instant::now();
    let created = app.xmpp.create_account(&node, &jid_pwd).await;
    app.metrics
        .xmpp_op("create_account", started.elapsed(), created.is_ok());
    match created {
        Ok(()) => activate(app, id, &name, &node, &jid_pwd).await,
        Err(e) => {
            tracing::warn!(user = %name, error = %e, "JID creation failed");
            // When the JID may exist (timeout, lost link, garbled reply) it is deleted too.
            let may_exist = matches!(
                e,
                XmppError::Timeout
                    | XmppError::LinkDown
                    | XmppError::Protocol(_)
                    | XmppError::SessionFailed(_)
            );
            undo_pending(app, id, &node, &jid_pwd, may_exist).await;
            Err(ApiError::from_provisioning(e))
        }
    }
}

/// In `component` mode the JID is made through the link: while it is down, fail fast with 101
/// and write nothing.
fn link_up(app: &App) -> Result<(), ApiError> {
    if app.xmpp.config().accounts == xmpp::AccountsMode::Component
        && app.xmpp.link_state() != xmpp::LinkState::Up
    {
        return Err(ApiError::NewJidFail("component link down".into()));
    }
    Ok(())
}

/// The JID exists: make the account `active` (compare-and-set from `pending`). Only a committed
/// activation is answered with 0. If the reconciler claimed the row meanwhile, or the write
/// failed, the JID is deleted again (or left, with its record, for the reconciler).
async fn activate(
    app: &App,
    id: i64,
    name: &UserName,
    node: &str,
    jid_pwd: &str,
) -> Result<Value, ApiError> {
    let err = match app
        .store
        .transition_account(id, AccountState::Pending, AccountState::Active, app.now())
        .await
    {
        Ok(true) => {
            tracing::info!(user = %name, jid = %app.xmpp.jid_of(node), "registered");
            return Ok(json!({"result": 0}));
        }
        // The reconciler took the row (it runs while requests may be in flight, e.g. at start):
        // the account is being removed, so the JID made here must go too.
        Ok(false) => ApiError::NewJidFail("registration interrupted by the reconciler".into()),
        Err(e) => e.into(),
    };
    tracing::warn!(user = %name, error = %err, "could not activate; undoing the JID");
    undo_pending(app, id, node, jid_pwd, true).await;
    Err(err)
}

/// Remove a pending account that did not become active. When the JID may exist it is deleted
/// first; if that cannot be done now the pending row stays for the reconciler. Only a `pending`
/// row is deleted: one the reconciler has claimed (`deleting`) is its to finish.
async fn undo_pending(app: &App, id: i64, node: &str, jid_pwd: &str, jid_may_exist: bool) {
    if jid_may_exist {
        match super::cancel::delete_jid(app, node, jid_pwd).await {
            Ok(_) => {}
            Err(e2) => {
                tracing::warn!(jid_node = node, error = %e2, "left pending for the reconciler");
                return;
            }
        }
    }
    match app
        .store
        .transition_account(id, AccountState::Pending, AccountState::Deleting, app.now())
        .await
    {
        Ok(true) => {
            if let Err(e) = app.store.delete_account(id).await {
                tracing::error!(error = %e, "removing a failed pending account (left for the reconciler)");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "removing a failed pending account"),
    }
}
