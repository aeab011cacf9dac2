//! `/change_password`: the token's owner proves the old password through the login checks
//! (a captcha for phones, a signature for devices, the counted verification and its lock-out),
//! then the new password's Argon2id hash replaces the old one and every token of the account is
//! revoked, the one used included, in one transaction. The client logs in again.
//!
//! A wrong old password is a failed login like any other: it counts toward the lock-out of the
//! caller's network and of the account, so a stolen token does not give an unlimited guessing
//! oracle for the password.

use serde_json::{json, Value};

use crate::app::{App, Call};
use crate::auth::login;
use crate::error::ApiError;
use crate::types::{Password, UserName};

pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
    // Parameters first: a malformed request spends no captcha and counts nothing.
    let name = UserName::parse(call.required("user_name")?)?;
    let old = call.required("old_password")?.to_owned();
    let new = Password::parse(call.required("new_password")?)?;
    let (me, _) = app.token_holder(call).await?;
    if me.user_name != name.as_str() {
        return Err(ApiError::NotPermitted(
            "access_token belongs to another user".into(),
        ));
    }
    // The signature (devices) and the captcha (phones) are checked here, once.
    let account = login::verify_password(app, call, &me.user_name, me.kind, old, false).await?;
    let hash = app.hasher.hash(new.as_str().to_owned()).await?;
    if !app.store.set_password(account.id, hash, app.now()).await? {
        // Cancelled meanwhile.
        return Err(ApiError::UserOrPassword);
    }
    tracing::info!(user = %account.user_name, "password changed; every token revoked");
    Ok(json!({"result": 0}))
}
