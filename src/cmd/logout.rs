//! `/logout`: revoke the access token used, at once (over HTTPS and over TCP: the token cache
//! forgets the account through its change hook, as for `/cancel`).

use serde_json::{json, Value};

use crate::app::{App, Call};
use crate::auth::crypto;
use crate::error::ApiError;

pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
    let me = app.token_owner_named(call).await?;
    // `token_owner_named` found the token, so it is present.
    let token = call.required("access_token")?;
    // False only when a concurrent logout or password change revoked it first: gone either way.
    app.store
        .revoke_token(me.id, crypto::token_hash(token))
        .await?;
    tracing::info!(user = %me.user_name, "logged out");
    Ok(json!({"result": 0}))
}
