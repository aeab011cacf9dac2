//! Memory of idle connections, measured as the growth of this process's resident set while
//! thousands of connections sit idle. A binary of its own, so no other test allocates meanwhile.
//! The client ends live in the same process, so the figure is an upper bound for the server side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tcp_api::{LineHandler, TcpConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

struct Echo;

impl LineHandler for Echo {
    async fn handle(&self, _path: &str, body: Value, _peer: SocketAddr) -> Value {
        json!({"result": 0, "body": body})
    }
}

fn rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn open(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"/echo {\"x\":1}\n").await.unwrap();
        let mut buf = [0u8; 64];
        let mut got = 0;
        while !buf[..got].contains(&b'\n') {
            let n = s.read(&mut buf[got..]).await.unwrap();
            assert!(n > 0);
            got += n;
        }
        conns.push(s);
    }
    conns
}

/// Both ways of serving connections, one after the other (RSS is the whole process's): as tasks
/// of the caller's runtime, and on a thread of the listener's own (`TcpConfig::threads`, the
/// service's default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_cheap() {
    if !std::path::Path::new("/proc/self/status").exists() {
        return;
    }
    for threads in [0, 1] {
        idle_connections_cost(threads).await;
    }
}

async fn idle_connections_cost(threads: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(tcp_api::serve(
        listener,
        TcpConfig {
            threads,
            ..TcpConfig::default()
        },
        Arc::new(Echo),
        shutdown.clone(),
    ));
    // Warm up allocator and runtime.
    drop(open(addr, 200).await);
    tokio::time::sleep(Duration::from_millis(200)).await;

    const N: usize = 4000;
    let before = rss_kib();
    let conns = open(addr, N).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib();
    let per_conn = (after.saturating_sub(before)) * 1024 / N;
    println!(
        "threads {threads}: idle connections: {N}, RSS growth {} KiB, {per_conn} bytes per \
         connection (both ends)",
        after - before
    );
    // 10 000 idle connections under 64 MiB means under ~6.7 KiB each.
    assert!(per_conn < 6 * 1024, "{per_conn} bytes per idle connection");
    drop(conns);
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
