//! The HTTPS API: turns an `http_api::Request` into a command call and signs the reply.

use std::sync::Arc;
use std::time::Instant;

use http_api::{Reply, Request};
use serde_json::{json, Value};

use crate::app::{App, Call, Route};
use crate::auth::ratelimit::{Budget, RetryAfter};
use crate::cmd;
use crate::error::ApiError;

/// Endpoints of SPEC §3.
pub const ROUTES: &[&str] = &[
    "/verify_code",
    "/login",
    "/register",
    "/cancel",
    "/get_users",
    "/set_user_banding",
    "/set_user_unbanding",
    "/get_user_banding",
    "/get_bind_token",
    "/logout",
    "/change_password",
    "/renew_jid_pwd",
];

/// Name of the captcha cookie and parameter.
pub const CAPTCHA_COOKIE: &str = "verify_code_id";

pub struct Api(pub Arc<App>);

impl Api {
    async fn dispatch(&self, path: &str, call: &Call) -> Result<cmd::reply::Reply, ApiError> {
        let app = &*self.0;
        match path {
            "/login" => cmd::login::run(app, call).await,
            "/register" => cmd::register::run(app, call).await,
            "/cancel" => cmd::cancel::run(app, call).await,
            "/get_users" => cmd::get_users::run(app, call).await,
            "/set_user_banding" => cmd::bind::run(app, call).await,
            "/set_user_unbanding" => cmd::unbind::run(app, call).await,
            "/get_user_banding" => cmd::get_user_banding::run(app, call).await,
            "/get_bind_token" => cmd::get_bind_token::run(app, call).await,
            "/logout" => cmd::logout::run(app, call).await,
            "/change_password" => cmd::change_password::run(app, call).await,
            "/renew_jid_pwd" => cmd::renew_jid_pwd::run(app, call).await,
            _ => Err(ApiError::Params(format!("no such endpoint {path}"))),
        }
    }

    fn captcha_reply(&self, c: cmd::verify_code::Challenge) -> Reply {
        let ttl = self.0.cfg.captcha.ttl_secs;
        Reply::Body {
            content_type: "image/png".into(),
            body: c.png.into(),
            headers: vec![
                ("Cache-Control".into(), "no-store".into()),
                (
                    "Set-Cookie".into(),
                    format!("{CAPTCHA_COOKIE}={}; Max-Age={ttl}; Path=/; HttpOnly; Secure; SameSite=Strict", c.id),
                ),
                ("X-Verify-Code-Id".into(), c.id),
            ],
        }
    }
}

/// The rate-limit budget of `path`: the endpoints that cost CPU or the XMPP server's work (a c2s
/// bind is two SCRAM logins), or invite guessing (passwords, bind tokens), have the smaller one.
fn budget(path: &str) -> Budget {
    match path {
        "/verify_code"
        | "/login"
        | "/register"
        | "/cancel"
        | "/change_password"
        | "/renew_jid_pwd"
        | "/set_user_banding"
        | "/set_user_unbanding" => Budget::Costly,
        _ => Budget::Api,
    }
}

/// A request refused for load: 429 (a rate limit) or 503 (the hashing queue is full), with
/// `Retry-After` and the signed body `{"result":112}`.
fn refused(
    app: &App,
    route: &'static str,
    started: Instant,
    e: &ApiError,
    retry: u64,
    params: &[(String, String)],
) -> Reply {
    app.metrics.request(route, e.code(), started.elapsed());
    let status = if matches!(e, ApiError::Busy) {
        503
    } else {
        429
    };
    Reply::Refused {
        status,
        body: app.sign(with_nonce(json!({"result": e.code()}), params)),
        retry_after: retry,
    }
}

/// A reply to a request that carried a well-formed `nonce` carries it back, inside what `sign`
/// covers (version 2 signatures): a captured reply cannot stand for another request.
pub fn with_nonce(mut reply: Value, params: &[(String, String)]) -> Value {
    let nonce = params
        .iter()
        .find(|(k, v)| k == "nonce" && crate::auth::crypto::valid_nonce(v));
    if let (Some((_, n)), Value::Object(m)) = (nonce, &mut reply) {
        m.insert("nonce".into(), Value::String(n.clone()));
    }
    reply
}

/// The reply body of an error, logged when it is a bug or a storage failure.
pub fn error_reply(e: &ApiError) -> Value {
    cmd::reply::error_json(e)
}

impl http_api::Handler for Api {
    fn routes(&self) -> &[&'static str] {
        ROUTES
    }

    async fn handle(&self, req: Request) -> Reply {
        let started = Instant::now();
        let app = &self.0;
        // The transport only routes paths from ROUTES here.
        let route: &'static str = ROUTES
            .iter()
            .find(|r| **r == req.path)
            .copied()
            .unwrap_or("unknown");
        if let Err(RetryAfter(retry)) = app.limiter.allow_network(budget(&req.path), req.client_ip)
        {
            return refused(
                app,
                route,
                started,
                &ApiError::RateLimited,
                retry,
                &req.params,
            );
        }
        if req.path == "/verify_code" {
            return match cmd::verify_code::run(app).await {
                Ok(c) => {
                    app.metrics.request(route, 0, started.elapsed());
                    self.captcha_reply(c)
                }
                Err(e) => {
                    app.metrics.request(route, e.code(), started.elapsed());
                    Reply::Json(app.sign(error_reply(&e)))
                }
            };
        }
        let captcha_id = req
            .header("x-verify-code-id")
            .or_else(|| req.cookie(CAPTCHA_COOKIE))
            .map(str::to_owned);
        let call = Call {
            params: req.params,
            captcha_id,
            client_ip: req.client_ip,
            via_tcp: false,
            route: Route {
                method: match req.method {
                    http_api::Method::Get => "GET",
                    http_api::Method::Post => "POST",
                },
                path: req.path,
            },
        };
        let outcome = self.dispatch(&call.route.path, &call).await;
        match &outcome {
            Err(e @ ApiError::Busy) => return refused(app, route, started, e, 1, &call.params),
            Err(e @ ApiError::RateLimited) => {
                let retry = app.limiter.retry_after();
                return refused(app, route, started, e, retry, &call.params);
            }
            _ => {}
        }
        let (code, reply) = cmd::reply::render(outcome);
        app.metrics.request(route, code, started.elapsed());
        Reply::Json(app.sign(with_nonce(reply, &call.params)))
    }

    fn error_body(&self, status: u16) -> Value {
        let code = if status == 500 { 1 } else { 2 };
        self.0.sign(json!({"result": code}))
    }
}
