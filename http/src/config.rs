//! Limits and options of the HTTPS listener.
//!
//! Every input a client controls is bounded here: body size, header size, the time to send
//! headers and body, the number of connections, the idle time of a kept-alive connection. The
//! defaults suit an internet-facing listener; build with `HttpConfig { tls, ..Default::default() }`.

use std::sync::Arc;
use std::time::Duration;

/// Options of [`serve`](crate::serve).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// rustls server configuration; `None` serves plain HTTP (behind a TLS-terminating proxy, or
    /// in tests). See [`tls_config_from_pem`](crate::tls_config_from_pem).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Largest accepted request body in bytes (default 64 KiB). Beyond: 413 with `error_body(413)`,
    /// whether the size is declared by `Content-Length` or discovered while reading (chunked, or a
    /// client sending more than it declared).
    pub max_body: usize,
    /// Largest request head (request line + headers) in bytes (default 16 KiB). Beyond: 431.
    pub max_header_bytes: usize,
    /// Time a client has to complete the TLS handshake and then each request head (default 10 s);
    /// a slower client is disconnected. Zero means no limit (not for an internet-facing listener).
    pub header_read_timeout: Duration,
    /// Time a client has to send the body once the head is in (default 10 s); beyond: 408.
    pub body_read_timeout: Duration,
    /// Connections served at once (default 1024). A connection accepted over the limit is closed
    /// at once rather than left waiting, so a flood cannot fill the kernel backlog with sockets that
    /// will time out anyway, and a well-behaved client sees the refusal immediately.
    pub max_connections: usize,
    /// How long a kept-alive connection may wait for its next request (default 10 s); zero turns
    /// keep-alive off. hyper starts its header timer as soon as a connection waits for a request,
    /// so the effective idle limit is the smaller of this and `header_read_timeout`.
    pub keepalive_idle: Duration,
    /// Proxies whose `X-Forwarded-For` is believed (default: none).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Add `X-Content-Type-Options: nosniff`, `Cache-Control: no-store` (unless the reply set its
    /// own), `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer` and, over TLS,
    /// `Strict-Transport-Security: max-age=31536000` (default true).
    pub security_headers: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            tls: None,
            max_body: 64 * 1024,
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            keepalive_idle: Duration::from_secs(10),
            trusted_proxies: Vec::new(),
            security_headers: true,
        }
    }
}
