//! `X-Forwarded-For` is believed only from trusted proxies.

use http_api::HttpConfig;

use crate::common::{body, raw, start};

const REQ: &[u8] = b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6, 198.51.100.7\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn ignored_from_an_untrusted_peer() {
    let srv = start(HttpConfig {
        trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
        ..HttpConfig::default()
    })
    .await;
    assert_eq!(body(&raw(srv.addr, REQ).await)["client_ip"], "127.0.0.1");
}

#[tokio::test]
async fn honoured_from_a_trusted_peer() {
    let srv = start(HttpConfig {
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..HttpConfig::default()
    })
    .await;
    assert_eq!(body(&raw(srv.addr, REQ).await)["client_ip"], "198.51.100.7");
}
