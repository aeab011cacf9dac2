//! Every input a client controls is bounded: body size (declared, chunked, lied about), header size,
//! header and body time, connection count.

use std::time::{Duration, Instant};

use http_api::HttpConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{body, client, config, header, raw, read_to_close, start, status};

fn small() -> HttpConfig {
    HttpConfig {
        max_body: 1024,
        ..HttpConfig::default()
    }
}

/// Sends `request` on its own connection, checks that it is refused with `code` and the handler's
/// error body, and returns the whole reply.
async fn refused(addr: std::net::SocketAddr, request: &[u8], code: u16) -> String {
    let resp = raw(addr, request).await;
    assert_eq!(status(&resp), code, "{resp}");
    assert_eq!(body(&resp), json!({"result": 2, "status": code}));
    resp
}

#[tokio::test]
async fn declared_huge_body_is_413_before_reading_it() {
    let srv = start(small()).await;
    let resp = refused(
        srv.addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{",
        413,
    )
    .await;
    assert_eq!(header(&resp, "connection"), Some("close"));
}

#[tokio::test]
async fn body_over_the_limit_is_413_through_reqwest() {
    let srv = start(small()).await;
    let post = |len: usize| {
        let form = [("a", "x".repeat(len))];
        client().post(srv.url("/echo")).form(&form).send()
    };
    let resp = post(2000).await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["status"],
        413
    );
    // Exactly at the limit is fine.
    assert_eq!(post(1022).await.unwrap().status(), 200);
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    let srv = start(small()).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let (mut rd, mut wr) = s.into_split();
    // Keep sending chunks; the server stops reading at the limit, so writes may fail: fine.
    let writer = tokio::spawn(async move {
        let chunk = format!("100\r\n{}\r\n", "a".repeat(256));
        for _ in 0..1000 {
            if wr.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut out)).await;
    writer.abort();
    let resp = String::from_utf8_lossy(&out);
    assert_eq!(status(&resp), 413, "{resp}");
}

#[tokio::test]
async fn a_body_longer_than_declared_does_not_smuggle_a_request() {
    let srv = start(small()).await;
    // Declares 3 bytes, sends 3 + a pile of garbage (and no valid second request).
    let mut req = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=1".to_vec();
    req.extend(std::iter::repeat_n(b'z', 100_000));
    let resp = raw(srv.addr, &req).await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert!(resp.contains(r#""params":[["a","1"]]"#), "{resp}");
    // The garbage after it is refused as a request, and the connection closed (raw returned).
    let rest = &resp[resp.find("\r\n\r\n").unwrap()..];
    assert!(!rest.contains("HTTP/1.1 200"), "{resp}");
    // Still serving.
    let ok = raw(
        srv.addr,
        b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&ok), 200);
}

#[tokio::test]
async fn a_body_shorter_than_declared_times_out_with_408() {
    let srv = start(HttpConfig {
        body_read_timeout: Duration::from_millis(500),
        ..small()
    })
    .await;
    let started = Instant::now();
    refused(
        srv.addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{}",
        408,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn headers_over_the_limit_are_431() {
    let srv = start(config(|cfg| cfg.max_header_bytes = 4096)).await;
    let req = format!(
        "GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(5000)
    );
    let resp = raw(srv.addr, req.as_bytes()).await;
    assert_eq!(status(&resp), 431, "{resp}");
    // Just under is fine.
    let req = format!(
        "GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(3900)
    );
    assert_eq!(status(&raw(srv.addr, req.as_bytes()).await), 200);
}

#[tokio::test]
async fn a_slow_header_client_is_cut() {
    let srv = start(config(|cfg| {
        cfg.header_read_timeout = Duration::from_millis(800)
    }))
    .await;
    // Timed from before the connection exists, so the server's timer cannot have started
    // earlier: the cut comes no sooner than the timeout.
    let started = Instant::now();
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let drip = format!(
        "GET /echo HTTP/1.1\r\nHost: t\r\nX-Slow: {}",
        "a".repeat(200)
    );
    let drip = drip.as_bytes();
    let mut closed_at = None;
    for byte in drip {
        if s.write_all(&[*byte]).await.is_err() {
            closed_at = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_at = Some(started.elapsed());
                break;
            }
            _ => {}
        }
    }
    let closed_at = closed_at.expect("slow client never cut");
    assert!(closed_at >= Duration::from_millis(800), "{closed_at:?}");
    assert!(closed_at < Duration::from_secs(10), "{closed_at:?}");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let srv = start(config(|cfg| {
        cfg.keepalive_idle = Duration::from_millis(600)
    }))
    .await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    // Timed from before the request: the idle time starts after its reply.
    let started = Instant::now();
    s.write_all(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let resp = read_to_close(&mut s).await;
    assert_eq!(status(&resp), 200, "{resp}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(600), "{waited:?}");
}

#[tokio::test]
async fn connections_are_bounded() {
    let srv = start(config(|cfg| {
        cfg.max_connections = 2;
        cfg.header_read_timeout = Duration::from_secs(60);
        cfg.keepalive_idle = Duration::from_secs(60);
    }))
    .await;
    let a = TcpStream::connect(srv.addr).await.unwrap();
    let b = TcpStream::connect(srv.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The third is accepted and closed at once: no reply, and EOF within `raw`'s 10 s, long
    // before the 60 s header and keep-alive timeouts could close it.
    let resp = raw(
        srv.addr,
        b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(resp, "");
    // Freeing one slot lets a new connection in.
    drop(a);
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let resp = raw(
            srv.addr,
            b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        if status(&resp) == 200 {
            served = true;
            break;
        }
    }
    assert!(served, "a freed slot was never reused");
    drop(b);
}
