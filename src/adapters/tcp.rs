//! The TCP JSON line API for IM backends: `/verify_access_token` and `/get_users`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use tracing::Instrument;

use crate::app::{App, Call};
use crate::auth::crypto;
use crate::cmd;
use crate::cmd::endpoints::{self, Kind};
use crate::service::metrics::RequestMetric;
use crate::store::Account;

pub struct LineApi(pub Arc<App>, Hot);

impl LineApi {
    pub fn new(app: Arc<App>) -> LineApi {
        let hot = Hot {
            checked: app.metrics.request_metric("tcp/verify_access_token", 0),
        };
        LineApi(app, hot)
    }
}

/// What the hot path (a token check from memory) uses at every request, looked up once.
pub struct Hot {
    /// The metrics of a valid token check, without the per-request label lookups.
    checked: RequestMetric,
}

/// The TCP hot path: answers a plain `/verify_access_token` for a token the store holds in
/// memory (see [`reply_from_memory`]); false, `out` untouched, for anything else.
fn answer_from_memory(app: &App, json: &str, out: &mut Vec<u8>) -> bool {
    match cmd::verify_token::plain_request_token(json) {
        Some(token) => reply_from_memory(app, &token, out),
        None => false,
    }
}

/// Appends the signed reply to a check of `token` held in memory, from the bytes kept with the
/// token (made at its first check, see [`keep_reply`]): one lookup and a copy, without building,
/// signing or serializing a reply. The bytes go with the token: any change to its account or its
/// tokens makes the store forget both (see `store::cache`), so a revoked or changed token's reply
/// is never sent again. False, `out` untouched, when the token is not in memory.
fn reply_from_memory(app: &App, token: &str, out: &mut Vec<u8>) -> bool {
    let digest = crypto::token_digest(token);
    let mut make =
        |a: &Account, expires_at| cmd::verify_token::valid_reply_bytes(app, a, expires_at);
    app.store
        .token_bytes_in_memory(&digest, app.now(), &mut make, out)
}

/// Makes the reply bytes of a valid token the store now holds in memory, so that its next check
/// is answered from them.
fn keep_reply(app: &App, token: &str) {
    reply_from_memory(app, token, &mut Vec::new());
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
                keep_reply(app, token);
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
        let answered = answer_from_memory(&self.0, json, out);
        if answered {
            self.1.checked.record(started.elapsed());
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
        // Kept: the store hands out bytes for the token without making them.
        let kept = |api: &LineApi| {
            let app = &api.0;
            let mut out = Vec::new();
            let mut made_again = |_: &crate::store::Account, _| panic!("made again");
            app.store
                .token_bytes_in_memory(&digest, app.now(), &mut made_again, &mut out)
                .then_some(out)
        };
        let plain = json!({"access_token": token}).to_string();
        assert!(kept(&api).is_none(), "nothing kept before the first check");
        let first = api
            .handle("/verify_access_token", json!({"access_token": token}), peer)
            .await;
        assert_eq!(first["validate"], true);
        let signed = serde_json::to_vec(&first).unwrap();
        assert_eq!(kept(&api), Some(signed.clone()), "kept on the first check");
        let mut out = Vec::new();
        assert!(api.answer_now("/verify_access_token", &plain, peer, &mut out));
        assert_eq!(out, signed);
        // An invalid token keeps nothing, and is not answered from memory.
        let bad = api
            .handle(
                "/verify_access_token",
                json!({"access_token": "nope"}),
                peer,
            )
            .await;
        assert_eq!(bad["validate"], false);
        let nope = json!({"access_token": "nope"}).to_string();
        assert!(!api.answer_now("/verify_access_token", &nope, peer, &mut Vec::new()));
    }
}
