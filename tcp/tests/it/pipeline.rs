//! Pipelining: requests of one connection run concurrently, replies come back in request order.

use std::time::{Duration, Instant};

use serde_json::json;
use tcp_api::TcpConfig;

use crate::common::{start, Client};

#[tokio::test]
async fn a_hundred_pipelined_requests_are_answered_in_order() {
    let srv = start(TcpConfig::default()).await;
    let mut c = Client::connect(srv.addr).await;
    let mut input = String::new();
    for i in 0..100 {
        // Later requests often finish first; replies must still come in order.
        let ms = (100 - i) % 7 * 5;
        input.push_str(&format!("/sleep {{\"ms\":{ms},\"i\":{i}}}\n"));
    }
    c.send(input.as_bytes()).await;
    for i in 0..100 {
        assert_eq!(c.reply().await, json!({"result": 0, "i": i}));
    }
}

#[tokio::test]
async fn pipelined_requests_run_concurrently() {
    let srv = start(TcpConfig::default()).await;
    let mut c = Client::connect(srv.addr).await;
    let started = Instant::now();
    c.send("/sleep {\"ms\":400,\"i\":0}\n".repeat(10).as_bytes())
        .await;
    for _ in 0..10 {
        c.reply().await;
    }
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn in_flight_requests_are_bounded_by_max_pipeline() {
    let srv = start(TcpConfig {
        max_pipeline: 2,
        ..TcpConfig::default()
    })
    .await;
    let mut c = Client::connect(srv.addr).await;
    let started = Instant::now();
    c.send("/sleep {\"ms\":200,\"i\":0}\n".repeat(6).as_bytes())
        .await;
    for _ in 0..6 {
        c.reply().await;
    }
    // 6 requests, 2 at a time, 200 ms each: at least 3 rounds.
    assert!(
        started.elapsed() >= Duration::from_millis(580),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn many_connections_pipelining_at_once() {
    let srv = start(TcpConfig::default()).await;
    let mut tasks = Vec::new();
    for n in 0..50 {
        let addr = srv.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            let input: String = (0..20)
                .map(|i| format!("/echo {{\"n\":{n},\"i\":{i}}}\n"))
                .collect();
            c.send(input.as_bytes()).await;
            for i in 0..20 {
                assert_eq!(
                    c.reply().await,
                    json!({"result": 0, "body": {"n": n, "i": i}})
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
