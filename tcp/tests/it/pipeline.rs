//! Pipelining: requests of one connection run concurrently, replies come back in request order.

use serde_json::json;
use tcp_api::TcpConfig;

use std::sync::atomic::Ordering;

use crate::common::{config, start, start_connected, Client, NOW_ANSWERED};

#[tokio::test]
async fn a_hundred_pipelined_requests_are_answered_in_order() {
    let (_srv, mut c) = start_connected(TcpConfig::default()).await;
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
async fn answers_given_at_once_keep_their_place_in_the_order() {
    let (_srv, mut c) = start_connected(TcpConfig::default()).await;
    // Immediate answers before, between and after requests that wait, and a malformed one.
    let mut input = String::new();
    for i in 0..40 {
        input.push_str(&match i % 5 {
            0 | 1 => format!("/now {{\"i\":{i}}}\n"),
            2 => format!("/sleep {{\"ms\":{},\"i\":{i}}}\n", (40 - i) % 3 * 10),
            3 => "/now {bad\n".to_owned(),
            _ => "/echo [1]\n".to_owned(),
        });
    }
    c.send(input.as_bytes()).await;
    for i in 0..40 {
        let want = match i % 5 {
            0 | 1 => json!({"result": 0, "now": i}),
            2 => json!({"result": 0, "i": i}),
            3 => crate::common::malformed(),
            _ => crate::common::malformed(),
        };
        assert_eq!(c.reply().await, want, "reply {i}");
    }
    // At least the first two were answered at once (nothing was in flight before them).
    let at_once = NOW_ANSWERED.load(Ordering::SeqCst);
    assert!(at_once >= 2, "{at_once}");
    // Alone on its connection, one request at a time: always at once.
    for i in 0..3 {
        c.send(format!("/now {{\"i\":{i}}}\n").as_bytes()).await;
        assert_eq!(c.reply().await, json!({"result": 0, "now": i}));
    }
    assert_eq!(NOW_ANSWERED.load(Ordering::SeqCst), at_once + 3);
}

#[tokio::test]
async fn pipelined_requests_run_concurrently() {
    // Each `/meet` waits until ten run at once: one at a time, none would ever answer 0.
    assert_eq!(meet(TcpConfig::default(), 10, 10).await, 10);
}

#[tokio::test]
async fn in_flight_requests_are_bounded_by_max_pipeline() {
    let peak = meet(config(|cfg| cfg.max_pipeline = 2), 2, 6).await;
    // Two at a time met each other, never a third.
    assert_eq!(peak, 2);
}

/// Pipelines `count` requests `/meet {"n": n}` on one connection to a server started with `cfg`,
/// checks that each met `n - 1` others, and returns the most that ran at once.
async fn meet(cfg: TcpConfig, n: usize, count: usize) -> usize {
    let (srv, mut c) = start_connected(cfg).await;
    c.send(format!("/meet {{\"n\":{n}}}\n").repeat(count).as_bytes())
        .await;
    for _ in 0..count {
        assert_eq!(c.reply().await, json!({"result": 0}));
    }
    srv.running.peak()
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
