//! `TcpConfig::threads`: connections served on the listener's own threads.

use std::time::Duration;

use serde_json::json;

use crate::common::{config, start, thread_name, Client};

/// Answers from memory come from the listener's threads, handler calls from the caller's
/// runtime; replies keep their order across both, on every connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_answer_from_memory_and_the_handler_runs_at_home() {
    let srv = start(config(|cfg| cfg.threads = 2)).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(Client::connect(srv.addr).await);
    }
    let mut lanes_seen = std::collections::BTreeSet::new();
    for (n, c) in clients.iter_mut().enumerate() {
        c.send(b"/thread_now {}\n").await;
        let lane = c.reply().await["thread"].as_str().unwrap().to_owned();
        assert!(lane.starts_with("tcp-api-"), "{lane:?}");
        lanes_seen.insert(lane.clone());
        // Pipelined: a request for the handler, then one that could be answered at once but
        // must wait its turn, then a slower one and the rest.
        let input = format!(
            "/thread {{}}\n/thread_now {{}}\n/sleep {{\"ms\":30,\"i\":{n}}}\n/now {{\"i\":{n}}}\n\
             /echo {{\"n\":{n}}}\n"
        );
        c.send(input.as_bytes()).await;
        let home = c.reply().await["thread"].as_str().unwrap().to_owned();
        assert!(
            !home.starts_with("tcp-api-"),
            "handle ran on a lane: {home:?}"
        );
        // Behind a request in flight, not answered at once: by the handler, at home too.
        assert_eq!(c.reply().await["thread"], home.as_str());
        assert_eq!(c.reply().await, json!({"result": 0, "i": n}));
        assert_eq!(c.reply().await, json!({"result": 0, "now": n}));
        assert_eq!(c.reply().await, json!({"result": 0, "body": {"n": n}}));
        // And the connection stays on its lane.
        c.send(b"/thread_now {}\n").await;
        assert_eq!(c.reply().await["thread"], lane.as_str());
    }
    assert_eq!(lanes_seen.len(), 2, "connections spread over both lanes");
    assert!(!thread_name().starts_with("tcp-api-"));
}

/// A handler that panics on the caller's runtime is answered with `internal_error` on the lane,
/// and the connection goes on.
#[tokio::test]
async fn a_panic_at_home_is_answered_on_the_lane() {
    let srv = start(config(|cfg| cfg.threads = 1)).await;
    let mut c = Client::connect(srv.addr).await;
    c.send(b"/panic {}\n/echo {}\n").await;
    assert_eq!(c.reply().await, json!({"result": 1}));
    assert_eq!(c.reply().await, json!({"result": 0, "body": {}}));
}

/// On shutdown, connections on the lanes send their in-flight replies and close, and `serve`
/// returns; the lanes' threads end with it.
#[tokio::test]
async fn shutdown_drains_the_lanes_and_stops_their_threads() {
    let mut srv = start(config(|cfg| cfg.threads = 2)).await;
    let mut busy = Client::connect(srv.addr).await;
    let mut idle = Client::connect(srv.addr).await;
    let mut lanes = Vec::new();
    for c in [&mut busy, &mut idle] {
        c.send(b"/thread_now {}\n").await;
        let task = c.reply().await["task"].as_str().unwrap().to_owned();
        assert!(std::path::Path::new(&task).exists(), "{task}");
        lanes.push(task);
    }
    assert_ne!(lanes[0], lanes[1], "one connection on each lane");
    busy.send(b"/sleep {\"ms\":500,\"i\":3}\n").await;
    srv.running.reach(1).await;
    srv.shutdown.cancel();
    assert_eq!(busy.reply().await, json!({"result": 0, "i": 3}));
    assert!(busy.closed_within(Duration::from_secs(2)).await);
    assert!(idle.closed_within(Duration::from_secs(2)).await);
    srv.returned(3).await;
    let gone = async {
        while lanes.iter().any(|t| std::path::Path::new(t).exists()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(10), gone)
            .await
            .is_ok(),
        "a lane's thread still runs after serve returned"
    );
}
