//! What a command answers, and the one function that turns it into the JSON reply.
//!
//! A command returns `Result<Reply, ApiError>`. A [`Reply`] is built from the command's typed reply
//! struct (`Serialize`) and carries its result code beside it: 0, or the code of a partial outcome
//! that is a reply rather than an error (bind/unbind with `failed_ls`, 100 with `reason`). The
//! transports call [`render`] and get the code and the unsigned JSON object; none of them reads
//! `result` back out of JSON.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// A command's answer: its result code and the members beside `result`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    code: i64,
    members: Map<String, Value>,
}

/// The members of a reply with nothing beside `result`.
#[derive(Serialize)]
pub struct Done {}

impl Reply {
    /// Success: `{"result": 0, …the members of fields}`.
    pub fn ok(fields: impl Serialize) -> Reply {
        Reply::with_code(0, fields)
    }

    /// `{"result": 0}` alone.
    pub fn done() -> Reply {
        Reply::ok(Done {})
    }

    /// A reply with another code (a partial outcome, or a refusal that says why).
    pub fn with_code(code: i64, fields: impl Serialize) -> Reply {
        let members = match serde_json::to_value(fields) {
            Ok(Value::Object(m)) => m,
            // Only structs are passed here; anything else is a bug, answered as one.
            _ => return Reply::bug(),
        };
        Reply { code, members }
    }

    fn bug() -> Reply {
        Reply {
            code: ApiError::Unknown(String::new()).code(),
            members: Map::new(),
        }
    }

    pub fn code(&self) -> i64 {
        self.code
    }

    /// The JSON object, unsigned: `result` and the members.
    pub fn into_json(self) -> Value {
        let mut m = self.members;
        m.insert("result".into(), self.code.into());
        Value::Object(m)
    }
}

/// The reply of a bind or unbind of several pairs: 0, or the first failure's code with every
/// failed name in `failed_ls`.
pub fn outcome(failed: Vec<(String, ApiError)>) -> Reply {
    #[derive(Serialize)]
    struct Failed {
        failed_ls: Vec<String>,
    }
    match failed.first() {
        None => Reply::done(),
        Some((_, e)) => Reply::with_code(
            e.code(),
            Failed {
                failed_ls: failed.into_iter().map(|(n, _)| n).collect(),
            },
        ),
    }
}

/// A 100 that says why (`reason`): a bind refusal that is a reply, not an error.
pub fn refusal(reason: &str) -> Reply {
    #[derive(Serialize)]
    struct Reason<'a> {
        reason: &'a str,
    }
    tracing::info!(reason, "bind refused");
    Reply::with_code(
        ApiError::NotPermitted(String::new()).code(),
        Reason { reason },
    )
}

/// The reply to a command's outcome: its result code and the unsigned JSON object. An error is
/// `{"result": code}`, logged when it is a bug or a storage failure.
pub fn render(r: Result<Reply, ApiError>) -> (i64, Value) {
    match r {
        Ok(reply) => (reply.code(), reply.into_json()),
        Err(e) => (e.code(), error_json(&e)),
    }
}

/// The reply body of an error, logged when it is a bug or a storage failure.
pub fn error_json(e: &ApiError) -> Value {
    match e {
        ApiError::Unknown(_) | ApiError::Db(_) => tracing::error!(error = %e, "request failed"),
        // A flood would write one line per refused request: counted in the metrics instead.
        ApiError::RateLimited | ApiError::Busy => tracing::debug!(error = %e, "request refused"),
        // At info: refusals (a wrong password, a bad token or signature) are what an operator
        // watches for, and successes have no line at info.
        _ => tracing::info!(error = %e, "request refused"),
    }
    serde_json::json!({"result": e.code()})
}

/// A reply to a request whose version 2 signature held and whose nonce it spent names that
/// request, inside what `sign` covers: `nonce`, and `request_sha256` (the SHA-256 of the
/// request's base string). A nonce that was not verified (an unsigned, badly signed or replayed
/// request) is never echoed, so nobody can obtain a signed reply for a nonce of their choosing.
pub fn with_nonce(mut reply: Value, call: &crate::app::Call) -> Value {
    if let (Some(req), Value::Object(m)) = (call.signed.get(), &mut reply) {
        m.insert("nonce".into(), Value::String(req.nonce.clone()));
        m.insert(
            "request_sha256".into(),
            Value::String(req.request_sha256.clone()),
        );
    }
    reply
}

#[cfg(test)]
mod tests {
    use serde::Serialize;
    use serde_json::json;

    use super::*;

    #[derive(Serialize)]
    struct Token {
        access_token: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        jid_pwd: Option<&'static str>,
    }

    #[test]
    fn replies_render_with_their_code() {
        let t = Token {
            access_token: "t",
            jid_pwd: None,
        };
        assert_eq!(
            render(Ok(Reply::ok(t))),
            (0, json!({"result": 0, "access_token": "t"}))
        );
        assert_eq!(render(Ok(Reply::done())), (0, json!({"result": 0})));
        let partial = Reply::with_code(9, json!({"failed_ls": ["a"]}));
        assert_eq!(
            render(Ok(partial)),
            (9, json!({"result": 9, "failed_ls": ["a"]}))
        );
        assert_eq!(
            render(Err(ApiError::NotInRoster)),
            (110, json!({"result": 110}))
        );
        assert_eq!(Reply::ok("not an object").code(), 1);
    }
}
