//! Load generator for the TCP API's `/verify_access_token`.
//!
//! Self-contained: seeds a fresh database with `--users` active accounts and one token each,
//! starts the service in-process on loopback (no XMPP server is needed to check tokens), then
//! drives `--conns` connections for `--secs` seconds, each sending one request at a time with a
//! random valid token, and prints requests/s and latency percentiles.
//!
//! ```sh
//! cargo run --release --example tcp_load -- --users 10000 --conns 50 --secs 10
//! cargo run --release --example tcp_load -- --addr 127.0.0.1:8444 --tokens tokens.txt   # a running service
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use register::service::config::Config;
use register::store::{AccountState, NewAccount};
use register::types::AccountType;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Args {
    users: usize,
    conns: usize,
    secs: u64,
    addr: Option<String>,
    tokens: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        users: 10_000,
        conns: 50,
        secs: 10,
        addr: None,
        tokens: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--users" => a.users = v.parse().expect("--users N"),
            "--conns" => a.conns = v.parse().expect("--conns N"),
            "--secs" => a.secs = v.parse().expect("--secs N"),
            "--addr" => a.addr = Some(v),
            "--tokens" => a.tokens = Some(v),
            _ => panic!("unknown flag {k}"),
        }
    }
    a
}

/// Seed `users` accounts with a token each and start the service; returns its TCP address.
async fn seeded_service(
    users: usize,
    dir: &std::path::Path,
) -> (register::service::server::Server, Vec<String>) {
    let mut cfg = Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.tcp.listen = "127.0.0.1:0".parse().unwrap();
    cfg.admin.listen = "127.0.0.1:0".parse().unwrap();
    cfg.http.tls = false;
    cfg.xmpp.component_secret = "unused".into();
    cfg.xmpp.component_addr = "127.0.0.1:1".into();
    cfg.reconcile.interval_secs = 0;
    let server = register::service::server::Server::start(cfg)
        .await
        .expect("service starts");
    let store = server.app.store.clone();
    let now = server.app.now();
    let mut tokens = Vec::with_capacity(users);
    for i in 0..users {
        let id = store
            .insert_pending_account(
                NewAccount {
                    user_name: format!("load-{i}"),
                    kind: AccountType::Device,
                    device_type: Some("bench".into()),
                    des: String::new(),
                    password_hash: "unused".into(),
                    jid_node: format!("load{i}"),
                    jid_pwd: vec![0; 40],
                },
                now,
            )
            .await
            .unwrap();
        store
            .set_account_state(id, AccountState::Active, now)
            .await
            .unwrap();
        let t = register::auth::crypto::new_token();
        store
            .insert_token(
                register::auth::crypto::token_hash(&t),
                id,
                now + 86_400,
                now,
            )
            .await
            .unwrap();
        tokens.push(t);
    }
    (server, tokens)
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().unwrap();
    let (server, addr, tokens) = match (&a.addr, &a.tokens) {
        (Some(addr), Some(f)) => {
            let t: Vec<String> = std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect();
            (None, addr.clone(), t)
        }
        _ => {
            eprintln!("seeding {} users…", a.users);
            let (s, t) = seeded_service(a.users, dir.path()).await;
            let addr = s.addrs.tcp.to_string();
            (Some(s), addr, t)
        }
    };
    let tokens = Arc::new(tokens);
    let deadline = Instant::now() + Duration::from_secs(a.secs);
    let mut tasks = Vec::new();
    for _ in 0..a.conns {
        let (tokens, addr) = (tokens.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut conn = BufReader::new(TcpStream::connect(&addr).await.expect("connect"));
            conn.get_mut().set_nodelay(true).unwrap();
            let mut line = String::new();
            while Instant::now() < deadline {
                let t = &tokens[rand::thread_rng().gen_range(0..tokens.len())];
                let req = format!("/verify_access_token {{\"access_token\":\"{t}\"}}\n");
                let start = Instant::now();
                conn.get_mut().write_all(req.as_bytes()).await.unwrap();
                line.clear();
                conn.read_line(&mut line).await.unwrap();
                lat.push(start.elapsed());
                assert!(line.contains("\"validate\":true"), "{line}");
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "tcp /verify_access_token: users={} conns={} secs={} requests={} rps={:.0} p50={:?} p99={:?} max={:?}",
        tokens.len(),
        a.conns,
        a.secs,
        all.len(),
        all.len() as f64 / a.secs as f64,
        pct(0.50),
        pct(0.99),
        all.last().unwrap()
    );
    if let Some(s) = server {
        let _ = s.stop().await;
    }
}
