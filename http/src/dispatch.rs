//! One request, from hyper's parsed head to the response: routing, method check, body reading
//! within limits, parameter extraction, the handler call and reply encoding.
//!
//! Every early answer (404, 405, 413, …) goes through [`Handler::error_body`] so the service signs
//! it. The handler call is guarded: a panic becomes a 500 with `error_body(500)` and an error log
//! line, not a dropped connection. Everything runs inside a span carrying the request id.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use tracing::{debug, error, info, warn, Instrument};

use crate::params::{self, BodyKind};
use crate::{client_ip, Handler, HttpConfig, Method, Reply, Request};

/// What every request of one listener shares.
pub(crate) struct Shared<H> {
    pub(crate) handler: Arc<H>,
    pub(crate) max_body: usize,
    pub(crate) body_read_timeout: Duration,
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    pub(crate) security_headers: bool,
    pub(crate) tls: bool,
}

impl<H> Shared<H> {
    pub(crate) fn new(handler: Arc<H>, cfg: &HttpConfig) -> Self {
        Self {
            handler,
            max_body: cfg.max_body,
            body_read_timeout: cfg.body_read_timeout,
            trusted_proxies: cfg.trusted_proxies.clone(),
            security_headers: cfg.security_headers,
            tls: cfg.tls.is_some(),
        }
    }
}

/// An answer before encoding, with whether the connection must close after it (the body may be
/// left unread).
struct Answer {
    reply: Reply,
    allow: bool,
    close: bool,
}

impl Answer {
    fn reply(reply: Reply) -> Self {
        Self {
            reply,
            allow: false,
            close: false,
        }
    }
}

/// hyper's service function: answers `req` from `peer`.
pub(crate) async fn respond<H: Handler>(
    shared: Arc<Shared<H>>,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let request_id = format!("{:016x}", rand::random::<u64>());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %truncate(req.uri().path(), 200),
        peer = %peer,
        client_ip = tracing::field::Empty,
    );
    async move {
        let started = Instant::now();
        let answer = answer(&shared, peer, req, &request_id).await;
        let response = encode(&shared, answer, &request_id);
        let status = response.status().as_u16();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        // A line per request at debug; at info only for an HTTP error status (per-endpoint counts
        // and latencies are in the metrics). A line per success cost about a tenth of a cheap
        // request (BENCHMARKS.md).
        if status < 400 {
            debug!(status, elapsed_ms, "request done");
        } else {
            info!(status, elapsed_ms, "request done");
        }
        Ok(response)
    }
    .instrument(span)
    .await
}

async fn answer<H: Handler>(
    shared: &Shared<H>,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
    request_id: &str,
) -> Answer {
    let handler = &shared.handler;
    let error = |status: u16, close: bool| Answer {
        reply: Reply::Status(status, handler.error_body(status)),
        allow: status == 405,
        close,
    };

    let path = req.uri().path();
    if !handler.routes().contains(&path) {
        return error(404, false);
    }
    let method = match *req.method() {
        hyper::Method::GET => Method::Get,
        hyper::Method::POST => Method::Post,
        _ => return error(405, false),
    };
    let path = path.to_owned();
    let query = req.uri().query().unwrap_or_default().as_bytes().to_vec();
    let (parts, body) = req.into_parts();

    let mut params = match params::parse_urlencoded(&query) {
        Ok(p) => p,
        Err(e) => {
            info!(error = %e, "bad query string");
            return error(400, method == Method::Post);
        }
    };
    if method == Method::Post {
        match body_params(shared, &parts.headers, body).await {
            Ok(body_params) => params.extend(body_params),
            Err((status, close)) => return error(status, close),
        }
    }
    if let Err(e) = params::check_unique(&params) {
        info!(error = %e, "bad parameters");
        return error(400, false);
    }

    let request = Request {
        method,
        path,
        params,
        cookies: params::parse_cookies(
            parts
                .headers
                .get_all(header::COOKIE)
                .iter()
                .map(|v| v.as_bytes()),
        ),
        headers: utf8_headers(&parts.headers),
        client_ip: client_ip_of(shared, peer, &parts.headers),
        request_id: request_id.to_owned(),
    };
    tracing::Span::current().record("client_ip", tracing::field::display(request.client_ip));
    match AssertUnwindSafe(handler.handle(request))
        .catch_unwind()
        .await
    {
        Ok(reply) => Answer::reply(reply),
        Err(_) => {
            error!("handler panicked");
            error(500, false)
        }
    }
}

/// The parameters of a POST body, read within the size and time limits; otherwise the status to
/// answer and whether the connection must close (the body may be left unread).
async fn body_params<H>(
    shared: &Shared<H>,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Vec<(String, String)>, (u16, bool)> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > shared.max_body as u64) {
        info!(declared, "declared body over the limit");
        return Err((413, true));
    }
    let bytes = read_body(body, shared.max_body, shared.body_read_timeout)
        .await
        .map_err(|status| (status, true))?;
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
    params::body_kind(content_type)
        .map_err(|e| (415, e))
        .and_then(|kind| {
            match kind {
                BodyKind::Form => params::parse_urlencoded(&bytes),
                BodyKind::Json => params::parse_json_object(&bytes),
            }
            .map_err(|e| (400, e))
        })
        .map_err(|(status, e)| {
            info!(error = %e, "bad body");
            (status, false)
        })
}

/// The client's address: the peer, or the `X-Forwarded-For` entry a trusted proxy vouches for.
fn client_ip_of<H>(shared: &Shared<H>, peer: SocketAddr, headers: &HeaderMap) -> std::net::IpAddr {
    client_ip::client_ip(
        peer.ip(),
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok()),
        &shared.trusted_proxies,
    )
}

/// Collects a body of at most `max` bytes within `timeout`; otherwise the status to answer.
async fn read_body(body: Incoming, max: usize, timeout: Duration) -> Result<Bytes, u16> {
    match tokio::time::timeout(timeout, Limited::new(body, max).collect()).await {
        Err(_) => {
            info!("body not received in time");
            Err(408)
        }
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            info!("body over the limit");
            Err(413)
        }
        Ok(Err(e)) => {
            info!(error = %e, "body unreadable");
            Err(400)
        }
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

fn utf8_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let value = std::str::from_utf8(value.as_bytes()).ok()?;
            Some((name.as_str().to_owned(), value.to_owned()))
        })
        .collect()
}

fn status_of(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or_else(|_| {
        warn!(code, "handler gave an invalid status; sending 500");
        StatusCode::INTERNAL_SERVER_ERROR
    })
}

fn encode<H>(shared: &Shared<H>, answer: Answer, request_id: &str) -> Response<Full<Bytes>> {
    let json = HeaderValue::from_static("application/json");
    let (status, content_type, body, extra) = match answer.reply {
        Reply::Json(v) => (StatusCode::OK, json, json_bytes(&v), Vec::new()),
        Reply::JsonText(body) => (StatusCode::OK, json, body, Vec::new()),
        Reply::Status(code, v) => (status_of(code), json, json_bytes(&v), Vec::new()),
        Reply::Refused {
            status,
            body,
            retry_after,
        } => (
            status_of(status),
            json,
            json_bytes(&body),
            vec![("Retry-After".to_owned(), retry_after.to_string())],
        ),
        Reply::Body {
            content_type,
            body,
            headers,
        } => {
            let ct = HeaderValue::from_str(&content_type).unwrap_or_else(|_| {
                warn!("handler gave an invalid content type");
                HeaderValue::from_static("application/octet-stream")
            });
            (StatusCode::OK, ct, body, headers)
        }
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    for (name, value) in extra {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(n), Ok(v)) => {
                h.append(n, v);
            }
            _ => warn!(header = %truncate(&name, 100), "handler gave an invalid header; dropped"),
        }
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    if answer.allow {
        h.insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    }
    if answer.close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if shared.security_headers {
        let fixed = [
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ];
        for (name, value) in fixed {
            h.insert(name, HeaderValue::from_static(value));
        }
        if !h.contains_key(header::CACHE_CONTROL) {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        if shared.tls {
            h.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000"),
            );
        }
    }
    response
}

fn json_bytes(v: &serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec()))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
