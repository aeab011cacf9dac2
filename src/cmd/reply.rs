//! What a command answers, and the functions that turn it into the signed reply.
//!
//! A command returns `Result<Reply, ApiError>`. A [`Reply`] is built from the command's typed reply
//! struct (`Serialize`), or for a hot path from canonical JSON text ([`Reply::ok_text`]), and
//! carries its result code beside it: 0, or the code of a partial outcome that is a reply rather
//! than an error (bind/unbind with `failed_ls`, 100 with `reason`). Its members are kept as
//! canonical JSON text. The HTTPS API calls [`signed_body`] and gets the code and the signed
//! reply's bytes, made without a `serde_json::Value`; the TCP API calls [`render`] and gets the
//! code and the unsigned JSON object (its transport speaks `Value`). Both give the same signed
//! JSON (`a_signed_body_is_the_signed_value_as_serde_json_writes_it`); neither reads `result`
//! back out of JSON.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth::crypto::{self, ReplyKey};
use crate::error::ApiError;

/// A command's answer: its result code and the members beside `result`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    code: i64,
    /// Sorted by name, names unique; each value as its canonical JSON text, so that the reply is
    /// signed and sent without being built as a `serde_json::Value` (see [`signed_body`]).
    members: Vec<(String, String)>,
    /// The reply signed already, for a request that names no nonce (a kept `/get_users` reply,
    /// see [`Reply::signed_already`]); `members` is then empty.
    signed: Option<Bytes>,
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
        let mut members: Vec<(String, String)> = match serde_json::to_value(fields) {
            Ok(Value::Object(m)) => m
                .into_iter()
                .map(|(name, v)| (name, crypto::canonical_json(&v)))
                .collect(),
            // Only structs are passed here; anything else is a bug, answered as one.
            _ => return Reply::bug(),
        };
        members.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Reply {
            code,
            members,
            signed: None,
        }
    }

    /// Success with one member, `name`, whose value is `text`, canonical JSON text (checked in
    /// debug builds): a hot path's reply (`/get_users`) is so made without a
    /// `serde_json::Value`.
    pub fn ok_text(name: &str, text: String) -> Reply {
        debug_assert!(crypto::is_canonical(&text), "not canonical: {text}");
        Reply {
            code: 0,
            members: vec![(name.to_owned(), text)],
            signed: None,
        }
    }

    /// A success signed already: `body` is what [`Reply::signed`] made of a reply with code 0
    /// for a request naming no nonce, with this service's key.
    pub fn signed_already(body: Bytes) -> Reply {
        Reply {
            code: 0,
            members: Vec::new(),
            signed: Some(body),
        }
    }

    fn bug() -> Reply {
        Reply {
            code: ApiError::Unknown(String::new()).code(),
            members: Vec::new(),
            signed: None,
        }
    }

    /// The members, read back from the signed bytes for a reply [signed already](Self::signed_already)
    /// (which is sent as it is, unless it must name a request or be rendered unsigned).
    fn members(&self) -> std::borrow::Cow<'_, [(String, String)]> {
        let Some(body) = &self.signed else {
            return std::borrow::Cow::Borrowed(&self.members);
        };
        let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) else {
            unreachable!("a reply signed here is a JSON object");
        };
        std::borrow::Cow::Owned(
            m.into_iter()
                .filter(|(n, _)| n != "result" && n != "sign")
                .map(|(n, v)| (n, crypto::canonical_json(&v)))
                .collect(),
        )
    }

    pub fn code(&self) -> i64 {
        self.code
    }

    /// This reply signed with `key`, as bytes (see [`signed_body`]), naming `request` when the
    /// request's version 2 signature held (see [`with_nonce`]).
    pub fn signed(&self, key: &ReplyKey, request: Option<&crate::app::SignedRequest>) -> Bytes {
        if let (Some(body), None) = (&self.signed, request) {
            return body.clone();
        }
        let members = self.members();
        let result = self.code.to_string();
        let named = request.map(|req| {
            (
                crypto::canonical_text(&req.nonce),
                crypto::canonical_text(&req.request_sha256),
            )
        });
        // What the transport sets replaces a command's member of the same name.
        let replaced = |n: &str| n == "result" || (named.is_some() && NAMING.contains(&n));
        let mut all: Vec<(&str, &str)> = Vec::with_capacity(self.members.len() + 3);
        all.extend(
            members
                .iter()
                .filter(|(n, _)| !replaced(n))
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        all.push(("result", &result));
        if let Some((nonce, sha)) = &named {
            all.push(("nonce", nonce));
            all.push(("request_sha256", sha));
        }
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        key.sign_members(&all).into()
    }

    /// The JSON object, unsigned: `result` and the members.
    pub fn into_json(self) -> Value {
        let mut m = Map::new();
        for (name, text) in self.members().into_owned() {
            let v = serde_json::from_str(&text).expect("a member is JSON text");
            m.insert(name, v);
        }
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
    log_error(e);
    serde_json::json!({"result": e.code()})
}

/// An error's log line: at error for a bug or a storage failure.
fn log_error(e: &ApiError) {
    match e {
        ApiError::Unknown(_) | ApiError::Db(_) => tracing::error!(error = %e, "request failed"),
        // A flood would write one line per refused request: counted in the metrics instead.
        ApiError::RateLimited | ApiError::Busy => tracing::debug!(error = %e, "request refused"),
        // At info: refusals (a wrong password, a bad token or signature) are what an operator
        // watches for, and successes have no line at info.
        _ => tracing::info!(error = %e, "request refused"),
    }
}

/// The signed reply to a command's outcome, as the bytes to send, and its result code: the
/// bytes of `key.sign(with_nonce(render(r).1, call))` as serde_json writes them, made without
/// building that value (an error logged as [`render`] logs it).
pub fn signed_body(
    key: &ReplyKey,
    r: Result<Reply, ApiError>,
    call: &crate::app::Call,
) -> (i64, Bytes) {
    let reply = r.unwrap_or_else(|e| {
        log_error(&e);
        Reply {
            code: e.code(),
            members: Vec::new(),
            signed: None,
        }
    });
    (reply.code, reply.signed(key, call.signed.get()))
}

/// The members that name a signed request (see [`with_nonce`]).
const NAMING: [&str; 2] = ["nonce", "request_sha256"];

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

    /// The bytes sent over HTTPS are those of the signed value the TCP API answers, for a reply,
    /// a partial outcome, an error, and a request whose signature held (named in the reply).
    #[test]
    fn a_signed_body_is_the_signed_value_as_serde_json_writes_it() {
        let key = ReplyKey::new(b"kit-sign-key");
        let plain = crate::app::Call {
            params: Vec::new(),
            captcha_id: None,
            client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            via_tcp: false,
            route: Default::default(),
            signed: Default::default(),
        };
        let named = plain.clone();
        named
            .signed
            .set(crate::app::SignedRequest {
                nonce: "n\u{e9}\"".into(),
                request_sha256: "ab12".into(),
            })
            .unwrap();
        #[derive(Serialize)]
        struct Clash {
            nonce: &'static str,
            result: i64,
            sign: &'static str,
            zz: Vec<u8>,
        }
        let outcomes = || {
            [
                Ok(Reply::ok(Token {
                    access_token: "t",
                    jid_pwd: Some("p"),
                })),
                Ok(Reply::done()),
                Ok(outcome(vec![("a".into(), ApiError::NotInRoster)])),
                Ok(Reply::ok(Clash {
                    nonce: "mine",
                    result: 7,
                    sign: "forged",
                    zz: vec![1, 2],
                })),
                Ok(Reply::ok_text(
                    "user_info_ls",
                    r#"[{"a":1,"b":"x"}]"#.into(),
                )),
                // Signed once already: sent as it is, or read back when it must name a request.
                Ok(Reply::signed_already(
                    Reply::ok_text("user_info_ls", r#"[{"a":1,"b":"é\""}]"#.into())
                        .signed(&key, None),
                )),
                Err(ApiError::NotInRoster),
            ]
        };
        for call in [&plain, &named] {
            for (r, same) in outcomes().into_iter().zip(outcomes()) {
                let (code, body) = signed_body(&key, r, call);
                let (c, v) = render(same);
                let by_value = serde_json::to_vec(&key.sign(with_nonce(v, call))).unwrap();
                assert_eq!(code, c);
                assert_eq!(
                    String::from_utf8(body.to_vec()).unwrap(),
                    String::from_utf8(by_value).unwrap()
                );
            }
        }
    }
}
