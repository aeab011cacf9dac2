//! The TCP JSON line API for IM backends: `/verify_access_token` and `/get_users`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use serde_json::{json, Value};
use tracing::Instrument;

use crate::app::{App, Call};
use crate::auth::crypto;
use crate::cmd;
use crate::cmd::endpoints::{self, Kind};
use crate::store::cache::DigestHash;
use crate::store::Account;

pub struct LineApi(pub Arc<App>, Replies);

impl LineApi {
    pub fn new(app: Arc<App>) -> LineApi {
        let capacity = app.cfg.database.token_cache_entries;
        LineApi(app, Replies::new(capacity))
    }
}

/// The signed `/verify_access_token` replies of the tokens the store answers from memory, as
/// bytes: a repeated token check then costs two lookups and a copy, without building, signing or
/// serializing a reply.
///
/// A reply is used only while the store's memory still holds its token with the very account
/// (the same `Arc`) and expiry it was made from: any change to the account or its tokens makes
/// the store forget them (see `store::cache`), so a revoked or changed token's reply is never
/// sent again; a stale one is simply replaced or dropped when the map starts over.
pub struct Replies {
    map: RwLock<HashMap<[u8; 32], Reply, DigestHash>>,
    /// Most replies kept (`database.token_cache_entries`); past this the map starts over.
    capacity: usize,
}

struct Reply {
    account: Arc<Account>,
    expires_at: i64,
    bytes: Box<[u8]>,
}

impl Replies {
    fn new(capacity: usize) -> Replies {
        Replies {
            map: RwLock::new(HashMap::default()),
            capacity,
        }
    }

    /// Appends to `out` the reply for token `digest`, held by the store's memory for `account`
    /// until `expires_at`: the one kept when it was made from them, else `make`'s, then kept.
    fn answer(
        &self,
        digest: &[u8; 32],
        account: &Arc<Account>,
        expires_at: i64,
        make: impl FnOnce() -> Vec<u8>,
        out: &mut Vec<u8>,
    ) {
        if let Some(r) = self
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
        {
            if Arc::ptr_eq(&r.account, account) && r.expires_at == expires_at {
                out.extend_from_slice(&r.bytes);
                return;
            }
        }
        let bytes = make().into_boxed_slice();
        out.extend_from_slice(&bytes);
        let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
        if m.len() >= self.capacity {
            m.clear();
        }
        m.insert(
            *digest,
            Reply {
                account: account.clone(),
                expires_at,
                bytes,
            },
        );
    }
}

/// The TCP hot path: answers a plain `/verify_access_token` for a token the store holds in
/// memory (see [`Replies`]); false, `out` untouched, for anything else.
fn answer_from_memory(app: &App, replies: &Replies, json: &str, out: &mut Vec<u8>) -> bool {
    let Some(token) = cmd::verify_token::plain_request_token(json) else {
        return false;
    };
    let digest = crypto::token_digest(&token);
    let Some((account, expires_at)) = app.store.token_in_memory(&digest, app.now()) else {
        return false;
    };
    let make = || cmd::verify_token::valid_reply_bytes(app, &account, expires_at);
    replies.answer(&digest, &account, expires_at, make, out);
    true
}

/// Keeps the reply bytes of a valid token the store now holds in memory (see [`Replies`]).
fn keep_reply(app: &App, replies: &Replies, token: &str) {
    let digest = crypto::token_digest(token);
    if let Some((account, expires_at)) = app.store.token_in_memory(&digest, app.now()) {
        let make = || cmd::verify_token::valid_reply_bytes(app, &account, expires_at);
        replies.answer(&digest, &account, expires_at, make, &mut Vec::new());
    }
}

/// A JSON object's members as request parameters: strings as they are, anything else as its
/// compact JSON text (the same rule as the HTTPS API's JSON bodies).
pub fn params_of(body: &Value) -> Vec<(String, String)> {
    match body {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), s)
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl tcp_api::LineHandler for LineApi {
    async fn handle(&self, path: &str, body: Value, peer: SocketAddr) -> Value {
        let started = Instant::now();
        let app = &self.0;
        let _in_flight = app.metrics.in_flight();
        let call = Call {
            params: params_of(&body),
            captcha_id: None,
            client_ip: peer.ip(),
            via_tcp: true,
            route: crate::app::Route {
                method: "TCP",
                path: path.to_owned(),
            },
            signed: Default::default(),
        };
        // At debug level every line about this request carries its id. Not at info: a span per
        // request costs more than the token check itself (BENCHMARKS.md); lines this path logs at
        // warn and error name the peer and path instead.
        let span = tracing::debug_span!(
            "tcp_request",
            request_id = %format!("{:016x}", rand::random::<u64>()),
            %peer,
            path
        );
        let Some(ep) = endpoints::tcp_endpoint(path) else {
            app.metrics.request("tcp/unknown", 2, started.elapsed());
            return app.sign(json!({"result": 2}));
        };
        let Kind::Json(command) = ep.kind else {
            // The table offers no captcha over TCP.
            app.metrics.request("tcp/unknown", 2, started.elapsed());
            return app.sign(json!({"result": 2}));
        };
        let outcome = command(app, &call).instrument(span).await;
        let (result, reply) = cmd::reply::render(outcome);
        if path == "/verify_access_token" && result == 0 {
            // The token's first check (or its first since a change) loaded it into memory: its
            // reply's bytes are kept now, so that its next check is answered from them at once.
            if let Some(token) = call.get("access_token") {
                keep_reply(app, &self.1, token);
            }
        }
        if matches!(result, 1 | 3) {
            tracing::error!(%peer, path, result, "TCP request failed (details in the line before)");
        }
        app.metrics
            .request(ep.tcp_metric, result, started.elapsed());
        app.sign(cmd::reply::with_nonce(reply, &call))
    }

    fn answer_now(&self, path: &str, json: &str, _peer: SocketAddr, out: &mut Vec<u8>) -> bool {
        if path != "/verify_access_token" {
            return false;
        }
        let started = Instant::now();
        let answered = answer_from_memory(&self.0, &self.1, json, out);
        if answered {
            self.0
                .metrics
                .request("tcp/verify_access_token", 0, started.elapsed());
        }
        answered
    }

    fn connection(&self, open: bool) {
        self.0.metrics.tcp_connection(open);
    }

    fn malformed(&self) -> Value {
        self.0.sign(json!({"result": 2}))
    }

    fn auth_refused(&self) -> Value {
        self.0
            .metrics
            .request("tcp/auth", 100, std::time::Duration::ZERO);
        self.0.sign(json!({"result": 100}))
    }

    fn auth_accepted(&self) -> Value {
        self.0.sign(json!({"result": 0}))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use tcp_api::LineHandler;

    use super::LineApi;
    use crate::auth::crypto;
    use crate::cmd::testkit::Kit;
    use crate::types::AccountType;

    /// A token's first check, answered by the command, keeps its reply's bytes: its second check
    /// is answered from memory with the same signed reply, without making them again.
    #[tokio::test]
    async fn a_tokens_first_check_keeps_its_reply_for_the_next() {
        let (k, _, token) = Kit::with_account("cam", AccountType::Device).await;
        let api = LineApi::new(Arc::new(k.app));
        let peer = "127.0.0.1:9".parse().unwrap();
        let digest = crypto::token_digest(&token);
        let kept = |api: &LineApi| api.1.map.read().unwrap().contains_key(&digest);
        let plain = json!({"access_token": token}).to_string();
        let first = api
            .handle("/verify_access_token", json!({"access_token": token}), peer)
            .await;
        assert_eq!(first["validate"], true);
        assert!(kept(&api), "kept on the first check");
        let mut out = Vec::new();
        assert!(api.answer_now("/verify_access_token", &plain, peer, &mut out));
        assert_eq!(out, serde_json::to_vec(&first).unwrap());
        // An invalid token keeps nothing.
        let bad = api
            .handle(
                "/verify_access_token",
                json!({"access_token": "nope"}),
                peer,
            )
            .await;
        assert_eq!(bad["validate"], false);
        assert_eq!(api.1.map.read().unwrap().len(), 1);
    }
}
