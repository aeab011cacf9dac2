//! The TCP JSON line API of `register` (SPEC §6): framing, pipelining and limits — and nothing
//! about accounts.
//!
//! The service implements [`LineHandler`]; this crate reads requests, hands each to the handler and
//! writes the replies back in order.
//!
//! # Protocol (what the service documentation can rely on)
//!
//! - A request is one line: `PATH JSON`, e.g. `/verify_access_token {"access_token":"…"}`,
//!   ended by `\n` or `\r\n`. Path and JSON are separated by spaces or tabs; a line with only a path
//!   has the body `{}`. The line must be UTF-8.
//! - A reply is one line: a compact JSON object followed by `\n`, one per request, in request order.
//!   Clients may pipeline: up to [`TcpConfig::max_pipeline`] requests of one connection are handled
//!   concurrently; reading pauses beyond that.
//! - An empty (or all-blank) line is ignored and gets **no** reply, so a client may send blank lines
//!   as keep-alives.
//! - A malformed line — not UTF-8, no leading `/PATH`, bad JSON, JSON that is not an object — gets
//!   [`LineHandler::malformed`] (`{"result":2}`) in its place, and the connection goes on. An
//!   unknown path is not malformed: it goes to the handler, which answers it.
//! - A line longer than [`TcpConfig::max_line`] bytes (64 KiB) gets one `malformed` reply, after
//!   the replies to the lines before it, and then the connection is closed: its end cannot be found
//!   reliably, so nothing after it can be trusted to be a request.
//! - With [`TcpConfig::auth_token`] set, the first request of a connection must be
//!   `/auth {"token":"SECRET"}`: it gets [`LineHandler::auth_accepted`] (`{"result":0}`) and the
//!   connection goes on as above; anything else as the first request (or a wrong secret, or a
//!   line too long, or nothing within the idle timeout) gets [`LineHandler::auth_refused`] and the
//!   connection is closed. Blank lines before it are ignored.
//! - With [`TcpConfig::tls`] set, each connection is TLS (rustls) first; a peer that does not
//!   complete the handshake within the idle timeout is closed.
//! - A handler that panics gets [`LineHandler::internal_error`] (`{"result":1}`) in its place.
//! - A peer outside [`TcpConfig::allow`], or a connection over [`TcpConfig::max_connections`], is
//!   closed at once without reading. A connection with nothing in flight and nothing received for
//!   [`TcpConfig::idle_timeout`] is closed. A client that does not read its replies within
//!   [`TcpConfig::write_timeout`] is dropped. On shutdown, connections stop reading, finish and send
//!   their in-flight replies, and close.
//!
//! # Memory
//!
//! One task per connection and little else while idle: its read buffer is released whenever it
//! holds no partial line, and the queue of in-flight requests exists only while there are some, so
//! an idle connection costs a few hundred bytes of task state, the two futures through which it
//! waits for shutdown (about 0.4 KiB), and the kernel's socket buffers. On threads of the
//! listener's own ([`TcpConfig::threads`]) the service's bench measured about 0.25 KiB more a
//! connection.
//!
//! Module map: [`config`] (limits), `frame` (line splitting and parsing, pure), `conn` (one
//! connection), `server` (accept loop, allow-list, connection limit, drain), `lanes` (the
//! listener's own threads, [`TcpConfig::threads`]).

pub mod config;

mod conn;
mod frame;
mod lanes;
mod server;

pub use config::TcpConfig;
pub use server::serve;

use std::future::Future;
use std::net::SocketAddr;

use serde_json::Value;

/// The service side of the TCP API. Implemented by the service, called by this crate.
pub trait LineHandler: Send + Sync + 'static {
    /// Answers one request. `path` is like `"/verify_access_token"` (any path: the handler answers
    /// unknown ones, e.g. with `{"result":2}`); `body` is the parsed JSON object. The reply should
    /// be a JSON object; the service signs it.
    fn handle(
        &self,
        path: &str,
        body: Value,
        peer: SocketAddr,
    ) -> impl Future<Output = Value> + Send;

    /// Answers a request at once, from memory, if the handler can: appends the reply (one JSON
    /// object, already signed, without the newline) to `out` and returns `true`. Returns `false`,
    /// with `out` untouched, for anything it does not answer this way; the request then goes to
    /// [`handle`](Self::handle). `json` is the request's JSON text as received, trimmed, not yet
    /// parsed (empty when the line has only a path); a `true` answer must be exactly what `handle`
    /// would reply to the parsed request.
    ///
    /// This is the hot path of a token check: no future, no parsed JSON value, no reply value.
    /// The connection calls it only when no earlier request of the connection is still in flight,
    /// so the reply can go straight into the output. Default: `false`.
    fn answer_now(&self, path: &str, json: &str, peer: SocketAddr, out: &mut Vec<u8>) -> bool {
        let _ = (path, json, peer, out);
        false
    }

    /// A connection was admitted (`open`) or has ended (`!open`); for a gauge of open
    /// connections. Default: nothing.
    fn connection(&self, open: bool) {
        let _ = open;
    }

    /// Reply for a malformed line (bad JSON, no path, not an object, not UTF-8, too long); the
    /// service signs it. Default: `{"result":2}`.
    fn malformed(&self) -> Value {
        serde_json::json!({ "result": 2 })
    }

    /// Reply to a connection that did not authenticate when [`TcpConfig::auth_token`] is set
    /// (first request not `/auth`, or a wrong secret); the connection is closed after it. The
    /// service signs it. Default: `{"result":100}`.
    fn auth_refused(&self) -> Value {
        serde_json::json!({ "result": 100 })
    }

    /// Reply to an accepted `/auth`. The service signs it. Default: `{"result":0}`.
    fn auth_accepted(&self) -> Value {
        serde_json::json!({ "result": 0 })
    }

    /// Reply in place of a handler call that panicked. Default: `{"result":1}`.
    fn internal_error(&self) -> Value {
        serde_json::json!({ "result": 1 })
    }
}
