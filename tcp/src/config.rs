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
        }
    }
}

impl TcpConfig {
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
