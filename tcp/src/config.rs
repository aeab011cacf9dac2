//! Limits and options of the TCP listener. The defaults suit a loopback listener serving IM
//! backends; build with `TcpConfig { allow, ..Default::default() }`.

use std::time::Duration;

/// Options of [`serve`](crate::serve).
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Source networks allowed to connect (default `127.0.0.0/8` and `::1/128`). Others are closed
    /// at once without reading. IPv4-mapped IPv6 peers are matched as IPv4.
    pub allow: Vec<ipnet::IpNet>,
    /// Connections served at once (default 10 000); one over is closed at once.
    pub max_connections: usize,
    /// A connection with no request in flight and no bytes received for this long is closed
    /// (default 300 s).
    pub idle_timeout: Duration,
    /// Longest request line in bytes, without its `\n` (default 64 KiB).
    pub max_line: usize,
    /// Time allowed to write a batch of replies (default 10 s); a client that does not read its
    /// replies is dropped when it runs out.
    pub write_timeout: Duration,
    /// Requests of one connection in flight at once (default 64; 0 counts as 1); reading pauses
    /// beyond.
    pub max_pipeline: usize,
    /// On shutdown, how long connections may take to finish their in-flight requests before they
    /// are dropped (default 5 s).
    pub drain: Duration,
    /// Shared secret of the backends (default none). When set, the first request of every
    /// connection must be `/auth {"token":"…"}` with this secret (compared in constant time); a
    /// connection that sends anything else, or a wrong secret, gets
    /// [`LineHandler::auth_refused`](crate::LineHandler::auth_refused) and is closed. Checked once
    /// per connection: nothing is added to the requests that follow.
    pub auth_token: Option<std::sync::Arc<[u8]>>,
    /// TLS on the listener (default none): every connection starts with a TLS handshake, which
    /// must end within [`idle_timeout`](Self::idle_timeout).
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Threads of the listener's own (default 0: none). With 0, connections are tasks of the
    /// runtime that calls [`serve`](crate::serve). With N, each of N threads runs a
    /// single-threaded runtime, and each admitted connection is served, for its whole life, by
    /// the thread with the fewest connections; requests the handler answers from memory are
    /// answered there, and [`handle`](crate::LineHandler::handle) runs on the calling runtime.
    pub threads: usize,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            allow: vec![
                "127.0.0.0/8".parse().expect("valid network"),
                "::1/128".parse().expect("valid network"),
            ],
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(300),
            max_line: 64 * 1024,
            write_timeout: Duration::from_secs(10),
            max_pipeline: 64,
            drain: Duration::from_secs(5),
            auth_token: None,
            tls: None,
            threads: 0,
        }
    }
}

impl TcpConfig {
    /// Whether `token` is the backends' secret, in time independent of where they differ. With no
    /// secret configured every connection is admitted and this is never asked.
    pub fn auth_matches(&self, token: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        match &self.auth_token {
            // The length of the secret is not hidden; its bytes are.
            Some(secret) => secret.len() == token.len() && bool::from(secret.ct_eq(token)),
            None => true,
        }
    }

    /// Whether `ip` may connect.
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allow.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_secret_must_match_exactly() {
        let mut cfg = TcpConfig::default();
        assert!(cfg.auth_matches(b"anything"), "no secret: open");
        cfg.auth_token = Some(std::sync::Arc::from(&b"s3cret-value"[..]));
        assert!(cfg.auth_matches(b"s3cret-value"));
        for no in [
            &b""[..],
            b"s3cret",
            b"s3cret-valuf",
            b"s3cret-value ",
            b"S3CRET-VALUE",
        ] {
            assert!(!cfg.auth_matches(no), "{no:?}");
        }
    }

    #[test]
    fn default_allows_loopback_only() {
        let cfg = TcpConfig::default();
        for ok in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(cfg.allows(ok.parse().unwrap()), "{ok}");
        }
        for no in ["10.0.0.1", "::2", "192.168.1.1", "::ffff:10.0.0.1"] {
            assert!(!cfg.allows(no.parse().unwrap()), "{no}");
        }
    }
}
