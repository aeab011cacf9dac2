//! The TCP JSON line API for IM backends: `/verify_access_token` and `/get_users`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use tracing::Instrument;

use crate::app::{App, Call};
use crate::cmd;

pub struct LineApi(pub Arc<App>);

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
        let call = Call {
            params: params_of(&body),
            captcha_id: None,
            client_ip: peer.ip(),
            via_tcp: true,
            route: crate::app::Route {
                method: "TCP",
                path: path.to_owned(),
            },
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
        let reply = async {
            match path {
                "/verify_access_token" => cmd::verify_token::run(app, &call).await,
                "/get_users" => cmd::get_users::run(app, &call)
                    .await
                    .unwrap_or_else(|e| crate::adapters::http::error_reply(&e)),
                _ => json!({"result": 2}),
            }
        }
        .instrument(span)
        .await;
        let result = reply["result"].as_i64().unwrap_or(1);
        if matches!(result, 1 | 3) {
            tracing::error!(%peer, path, result, "TCP request failed (details in the line before)");
        }
        let endpoint = match path {
            "/verify_access_token" => "tcp/verify_access_token",
            "/get_users" => "tcp/get_users",
            _ => "tcp/unknown",
        };
        app.metrics.request(endpoint, result, started.elapsed());
        app.sign(crate::adapters::http::with_nonce(reply, &call.params))
    }

    fn answer_now(&self, path: &str, json: &str, _peer: SocketAddr, out: &mut Vec<u8>) -> bool {
        if path != "/verify_access_token" {
            return false;
        }
        let started = Instant::now();
        let answered = cmd::verify_token::answer_from_memory(&self.0, json, out);
        if answered {
            self.0
                .metrics
                .request("tcp/verify_access_token", 0, started.elapsed());
        }
        answered
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
