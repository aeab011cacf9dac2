//! TCP `/verify_access_token` load, and `redis-benchmark` as its reference.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::util::{free_port, wait_accepting, Stats};

/// Most requests one load may send in all (a bound besides the time).
const MAX_REQUESTS: usize = 20_000_000;

/// `conns` connections for `secs`, each with `depth` requests in flight: `depth` requests are
/// written at once, then their `depth` replies read (as `redis-benchmark -P depth` does). Each
/// request's latency runs from the write of its batch to the arrival of its reply. Runs on the
/// calling (current-thread) runtime.
pub async fn verify_load(
    addr: SocketAddr,
    tokens: Arc<Vec<String>>,
    conns: usize,
    depth: usize,
    secs: f64,
    resp: bool,
) -> Stats {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let budget = Rc::new(std::cell::Cell::new(MAX_REQUESTS));
    let mut tasks = Vec::new();
    let local = tokio::task::LocalSet::new();
    for _ in 0..conns {
        let tokens = tokens.clone();
        let budget = budget.clone();
        tasks.push(local.spawn_local(async move {
            let Some(mut conn) = connect(addr, 64 * 1024).await else {
                return (Vec::new(), 1);
            };
            let mut lat: Vec<u64> = Vec::new();
            let mut errors = 0usize;
            let mut line = String::new();
            let mut batch = String::new();
            while Instant::now() < deadline && budget.get() >= depth {
                budget.set(budget.get() - depth);
                batch.clear();
                {
                    let mut rng = rand::thread_rng();
                    for _ in 0..depth {
                        let k = rng.gen_range(0..tokens.len());
                        if resp {
                            // What redis-benchmark -r sends: GET key:<12 digits>.
                            batch.push_str(&format!("GET key:{k:012}\r\n"));
                        } else {
                            batch.push_str("/verify_access_token {\"access_token\":\"");
                            batch.push_str(&tokens[k]);
                            batch.push_str("\"}\n");
                        }
                    }
                }
                let t0 = Instant::now();
                if conn.get_mut().write_all(batch.as_bytes()).await.is_err() {
                    return (lat, errors + 1);
                }
                for _ in 0..depth {
                    line.clear();
                    match conn.read_line(&mut line).await {
                        Ok(n) if n > 0 => {}
                        _ => return (lat, errors + 1),
                    }
                    if resp && line.starts_with('$') && !line.starts_with("$-1") {
                        line.clear();
                        if !matches!(conn.read_line(&mut line).await, Ok(n) if n > 0) {
                            return (lat, errors + 1);
                        }
                    } else if resp || !line.contains("\"validate\":true") {
                        errors += !resp as usize;
                    }
                    lat.push(t0.elapsed().as_nanos() as u64);
                }
            }
            (lat, errors)
        }));
    }
    let (lat, errors) = crate::util::join_loads(&local, tasks).await;
    Stats::from(lat, errors, start.elapsed())
}

/// A load generator's connection: Nagle off, replies read through a `capacity`-byte buffer.
async fn connect(addr: SocketAddr, capacity: usize) -> Option<BufReader<TcpStream>> {
    let s = TcpStream::connect(addr).await.ok()?;
    s.set_nodelay(true).ok();
    Some(BufReader::with_capacity(capacity, s))
}

/// Checks every token once and returns how many were valid: the warm-up before a measurement.
/// The service keeps a token in memory from its first check on, as redis-server holds its keys
/// from the start.
pub async fn touch_all(addr: SocketAddr, tokens: Arc<Vec<String>>) -> usize {
    let lines = tokens
        .iter()
        .map(|t| format!("/verify_access_token {{\"access_token\":\"{t}\"}}"))
        .collect();
    send_all(addr, lines).await
}

/// Sends every line once (8 connections, 64 lines written at a time) and returns how many replies
/// had result 0.
pub async fn send_all(addr: SocketAddr, lines: Vec<String>) -> usize {
    const CONNS: usize = 8;
    const DEPTH: usize = 64;
    let lines = Arc::new(lines);
    let local = tokio::task::LocalSet::new();
    let mut tasks = Vec::new();
    let chunk = lines.len().div_ceil(CONNS).max(1);
    for c in 0..CONNS {
        let lines = lines.clone();
        tasks.push(local.spawn_local(async move {
            let Ok(s) = TcpStream::connect(addr).await else {
                return 0;
            };
            let mut conn = BufReader::with_capacity(64 * 1024, s);
            let (mut ok, mut reply, mut batch) = (0, String::new(), String::new());
            let mine = lines.iter().skip(c * chunk).take(chunk).collect::<Vec<_>>();
            for group in mine.chunks(DEPTH) {
                batch.clear();
                for l in group {
                    batch.push_str(l);
                    batch.push('\n');
                }
                if conn.get_mut().write_all(batch.as_bytes()).await.is_err() {
                    return ok;
                }
                for _ in group {
                    reply.clear();
                    if !matches!(conn.read_line(&mut reply).await, Ok(n) if n > 0) {
                        return ok;
                    }
                    ok += reply.contains("\"result\":0") as usize;
                }
            }
            ok
        }));
    }
    local
        .run_until(async move {
            let mut n = 0;
            for t in tasks {
                n += t.await.unwrap_or(0);
            }
            n
        })
        .await
}

/// Paced probe: `conns` connections, each sending one request every `every` (one outstanding),
/// for `secs`. For latency under a modest, steady load (the isolation benchmark).
pub async fn paced_probe(
    addr: SocketAddr,
    tokens: Arc<Vec<String>>,
    conns: usize,
    every: Duration,
    secs: f64,
) -> Stats {
    paced_probe_samples(addr, tokens, conns, every, secs)
        .await
        .stats()
}

/// [`paced_probe`], unsummed.
pub async fn paced_probe_samples(
    addr: SocketAddr,
    tokens: Arc<Vec<String>>,
    conns: usize,
    every: Duration,
    secs: f64,
) -> crate::https::Samples {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let local = tokio::task::LocalSet::new();
    let mut tasks = Vec::new();
    for i in 0..conns {
        let tokens = tokens.clone();
        tasks.push(local.spawn_local(async move {
            let Some(mut conn) = connect(addr, 8 * 1024).await else {
                return (Vec::new(), 1);
            };
            let (mut lat, mut errors) = (Vec::<u64>::new(), 0usize);
            let mut line = String::new();
            // Spread the connections over the period.
            tokio::time::sleep(every.mul_f64(i as f64 / conns as f64)).await;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while Instant::now() < deadline {
                tick.tick().await;
                let t = &tokens[rand::thread_rng().gen_range(0..tokens.len())];
                let req = format!("/verify_access_token {{\"access_token\":\"{t}\"}}\n");
                let t0 = Instant::now();
                if conn.get_mut().write_all(req.as_bytes()).await.is_err() {
                    return (lat, errors + 1);
                }
                line.clear();
                match conn.read_line(&mut line).await {
                    Ok(n) if n > 0 => {}
                    _ => return (lat, errors + 1),
                }
                lat.push(t0.elapsed().as_nanos() as u64);
                if !line.contains("\"validate\":true") {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let (lat, errors) = crate::util::join_loads(&local, tasks).await;
    crate::https::Samples {
        lat,
        errors,
        elapsed: start.elapsed(),
    }
}

/// A local `redis-server` without persistence.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn start() -> Option<Redis> {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let r = Redis { child, port };
        wait_accepting(([127, 0, 0, 1], port).into(), Duration::from_secs(10)).then_some(r)
    }

    /// `redis-benchmark` with `args` (`--csv`); parses requests/s, p50 and p99 (ms) of the last
    /// test line.
    pub fn benchmark(&self, args: &[&str]) -> Option<Stats> {
        let out = Command::new("timeout")
            .arg("120")
            .arg("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--csv"])
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
        let line = text.lines().rfind(|l| !l.starts_with("\"test\""))?;
        let f: Vec<f64> = line
            .split(',')
            .skip(1)
            .map(|s| s.trim_matches('"').parse().unwrap_or(0.0))
            .collect();
        let d = |x: f64| Duration::from_secs_f64(x / 1e3);
        let n = args
            .windows(2)
            .find(|w| w[0] == "-n")
            .and_then(|w| w[1].parse().ok())
            .unwrap_or(0);
        Some(Stats {
            count: n,
            errors: 0,
            rate: *f.first()?,
            p50: d(*f.get(3)?),
            p99: d(*f.get(5)?),
            max: d(*f.get(6)?),
        })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The reference line handler: one constant reply, answered at once (`answer_now`, the same
/// hot path the service's token checks take), as a value for anything that reaches `handle`.
struct ConstantLine(serde_json::Value, Vec<u8>);

impl tcp_api::LineHandler for ConstantLine {
    async fn handle(
        &self,
        _path: &str,
        _body: serde_json::Value,
        _peer: SocketAddr,
    ) -> serde_json::Value {
        self.0.clone()
    }

    fn answer_now(&self, _path: &str, _json: &str, _peer: SocketAddr, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(&self.1);
        true
    }
}

/// `register-bench serve-constant-tcp PORT BODY_FILE`: the TCP stack (`tcp_api`) answering a
/// constant reply, in its own process with the default runtime, until killed.
pub fn serve_constant_tcp(args: &[String]) {
    let [port, body] = args else {
        eprintln!("usage: register-bench serve-constant-tcp PORT BODY_FILE");
        std::process::exit(2);
    };
    let body = crate::util::json_file(body);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let l = crate::util::bind_local(port).await;
        let cfg = tcp_api::TcpConfig {
            max_connections: 20_000,
            ..tcp_api::TcpConfig::default()
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let line = serde_json::to_vec(&body).expect("JSON body");
        tcp_api::serve(l, cfg, Arc::new(ConstantLine(body, line)), stop)
            .await
            .expect("serve");
    });
}

/// One reply of the service to a token check (to serve as the constant).
pub async fn one_reply(addr: SocketAddr, token: &str) -> String {
    let s = TcpStream::connect(addr).await.expect("connect");
    let mut c = BufReader::new(s);
    let req = format!("/verify_access_token {{\"access_token\":\"{token}\"}}\n");
    c.get_mut().write_all(req.as_bytes()).await.expect("write");
    let mut line = String::new();
    c.read_line(&mut line).await.expect("read");
    line
}
