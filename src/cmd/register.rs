//! `/register`: reserve the name, create the JID, then make the account active.
//!
//! The row is written `pending` before the JID is created and `active` after, so a crash or a lost
//! link leaves a record the reconciler undoes (deleting the JID if it was made). A reply of 0 means
//! the JID exists and the account is usable.

use serde_json::{json, Value};
use xmpp::XmppError;

use crate::app::{App, Call};
use crate::crypto;
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
    if app.xmpp.config().accounts == xmpp::AccountsMode::Component
        && app.xmpp.link_state() != xmpp::LinkState::Up
    {
        return Err(ApiError::NewJidFail("component link down".into()));
    }
    let password_hash = app.hasher.hash(password.as_str().to_owned()).await?;
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
        Ok(()) => {
            app.store
                .set_account_state(id, AccountState::Active, app.now())
                .await?;
            tracing::info!(user = %name, jid = %app.xmpp.jid_of(&node), "registered");
            Ok(json!({"result": 0}))
        }
        Err(e) => {
            tracing::warn!(user = %name, error = %e, "JID creation failed");
            undo_pending(app, id, &node, &jid_pwd, &e).await;
            Err(ApiError::from_provisioning(e))
        }
    }
}

/// Remove a pending account whose JID creation failed. When the JID may exist (timeout, lost
/// link, garbled reply) it is deleted first; if that cannot be done now the pending row stays for
/// the reconciler.
async fn undo_pending(app: &App, id: i64, node: &str, jid_pwd: &str, e: &XmppError) {
    let jid_may_exist = matches!(
        e,
        XmppError::Timeout | XmppError::LinkDown | XmppError::Protocol(_)
    );
    if jid_may_exist {
        match app.xmpp.delete_account(node, jid_pwd).await {
            Ok(()) | Err(XmppError::NotFound) => {}
            Err(e2) => {
                tracing::warn!(jid_node = node, error = %e2, "left pending for the reconciler");
                return;
            }
        }
    }
    if let Err(e) = app.store.delete_account(id).await {
        tracing::error!(error = %e, "removing a failed pending account");
    }
}
