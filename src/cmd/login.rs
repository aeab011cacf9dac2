//! `/login`: captcha (humans) or signature (devices), then the password; a new access token.
//!
//! Unknown name, wrong password, wrong type and a locked account all answer 102, and all take one
//! Argon2id verification, so the reply time does not tell which.

use serde_json::{json, Value};

use crate::app::{App, Call};
use crate::auth::{crypto, login};
use crate::error::ApiError;

pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
    let (account, _) = login::authenticate(app, call, true).await?;
    let token = crypto::new_token();
    let expires = app.now() + app.cfg.security.token_ttl_secs as i64;
    let hash = crypto::token_hash(&token);
    app.store
        .insert_token(hash.clone(), account.id, expires, app.now())
        .await?;
    // At most `security.max_tokens_per_account` live tokens: the oldest go.
    app.store
        .trim_tokens(account.id, hash, app.cfg.security.max_tokens_per_account)
        .await?;
    Ok(json!({
        "result": 0,
        "user_info": app.user_info(&account, true)?,
        "access_token": token,
        "expires_at": expires,
    }))
}
