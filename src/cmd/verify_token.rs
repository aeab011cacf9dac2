//! `/verify_access_token` (TCP): whether a token is valid, and whose.
//!
//! Two paths give the same bytes: [`run`] (any store, parsed request) and the TCP adapter's hot
//! path (a token the store holds in memory, answered with the signed reply line the adapter keeps
//! for it), which uses [`plain_request_token`] and [`valid_reply_bytes`].

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::{App, Call};
use crate::auth::crypto;
use crate::store::Account;

/// The longest token looked up; longer ones are invalid without a lookup.
const MAX_TOKEN: usize = 128;

pub async fn run(app: &App, call: &Call) -> Value {
    let token = call.get("access_token").unwrap_or("");
    if token.is_empty() || token.len() > MAX_TOKEN {
        return json!({"result": 4, "validate": false});
    }
    match app
        .store
        .token_account(crypto::token_hash(token), app.now())
        .await
    {
        Ok(Some((a, expires_at))) => valid(app, &a, expires_at),
        Ok(None) => json!({"result": 4, "validate": false}),
        Err(e) => {
            tracing::error!(error = %e, "token lookup");
            json!({"result": 3, "validate": false})
        }
    }
}

/// The reply for a valid token (unsigned).
fn valid(app: &App, a: &Account, expires_at: i64) -> Value {
    json!({
        "result": 0,
        "validate": true,
        "user_name": a.user_name,
        "jid": app.xmpp.jid_of(&a.jid_node),
        "type": a.kind.code(),
        "expires_at": expires_at,
    })
}

/// The request as the hot path reads it: an object with `access_token` alone. Anything else
/// (another member, whose content `run` would check while parsing; `access_token` of another type;
/// a duplicate member; trailing bytes) goes to [`run`] instead. Escaped characters are fine
/// (`Cow`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request<'a> {
    #[serde(borrow)]
    access_token: Cow<'a, str>,
}

/// The token of a request the TCP hot path may answer from memory: an object with
/// `access_token` alone, of a length [`run`] would look up. `None` for everything else, which
/// [`run`] then answers.
pub fn plain_request_token(json: &str) -> Option<Cow<'_, str>> {
    // A derived struct would also read `["token"]`, which `run` refuses as not an object.
    if !json.starts_with('{') {
        return None;
    }
    let req = serde_json::from_str::<Request>(json).ok()?;
    let token = req.access_token;
    (!token.is_empty() && token.len() <= MAX_TOKEN).then_some(token)
}

/// The signed reply for a valid token of account `a` as bytes: compact JSON, the bytes [`run`]'s
/// reply serializes to.
pub fn valid_reply_bytes(app: &App, a: &Account, expires_at: i64) -> Vec<u8> {
    serde_json::to_vec(&app.sign(valid(app, a, expires_at)))
        .unwrap_or_else(|_| br#"{"result":1}"#.to_vec())
}
