//! Graceful shutdown: stop accepting, let in-flight requests finish within the drain time.

use std::time::{Duration, Instant};

use http_api::HttpConfig;
use tokio::net::TcpStream;

use crate::common::{client, start, start_with_drain};

#[tokio::test]
async fn an_in_flight_request_completes() {
    let mut srv = start(HttpConfig::default()).await;
    let url = srv.url("/slow?ms=1500");
    // An idle kept-alive connection must not hold the drain up.
    let _idle = TcpStream::connect(srv.addr).await.unwrap();
    let request = tokio::spawn(async move { client().get(url).send().await });
    srv.slow_running().await;
    srv.shutdown.cancel();
    let resp = request.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["slept"], 1500);
    srv.returned(3).await;
    assert!(
        TcpStream::connect(srv.addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn the_drain_deadline_drops_what_is_left() {
    let mut srv = start_with_drain(HttpConfig::default(), Duration::from_millis(300)).await;
    let url = srv.url("/slow?ms=10000");
    let request = tokio::spawn(async move { client().get(url).send().await });
    srv.slow_running().await;
    let started = Instant::now();
    srv.shutdown.cancel();
    srv.returned(5).await;
    // Well before the request's 10 s: the 300 ms drain cut it.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(request.await.unwrap().is_err(), "the slow request was cut");
}
