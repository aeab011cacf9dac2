//! `/verify_access_token` (TCP): whether a token is valid, and whose.
//!
//! Two paths give the same bytes: [`run`] (any store, parsed request) and the TCP adapter's hot
//! path (a token the store holds in memory, answered with the signed reply line the adapter keeps
//! for it), which uses [`plain_request_token`] and [`valid_reply_bytes`].

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::reply::Reply;

use crate::app::{App, Call};
use crate::auth::crypto;
use crate::error::ApiError;
use crate::store::Account;

/// The longest token looked up; longer ones are invalid without a lookup.
const MAX_TOKEN: usize = 128;

/// The members of a `/verify_access_token` reply; the owner's only for a valid token.
#[derive(Serialize)]
struct Validity<'a> {
    validate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jid: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
}

/// The reply for an invalid token (4), or for a lookup that failed (3).
fn invalid(e: ApiError) -> Reply {
    let none = Validity {
        validate: false,
        user_name: None,
        jid: None,
        kind: None,
        expires_at: None,
    };
    Reply::with_code(e.code(), none)
}

pub async fn run(app: &App, call: &Call) -> Reply {
    let token = call.get("access_token").unwrap_or("");
    if token.is_empty() || token.len() > MAX_TOKEN {
        return invalid(ApiError::AccessToken);
    }
    match app
        .store
        .token_account(crypto::token_hash(token), app.now())
        .await
    {
        Ok(Some((a, expires_at))) => valid(app, &a, expires_at),
        Ok(None) => invalid(ApiError::AccessToken),
        Err(e) => {
            tracing::error!(error = %e, "token lookup");
            invalid(e.into())
        }
    }
}

/// The reply for a valid token (unsigned).
fn valid(app: &App, a: &Account, expires_at: i64) -> Reply {
    Reply::ok(Validity {
        validate: true,
        user_name: Some(&a.user_name),
        jid: Some(app.jid(a)),
        kind: Some(a.kind.code()),
        expires_at: Some(expires_at),
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
    Vec::from(valid(app, a, expires_at).signed(&app.secrets.sign_key, None))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{plain_request_token, run, valid_reply_bytes};
    use crate::cmd::testkit::Kit;
    use crate::types::AccountType;

    #[tokio::test]
    async fn a_valid_token_names_its_owner_until_it_expires() {
        let (k, d, td) = Kit::with_account("d", AccountType::Device).await;
        let mut c = k.call(&[("access_token", &td)]);
        c.via_tcp = true;
        let v = run(&k.app, &c).await.into_json();
        let ttl = k.app.cfg.security.token_ttl_secs as i64;
        assert_eq!(
            v,
            json!({"result": 0, "validate": true, "user_name": "d", "type": 2,
                   "jid": format!("{}@kit.test", d.jid_node), "expires_at": k.app.now() + ttl})
        );
        // The TCP hot path reads the same token and answers the same bytes, signed.
        let line = format!(r#"{{"access_token":"{td}"}}"#);
        assert_eq!(plain_request_token(&line).as_deref(), Some(td.as_str()));
        assert_eq!(
            valid_reply_bytes(&k.app, &d, k.app.now() + ttl),
            serde_json::to_vec(&k.app.sign(v)).unwrap()
        );
        k.clock.advance(ttl);
        assert_eq!(
            run(&k.app, &c).await.into_json(),
            json!({"result": 4, "validate": false})
        );
    }

    #[tokio::test]
    async fn missing_long_and_unknown_tokens_are_invalid() {
        let k = Kit::new().await;
        let invalid = json!({"result": 4, "validate": false});
        for t in ["", "unknown", &"x".repeat(129)] {
            assert_eq!(
                run(&k.app, &k.call(&[("access_token", t)]))
                    .await
                    .into_json(),
                invalid
            );
        }
        assert_eq!(run(&k.app, &k.call(&[])).await.into_json(), invalid);
    }
}
