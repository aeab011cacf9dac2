//! The HTTPS API: turns an `http_api::Request` into a command call and signs the reply.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http_api::{Reply, Request};
use serde_json::{json, Value};

use crate::app::{App, Call, Route};
use crate::auth::ratelimit::RetryAfter;
use crate::cmd;
use crate::cmd::endpoints::{self, Kind, HTTPS_PATHS};
use crate::error::ApiError;
use crate::service::audit;
use crate::service::metrics::RequestMetric;

/// Name of the captcha cookie and parameter.
pub const CAPTCHA_COOKIE: &str = "verify_code_id";

pub struct Api(
    pub Arc<App>,
    /// Each endpoint's request metrics for result 0, by its index in `ENDPOINTS`, resolved at its
    /// first success: a success, the common case, then skips the two label lookups of
    /// `Metrics::request`. A series appears in `/metrics` when first used, as with `request`.
    Box<[OnceLock<RequestMetric>]>,
);

impl Api {
    pub fn new(app: Arc<App>) -> Api {
        let successes = endpoints::ENDPOINTS.iter().map(|_| OnceLock::new());
        Api(app, successes.collect())
    }

    /// Counts a request to the endpoint at index `at` of `ENDPOINTS` answered `code`.
    fn count(&self, at: usize, code: i64, started: Instant) {
        let (route, elapsed) = (endpoints::ENDPOINTS[at].metric, started.elapsed());
        if code == 0 {
            self.1[at]
                .get_or_init(|| self.0.metrics.request_metric(route, 0))
                .record(elapsed);
        } else {
            self.0.metrics.request(route, code, elapsed);
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

/// A request refused for load: 429 (a rate limit) or 503 (the hashing queue is full), with
/// `Retry-After` and the signed body `{"result":112}`.
fn refused(
    app: &App,
    route: &'static str,
    started: Instant,
    e: &ApiError,
    retry: u64,
    call: Option<&Call>,
) -> Reply {
    app.metrics.request(route, e.code(), started.elapsed());
    app.metrics.refused(route, matches!(e, ApiError::Busy));
    let status = if matches!(e, ApiError::Busy) {
        503
    } else {
        429
    };
    Reply::Refused {
        status,
        body: app.sign(match call {
            Some(call) => cmd::reply::with_nonce(json!({"result": e.code()}), call),
            None => json!({"result": e.code()}),
        }),
        retry_after: retry,
    }
}

impl http_api::Handler for Api {
    fn routes(&self) -> &[&'static str] {
        &HTTPS_PATHS
    }

    async fn handle(&self, req: Request) -> Reply {
        let started = Instant::now();
        let app = &self.0;
        let _in_flight = app.metrics.in_flight();
        // The transport only routes paths from HTTPS_PATHS here.
        let Some((at, ep)) = endpoints::https_endpoint(&req.path) else {
            return Reply::Json(app.sign(cmd::reply::error_json(&ApiError::Params(format!(
                "no such endpoint {}",
                req.path
            )))));
        };
        let route = ep.metric;
        if let Err(RetryAfter(retry)) = app.limiter.allow_network(ep.budget, req.client_ip) {
            let e = ApiError::RateLimited;
            return refused(app, route, started, &e, retry, None);
        }
        let command = match ep.kind {
            Kind::Json(command) => command,
            Kind::Captcha => {
                let outcome = cmd::verify_code::run(app).await;
                self.count(at, endpoints::code_of(&outcome), started);
                return match outcome {
                    Ok(c) => self.captcha_reply(c),
                    Err(e) => Reply::Json(app.sign(cmd::reply::error_json(&e))),
                };
            }
        };
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
            signed: Default::default(),
        };
        let outcome = command(app, &call).await;
        if let Some((action, done)) = ep.audit {
            let code = endpoints::reply_code(&outcome);
            let r = audit::of_request(app, action, &call, code, done);
            app.audit.record(r).await;
        }
        match &outcome {
            Err(e @ ApiError::Busy) => return refused(app, route, started, e, 1, Some(&call)),
            Err(e @ ApiError::RateLimited) => {
                let retry = app.limiter.retry_after();
                return refused(app, route, started, e, retry, Some(&call));
            }
            _ => {}
        }
        let (code, body) = cmd::reply::signed_body(&app.secrets.sign_key, outcome, &call);
        self.count(at, code, started);
        Reply::JsonText(body)
    }

    fn error_body(&self, status: u16) -> Value {
        let code = if status == 500 { 1 } else { 2 };
        self.0.sign(json!({"result": code}))
    }
}
