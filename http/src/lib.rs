//! The HTTPS transport of `register`: hyper (HTTP/1.1) over rustls, request parsing, routing and
//! reply encoding — and nothing about accounts.
//!
//! The service implements [`Handler`]: it names the paths it serves ([`Handler::routes`]), turns a
//! parsed [`Request`] into a [`Reply`], and supplies the JSON body of transport-level errors
//! ([`Handler::error_body`]) so that it can sign them like any other reply. This crate owns
//! everything that happens before and after: TLS, limits, parameter extraction, the client IP behind
//! trusted proxies, request ids, security headers, graceful shutdown.
//!
//! # Transport rules (what the service documentation can rely on)
//!
//! | situation | status | body |
//! |---|---|---|
//! | path not in [`Handler::routes`] (any method) | 404 | `error_body(404)` |
//! | method other than GET/POST — HEAD and OPTIONS included (no CORS: the API is for apps) | 405 + `Allow: GET, POST` | `error_body(405)` |
//! | POST body with a `Content-Type` other than form/json, or a non-UTF-8 `charset` | 415 | `error_body(415)` |
//! | malformed body or query: bad JSON, JSON not an object, non-UTF-8 after percent-decoding, a parameter given twice | 400 | `error_body(400)` |
//! | body over [`HttpConfig::max_body`] (declared or actual, chunked or not) | 413 + `Connection: close` | `error_body(413)` |
//! | body not received within [`HttpConfig::body_read_timeout`] | 408 + `Connection: close` | `error_body(408)` |
//! | the handler panicked | 500 | `error_body(500)` |
//! | headers over [`HttpConfig::max_header_bytes`] | 431 (hyper, empty body), then close | — |
//! | headers not complete within [`HttpConfig::header_read_timeout`] | connection closed | — |
//! | over [`HttpConfig::max_connections`] | accepted, then closed at once | — |
//!
//! An empty POST body is no parameters whatever its `Content-Type`; a GET body is ignored. Every
//! reply carries `X-Request-Id`; every log line about a request is inside a span holding it. Each
//! request ends with a `request done` line: at debug level, or at info when its status is 400 or
//! more.
//!
//! Module map: [`config`] (limits), [`tls`] (rustls configuration), `params` (query, form, JSON and
//! cookie parsing), `client_ip` (`X-Forwarded-For`), `dispatch` (one request: routing, body, handler
//! call, reply encoding), `server` (accept loop, connection limit, TLS handshake, drain).

pub mod config;
pub mod tls;

mod client_ip;
mod dispatch;
mod linger;
mod params;
mod server;

pub use config::HttpConfig;
pub use server::serve;
pub use tls::{tls_config_from_pem, TlsError};

use std::future::Future;
use std::net::IpAddr;

/// The HTTP methods the API accepts; every other method is answered 405 before the handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Parameters in the query string.
    Get,
    /// Parameters in a form or JSON body, plus any in the query string.
    Post,
}

/// A request as the handler sees it: routed, with its parameters extracted and checked for
/// duplicates, its client IP resolved and a request id assigned.
#[derive(Debug, Clone)]
pub struct Request {
    /// GET or POST.
    pub method: Method,
    /// The URI path, e.g. `/login` (always one of [`Handler::routes`]).
    pub path: String,
    /// Parameters in the order sent. Query string for GET; for POST the query string first, then
    /// the body: `application/x-www-form-urlencoded`, or `application/json` (an object: a string
    /// value stays as is; any other value — array, number, bool, null, object — becomes its compact
    /// JSON text). Names are unique: a duplicated name was already answered 400.
    pub params: Vec<(String, String)>,
    /// Cookies from every `Cookie` header, in order (duplicates kept).
    pub cookies: Vec<(String, String)>,
    /// Lower-cased header names and values (only those that are valid UTF-8).
    pub headers: Vec<(String, String)>,
    /// Peer IP, or the right-most untrusted `X-Forwarded-For` entry when the peer is in
    /// [`HttpConfig::trusted_proxies`].
    pub client_ip: IpAddr,
    /// 16 random hex characters; also sent back as `X-Request-Id` and recorded in the request's
    /// tracing span.
    pub request_id: String,
}

impl Request {
    /// The value of parameter `name`, if sent.
    pub fn param(&self, name: &str) -> Option<&str> {
        find(&self.params, name)
    }

    /// The value of the first cookie called `name`, if sent.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        find(&self.cookies, name)
    }

    /// The value of the first header called `name` (give it lower-cased), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }
}

fn find<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// What the handler answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 `application/json` with this body (already signed by the service).
    Json(serde_json::Value),
    /// 200 `application/json` with this body as it is: JSON the handler wrote itself (a reply
    /// signed and serialized in one go, without building a `serde_json::Value`).
    JsonText(bytes::Bytes),
    /// Any status with a JSON body (404/405/413/429/503 etc.). An invalid status becomes 500.
    Status(u16, serde_json::Value),
    /// A request refused for load (429 for a rate limit, 503 for a full queue) with a JSON body and
    /// `Retry-After: retry_after` (seconds).
    Refused {
        status: u16,
        body: serde_json::Value,
        retry_after: u64,
    },
    /// 200 with an arbitrary body (`image/png` for the captcha, `text/plain` for metrics). Headers
    /// that are not valid HTTP are dropped with a warning; a `Cache-Control` here replaces the
    /// default `no-store`.
    Body {
        /// The `Content-Type` header.
        content_type: String,
        /// The body bytes.
        body: bytes::Bytes,
        /// Extra headers, e.g. `Set-Cookie` or `X-Verify-Code-Id`.
        headers: Vec<(String, String)>,
    },
}

/// The service side of the HTTPS API. Implemented by the service, called by this crate.
pub trait Handler: Send + Sync + 'static {
    /// Paths this handler serves (exact match); others get 404 with `error_body(404)`.
    fn routes(&self) -> &[&'static str];

    /// Answers one routed, parsed request.
    fn handle(&self, req: Request) -> impl Future<Output = Reply> + Send;

    /// JSON body for transport-level errors (400, 404, 405, 408, 413, 415, 500), so the service can
    /// sign it. `status` is the HTTP status. Default: `{"result":2}`.
    fn error_body(&self, status: u16) -> serde_json::Value {
        let _ = status;
        serde_json::json!({ "result": 2 })
    }
}
