//! `/verify_access_token` (TCP): whether a token is valid, and whose.
//!
//! Two paths give the same bytes: [`run`] (any store, parsed request) and [`answer_from_memory`]
//! (the TCP hot path: a token the store holds in memory, answered with the signed reply line
//! kept beside it).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::{App, Call};
use crate::auth::crypto;
use crate::error::ApiError;
use crate::store::Account;

/// The longest token looked up; longer ones are invalid without a lookup.
const MAX_TOKEN: usize = 128;

/// A valid token's owner, or [`ApiError::AccessToken`] (4) for a missing, over-long, unknown or
/// expired one; a storage failure is [`ApiError::Db`] (3). The TCP adapter adds
/// `"validate": false` to a refusal (the endpoint table's `refusal_says_invalid`).
pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
    let token = call.get("access_token").unwrap_or("");
    if token.is_empty() || token.len() > MAX_TOKEN {
        return Err(ApiError::AccessToken);
    }
    match app
        .store
        .token_account(crypto::token_hash(token), app.now())
        .await?
    {
        Some((a, expires_at)) => Ok(valid(app, &a, expires_at)),
        None => Err(ApiError::AccessToken),
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

/// Answers a valid token held in the store's memory: appends the signed reply (compact JSON, the
/// bytes [`run`]'s reply serializes to) to `out` and returns `true`. Returns `false`, leaving
/// `out` as it was, for everything else — unknown, expired or uncached tokens, unusual requests —
/// which [`run`] then answers.
pub fn answer_from_memory(app: &App, json: &str, out: &mut Vec<u8>) -> bool {
    // A derived struct would also read `["token"]`, which `run` refuses as not an object.
    if !json.starts_with('{') {
        return false;
    }
    let Ok(req) = serde_json::from_str::<Request>(json) else {
        return false;
    };
    let token = req.access_token.as_ref();
    if token.is_empty() || token.len() > MAX_TOKEN {
        return false;
    }
    let make = |a: &Account, expires_at: i64| {
        serde_json::to_vec(&app.sign(valid(app, a, expires_at)))
            .unwrap_or_else(|_| br#"{"result":1}"#.to_vec())
    };
    app.store
        .token_reply_cached(&crypto::token_digest(token), app.now(), &make, out)
}
