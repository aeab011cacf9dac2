//! `X-Forwarded-For` is believed only from trusted proxies.

use crate::common::{body, config, raw, start};

const REQ: &[u8] = b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6, 198.51.100.7\r\nConnection: close\r\n\r\n";

/// The client address the handler sees for [`REQ`] when `trusted` is the one trusted proxy range.
async fn client_ip_behind(trusted: &str) -> serde_json::Value {
    let srv = start(config(|cfg| {
        cfg.trusted_proxies = vec![trusted.parse().unwrap()]
    }))
    .await;
    body(&raw(srv.addr, REQ).await)["client_ip"].clone()
}

#[tokio::test]
async fn ignored_from_an_untrusted_peer() {
    assert_eq!(client_ip_behind("10.0.0.0/8").await, "127.0.0.1");
}

#[tokio::test]
async fn honoured_from_a_trusted_peer() {
    assert_eq!(client_ip_behind("127.0.0.0/8").await, "198.51.100.7");
}
