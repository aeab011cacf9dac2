//! Allow-list, connection bound, idle timeout, a client that never reads, shutdown.

use std::time::{Duration, Instant};

use serde_json::json;
use tcp_api::TcpConfig;
use tokio::io::AsyncReadExt;

use crate::common::{config, start, start_connected, Client};

#[tokio::test]
async fn a_peer_outside_the_allow_list_is_closed_at_once() {
    // The idle timeout is far beyond the wait, so a close within it is the allow-list's.
    let (_srv, mut c) = start_connected(config(|cfg| {
        cfg.allow = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        cfg.idle_timeout = Duration::from_secs(3600);
    }))
    .await;
    let _ = c.wr.try_write(b"/echo {}\n");
    assert!(c.closed_within(Duration::from_secs(30)).await);
}

#[tokio::test]
async fn connections_are_bounded() {
    let srv = start(config(|cfg| cfg.max_connections = 2)).await;
    let mut a = Client::connect(srv.addr).await;
    let mut b = Client::connect(srv.addr).await;
    a.send(b"/echo {}\n").await;
    b.send(b"/echo {}\n").await;
    a.reply().await;
    b.reply().await;
    let mut third = Client::connect(srv.addr).await;
    assert!(third.closed_within(Duration::from_secs(2)).await);
    drop(a);
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut c = Client::connect(srv.addr).await;
        let _ = c.wr.try_write(b"/echo {}\n");
        if c.try_reply().await.is_some() {
            served = true;
            break;
        }
    }
    assert!(served, "a freed slot was never reused");
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    // Wide margins for a loaded machine: requests 300 ms apart keep a connection with a 1.5 s
    // idle timeout open for 2.4 s; silence then closes it no sooner than 1.5 s after the last
    // request was sent (the server's timer restarts only after it answered that request).
    let idle = Duration::from_millis(1500);
    let (_srv, mut c) = start_connected(config(|cfg| cfg.idle_timeout = idle)).await;
    let mut last_sent = Instant::now();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        last_sent = Instant::now();
        c.send(b"/echo {}\n").await;
        c.reply().await;
    }
    assert!(c.closed_within(Duration::from_secs(30)).await);
    let waited = last_sent.elapsed();
    assert!(waited >= idle, "{waited:?}");
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_block_others_and_is_dropped() {
    let srv = start(config(|cfg| cfg.write_timeout = Duration::from_millis(500))).await;
    let mut hog = Client::connect(srv.addr).await;
    // ~32 MiB of replies, never read: the socket buffers fill and the server's write stalls.
    let writer = {
        let input = "/big {\"kib\":64}\n".repeat(512);
        tokio::spawn(async move {
            let _ = tokio::io::AsyncWriteExt::write_all(&mut hog.wr, input.as_bytes()).await;
            hog
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut other = Client::connect(srv.addr).await;
    for i in 0..10 {
        other
            .send(format!("/echo {{\"i\":{i}}}\n").as_bytes())
            .await;
        assert_eq!(other.reply().await, json!({"result": 0, "body": {"i": i}}));
    }
    // The hog is dropped after the write timeout: reading now drains what was sent, then EOF.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut hog = tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .expect("writer finished")
        .unwrap();
    let mut sink = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), hog.rd.read_to_end(&mut sink)).await;
    assert!(r.is_ok(), "hog connection still open");
    assert!(
        sink.len() < 32 * 1024 * 1024,
        "the hog did not get every reply"
    );
}

#[tokio::test]
async fn shutdown_sends_in_flight_replies_then_closes() {
    let (mut srv, mut c) = start_connected(TcpConfig::default()).await;
    let mut idle = Client::connect(srv.addr).await;
    idle.send(b"/echo {}\n").await;
    idle.reply().await;
    c.send(b"/sleep {\"ms\":1000,\"i\":7}\n").await;
    srv.running.reach(1).await;
    srv.shutdown.cancel();
    assert_eq!(c.reply().await, json!({"result": 0, "i": 7}));
    assert!(c.closed_within(Duration::from_secs(2)).await);
    assert!(idle.closed_within(Duration::from_secs(2)).await);
    srv.returned(3).await;
}

#[tokio::test]
async fn the_drain_deadline_drops_slow_requests() {
    let (mut srv, mut c) =
        start_connected(config(|cfg| cfg.drain = Duration::from_millis(300))).await;
    c.send(b"/sleep {\"ms\":10000,\"i\":1}\n").await;
    srv.running.reach(1).await;
    let started = Instant::now();
    srv.shutdown.cancel();
    srv.returned(5).await;
    // Well before the request's 10 s: the 300 ms drain cut it.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(c.try_reply().await.is_none());
}
