//! HTTPS loads (hyper + rustls client), and the reference server: the same `http_api` stack
//! answering a constant body.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_api::{Handler, HttpConfig, Reply, Request};

use crate::util::{HttpReply, Https, Stats};

/// Most requests one load may send in all.
const MAX_REQUESTS: usize = 5_000_000;

/// What one load request is: built per request from a counter.
pub type MakeReq = Rc<dyn Fn(usize) -> (String, Option<String>, Vec<(String, String)>)>;
/// Whether a reply counts as a success.
pub type Check = Rc<dyn Fn(&HttpReply) -> bool>;

/// What a load measured, before it is summed up: loads can be added together.
#[derive(Default)]
pub struct Samples {
    /// Per-request latencies in nanoseconds.
    pub lat: Vec<u64>,
    pub errors: usize,
    /// Time under load.
    pub elapsed: Duration,
}

impl Samples {
    pub fn add(&mut self, other: Samples) {
        self.lat.extend(other.lat);
        self.errors += other.errors;
        self.elapsed += other.elapsed;
    }

    pub fn stats(self) -> Stats {
        Stats::from(self.lat, self.errors, self.elapsed)
    }
}

/// `conns` kept-alive HTTPS connections for `secs`, one request in flight on each; what they
/// measured, unsummed ([`Samples::stats`] sums it up).
pub async fn load_samples(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    conns: usize,
    secs: f64,
    make: MakeReq,
    check: Check,
) -> Samples {
    load_limited(addr, tls, conns, secs, MAX_REQUESTS, make, check).await
}

/// [`load_samples`] that stops after request `limit` (requests are numbered from 1, so
/// `make(1..=limit)` are sent once each unless `secs` runs out first).
pub async fn load_limited(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    conns: usize,
    secs: f64,
    limit: usize,
    make: MakeReq,
    check: Check,
) -> Samples {
    let local = tokio::task::LocalSet::new();
    let counter = Rc::new(RefCell::new(0usize));
    let mut clients = Vec::new();
    // Connect (and handshake) before the clock starts: keep-alive throughput is measured.
    for _ in 0..conns {
        clients.push(
            local
                .run_until(Https::connect(addr, tls.clone()))
                .await
                .expect("HTTPS connect"),
        );
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for mut c in clients {
        let (make, check, counter) = (make.clone(), check.clone(), counter.clone());
        tasks.push(local.spawn_local(async move {
            let mut lat: Vec<u64> = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline {
                let i = {
                    let mut n = counter.borrow_mut();
                    *n += 1;
                    *n
                };
                if i > limit {
                    break;
                }
                let (pq, body, headers) = make(i);
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(a, b)| (a.as_str(), b.as_str()))
                    .collect();
                let t0 = Instant::now();
                match c.call(&pq, body, &h).await {
                    Ok(r) => {
                        lat.push(t0.elapsed().as_nanos() as u64);
                        if !check(&r) {
                            errors += 1;
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let (lat, errors) = crate::util::join_loads(&local, tasks).await;
    Samples {
        lat,
        errors,
        elapsed: start.elapsed(),
    }
}

/// The reference handler: one route, one constant JSON body, sent as it is (the stack's cheapest
/// reply, as the service answers with bytes it wrote and signed itself).
struct Constant(bytes::Bytes);

impl Handler for Constant {
    fn routes(&self) -> &[&'static str] {
        &["/get_users", "/verify_code"]
    }

    async fn handle(&self, _req: Request) -> Reply {
        Reply::JsonText(self.0.clone())
    }
}

/// `register-bench serve-constant PORT CERT KEY BODY_FILE`: the reference server, in its own
/// process with the default multi-thread runtime (as the `register` binary has), until killed.
pub fn serve_constant(args: &[String]) {
    let (args, logging) = match args {
        [rest @ .., last] if last == "--log" => (rest, true),
        all => (all, false),
    };
    let [port, cert, key, body] = args else {
        eprintln!("usage: register-bench serve-constant PORT CERT KEY BODY_FILE [--log]");
        std::process::exit(2);
    };
    // With --log, the service's own logging (its default configuration: info, batched to
    // stderr), so that the stack's request span costs the reference what it costs the service.
    let _log = logging.then(|| {
        register::service::cli::init_logging(&register::service::config::Config::default())
    });
    let cert = std::fs::read(cert).expect("cert");
    let key = std::fs::read(key).expect("key");
    let body = bytes::Bytes::from(std::fs::read(body).expect("body file"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let l = crate::util::bind_local(port).await;
        let cfg = HttpConfig {
            tls: Some(http_api::tls_config_from_pem(&cert, &key).expect("tls")),
            max_connections: 4096,
            ..HttpConfig::default()
        };
        let stop = tokio_util::sync::CancellationToken::new();
        http_api::serve(
            l,
            cfg,
            Arc::new(Constant(body)),
            stop,
            Duration::from_secs(1),
        )
        .await
        .expect("serve");
    });
}
