//! The TCP JSON line API for IM backends: `/verify_access_token` and `/get_users`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use tracing::Instrument;

use crate::app::{App, Call};
use crate::cmd;
use crate::cmd::endpoints::{self, Endpoint, Kind};
use crate::error::ApiError;

pub struct LineApi(pub Arc<App>);

/// The reply to a refused TCP request: `{"result": code}`, with `"validate": false` where the
/// endpoint says so. A storage failure or a bug is logged at error (the backend sees only the
/// code); a refusal (a bad or expired token, a bad parameter) is routine for a backend and
/// logged at debug only.
fn error_reply(ep: &Endpoint, e: &ApiError, peer: SocketAddr) -> Value {
    let code = e.code();
    match e {
        ApiError::Unknown(_) | ApiError::Db(_) => {
            tracing::error!(%peer, path = ep.path, result = code, error = %e, "TCP request failed")
        }
        _ => {
            tracing::debug!(%peer, path = ep.path, result = code, error = %e, "TCP request refused")
        }
    }
    if ep.refusal_says_invalid {
        json!({"result": code, "validate": false})
    } else {
        json!({"result": code})
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
            unreachable!("the endpoint table offers no captcha over TCP")
        };
        let outcome = command(app, &call).instrument(span).await;
        let code = endpoints::code_of(&outcome);
        app.metrics.request(ep.tcp_metric, code, started.elapsed());
        let reply = match outcome {
            Ok(v) => v,
            Err(e) => error_reply(ep, &e, peer),
        };
        app.sign(reply)
    }

    fn answer_now(&self, path: &str, json: &str, _peer: SocketAddr, out: &mut Vec<u8>) -> bool {
        if path != "/verify_access_token" {
            // The one endpoint with an in-memory answer (see `cmd::verify_token`).
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
