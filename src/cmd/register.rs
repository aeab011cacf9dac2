//! `/register`: reserve the name, create the JID, then make the account active (the steps are
//! the account lifecycle's, `lifecycle::account`).
//!
//! The row is written `pending` before the JID is created and `active` after, so a crash or a lost
//! link leaves a record the reconciler undoes (deleting the JID if it was made). A reply of 0 means
//! the JID exists and the activation is committed (it survives a process kill).
//!
//! Two requests for one name race on the `UNIQUE` user name: the second insert fails and gets 103.
//! The activation is a compare-and-set from `pending`, so a reconciler that claimed the row first
//! (it turns `pending` into `deleting`) makes this request undo its JID instead of answering 0.

use serde_json::{json, Value};

use crate::app::{App, Call};
use crate::auth::crypto;
use crate::error::ApiError;
use crate::lifecycle::account;
use crate::store::NewAccount;
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
    account::link_up(app)?;
    let password_hash = app.hasher.hash(password.as_str().to_owned()).await?;
    // Again after the (slow) hash: a link lost meanwhile fails here, before anything is written.
    account::link_up(app)?;
    let node = account::new_jid_node();
    let jid_pwd = account::new_jid_password();
    let new = NewAccount {
        user_name: name.to_string(),
        kind,
        device_type,
        des,
        password_hash,
        jid_node: node.clone(),
        jid_pwd: crypto::seal(&app.secrets.encryption_key, &node, &jid_pwd),
    };
    let id = account::reserve(app, new).await?;
    account::create_jid(app, id, &name, &node, &jid_pwd).await?;
    Ok(json!({"result": 0}))
}
