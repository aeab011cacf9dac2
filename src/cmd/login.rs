//! `/login`: captcha (humans) or signature (devices), then the password; a new access token.
//!
//! Unknown name, wrong password, wrong type and a locked account all answer 102, and all take one
//! Argon2id verification, so the reply time does not tell which.

use serde_json::{json, Value};

use crate::app::{App, Call};
use crate::crypto;
use crate::error::ApiError;
use crate::passwords::Hasher;
use crate::store::{Account, AccountState};
use crate::types::{AccountType, Password, UserName};

pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
    let (account, _) = authenticate(app, call, true).await?;
    let token = crypto::new_token();
    let expires = app.now() + app.cfg.security.token_ttl_secs as i64;
    app.store
        .insert_token(crypto::token_hash(&token), account.id, expires, app.now())
        .await?;
    Ok(json!({
        "result": 0,
        "user_info": app.user_info(&account, true)?,
        "access_token": token,
        "expires_at": expires,
    }))
}

/// The checks `/login` and `/cancel` share: parameters, captcha or signature, lock, password, type.
pub async fn authenticate(
    app: &App,
    call: &Call,
    sign_required: bool,
) -> Result<(Account, AccountType), ApiError> {
    let name = UserName::parse(call.required("user_name")?)?;
    let password =
        Password::parse(call.required("password")?).map_err(|_| ApiError::UserOrPassword)?;
    let kind = AccountType::parse(call.required("type")?)?;
    app.check_human_or_device(call, kind == AccountType::Device, sign_required)
        .await?;
    let account = app.store.account_by_name(name.as_str()).await?;
    let phc = match &account {
        Some(a) => a.password_hash.clone(),
        None => Hasher::dummy_hash().to_owned(),
    };
    let good = app.hasher.verify(password.as_str().to_owned(), phc).await?;
    let Some(account) = account else {
        app.metrics.login_failed(false);
        return Err(ApiError::UserOrPassword);
    };
    let now = app.now();
    if account.locked_until > now {
        app.metrics.login_failed(true);
        return Err(ApiError::UserOrPassword);
    }
    if !good {
        let sec = &app.cfg.security;
        app.store
            .record_login_failure(
                account.id,
                now,
                sec.lockout_threshold,
                sec.lockout_secs as i64,
            )
            .await?;
        app.metrics.login_failed(false);
        return Err(ApiError::UserOrPassword);
    }
    if account.kind != kind || account.state != AccountState::Active {
        app.metrics.login_failed(false);
        return Err(ApiError::UserOrPassword);
    }
    app.store.reset_login_failures(account.id).await?;
    Ok((account, kind))
}
