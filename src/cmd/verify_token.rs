//! `/verify_access_token` (TCP): whether a token is valid, and whose.

use serde_json::{json, Value};

use crate::app::{App, Call};
use crate::crypto;

pub async fn run(app: &App, call: &Call) -> Value {
    let token = call.get("access_token").unwrap_or("");
    if token.is_empty() || token.len() > 128 {
        return json!({"result": 4, "validate": false});
    }
    match app
        .store
        .token_account(crypto::token_hash(token), app.now())
        .await
    {
        Ok(Some((a, expires_at))) => json!({
            "result": 0,
            "validate": true,
            "user_name": a.user_name,
            "jid": app.xmpp.jid_of(&a.jid_node),
            "type": a.kind.code(),
            "expires_at": expires_at,
        }),
        Ok(None) => json!({"result": 4, "validate": false}),
        Err(e) => {
            tracing::error!(error = %e, "token lookup");
            json!({"result": 3, "validate": false})
        }
    }
}
