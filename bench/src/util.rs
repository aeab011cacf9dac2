//! Shared pieces: latency statistics, free ports, the service as a child process, seeding the
//! database directly, and a small HTTPS client (hyper + rustls) used for every HTTPS load.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;

pub const SIGN_KEY: &str = "bench-sign-key";
pub const APP_KEY: &str = "bench-app-key";
pub const CAPTCHA: &str = "abcde";
/// `security.encryption_key` of every service started here (so the bench can seal `jid_pwd`).
pub const ENC_KEY: [u8; 32] = [7; 32];

/// Latency summary of one load.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub count: usize,
    pub errors: usize,
    pub rate: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// Waits for the load tasks spawned on `local`, each returning its latencies (ns) and error count,
/// and merges what they return.
pub async fn join_loads(
    local: &tokio::task::LocalSet,
    tasks: Vec<tokio::task::JoinHandle<(Vec<u64>, usize)>>,
) -> (Vec<u64>, usize) {
    local
        .run_until(async move {
            let (mut all, mut errors) = (Vec::new(), 0);
            for t in tasks {
                let (l, e) = t.await.unwrap_or_default();
                all.extend(l);
                errors += e;
            }
            (all, errors)
        })
        .await
}

impl Stats {
    /// From per-request latencies in nanoseconds, over `elapsed`.
    pub fn from(mut lat_ns: Vec<u64>, errors: usize, elapsed: Duration) -> Stats {
        lat_ns.sort_unstable();
        let pct = |p: f64| {
            if lat_ns.is_empty() {
                Duration::ZERO
            } else {
                let i = ((lat_ns.len() as f64 * p) as usize).min(lat_ns.len() - 1);
                Duration::from_nanos(lat_ns[i])
            }
        };
        Stats {
            count: lat_ns.len(),
            errors,
            rate: lat_ns.len() as f64 / elapsed.as_secs_f64().max(1e-9),
            p50: pct(0.50),
            p99: pct(0.99),
            max: lat_ns
                .last()
                .map_or(Duration::ZERO, |n| Duration::from_nanos(*n)),
        }
    }

    /// Rounds of one load taken as one: counts and errors summed, the rate over their summed
    /// time, and each latency figure the worst round's (the rounds' samples are not kept).
    pub fn merge(rounds: &[Stats]) -> Stats {
        let count: usize = rounds.iter().map(|r| r.count).sum();
        let secs: f64 = rounds
            .iter()
            .map(|r| r.count as f64 / r.rate.max(1e-9))
            .sum();
        let worst = |f: fn(&Stats) -> Duration| rounds.iter().map(f).max().unwrap_or_default();
        Stats {
            count,
            errors: rounds.iter().map(|r| r.errors).sum(),
            rate: count as f64 / secs.max(1e-9),
            p50: worst(|r| r.p50),
            p99: worst(|r| r.p99),
            max: worst(|r| r.max),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{:.0}/s p50 {} p99 {} max {} (n={} errors={})",
            self.rate,
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.count,
            self.errors
        )
    }
}

/// The JSON in the file at `path` (a constant server's reply body).
pub fn json_file(path: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("body")).expect("JSON body")
}

/// A listener on 127.0.0.1:`port` (a decimal port number).
pub async fn bind_local(port: &str) -> tokio::net::TcpListener {
    let port = port.parse::<u16>().expect("port");
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await;
    l.expect("bind")
}

/// A duration as milliseconds with 3 decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Wait until `addr` accepts connections (at most `limit`).
pub fn wait_accepting(addr: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if accepts(addr) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// A current-thread runtime: every load generator runs on one core, like `redis-benchmark`.
pub fn client_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_number(&format!("/proc/{pid}/status"), "VmRSS:", 1).unwrap_or(0)
}

/// The CPU time a process has used so far (all its threads, user and system), in clock ticks
/// (`utime` + `stime` of `/proc/PID/stat`); 0 when it cannot be read.
pub fn cpu_ticks(pid: u32) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // After the command name, which may hold spaces, in parentheses: field 3 is the state,
    // fields 14 and 15 are utime and stime.
    let Some((_, rest)) = text.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

/// The soft limit on open files of this process.
pub fn nofile_limit() -> u64 {
    proc_number("/proc/self/limits", "Max open files", 3).unwrap_or(1024)
}

/// The `nth` word, as a number, of the first line of the /proc file `path` that starts with
/// `label`.
fn proc_number(path: &str, label: &str, nth: usize) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(label))?;
    line.split_whitespace().nth(nth)?.parse().ok()
}

/// Where the XMPP side of a started service points.
pub enum XmppTarget<'a> {
    /// Nowhere (the link stays down; token checks and captchas do not need it).
    None,
    /// A test Prosody, with `c2s` or `privileged` binding.
    Prosody(&'a xmpp::testkit::Prosody, &'a str),
}

/// The real `register` binary, run as a child process with a generated configuration.
pub struct Service {
    child: Option<Child>,
    pub http: SocketAddr,
    pub tcp: SocketAddr,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
}

impl Service {
    /// Start `bin` on free loopback ports with `data_dir`; returns when HTTPS and TCP accept.
    pub fn spawn(bin: &Path, data_dir: &Path, x: XmppTarget, fixed_captcha: bool) -> Service {
        Service::spawn_db(bin, data_dir, x, fixed_captcha, None)
    }

    /// As [`Service::spawn`], with `[database] url = db_url` (PostgreSQL) when given.
    pub fn spawn_db(
        bin: &Path,
        data_dir: &Path,
        x: XmppTarget,
        fixed_captcha: bool,
        db_url: Option<&str>,
    ) -> Service {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let (http, tcp, admin) = (free_port(), free_port(), free_port());
        // Binds by name (`binding.consent = "none"`): the bind benchmark measures the XMPP side,
        // not the bind tokens, which every real pairing adds (issue 17).
        let mut t = format!(
            "data_dir = {:?}\n\n[http]\nlisten = \"127.0.0.1:{http}\"\nmax_connections = 4096\n\n\
             [tcp]\nlisten = \"127.0.0.1:{tcp}\"\nmax_connections = 20000\n\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n\n\
             [security]\nsign_key = \"{SIGN_KEY}\"\napp_keys = [\"{APP_KEY}\"]\n\
             encryption_key = \"{}\"\nrate_per_minute = 0\n\
             api_rate_per_minute = 0\naccount_rate_per_minute = 0\nhash_queue = 1000000\n\n\
             [reconcile]\ninterval_secs = 0\n\n[binding]\nconsent = \"none\"\n\n",
            data_dir.join("data").to_string_lossy(),
            hex::encode(ENC_KEY)
        );
        if let Some(url) = db_url {
            t += &format!("[database]\nurl = {url:?}\n\n");
        }
        if fixed_captcha {
            t += &format!("[captcha]\nfixed_answer = \"{CAPTCHA}\"\n\n");
        }
        match x {
            XmppTarget::None => {
                t += "[xmpp]\ncomponent_addr = \"127.0.0.1:1\"\ncomponent_secret = \"unused\"\n"
            }
            XmppTarget::Prosody(p, binding) => {
                t += &format!(
                    "[xmpp]\ndomain = \"{}\"\ncomponent = \"{}\"\ncomponent_addr = \"{}\"\n\
                     component_secret = \"{}\"\nc2s_addr = \"{}\"\nc2s_tls = \"off\"\n\
                     allow_plain_without_tls = true\naccounts = \"component\"\n\
                     binding = \"{binding}\"\ntimeout_ms = 10000\n",
                    p.domain, p.component, p.component_addr, p.secret, p.c2s_addr
                )
            }
        }
        let cfg = data_dir.join("register.toml");
        std::fs::write(&cfg, t).expect("writing register.toml");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("register.log"))
            .expect("log file");
        let child = Command::new(bin)
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let s = Service {
            child: Some(child),
            http: ([127, 0, 0, 1], http).into(),
            tcp: ([127, 0, 0, 1], tcp).into(),
            admin: ([127, 0, 0, 1], admin).into(),
            data_dir: data_dir.to_owned(),
        };
        let ok = wait_accepting(s.tcp, Duration::from_secs(30))
            && wait_accepting(s.http, Duration::from_secs(10));
        if !ok {
            panic!(
                "register did not open its ports; log:\n{}",
                std::fs::read_to_string(data_dir.join("register.log")).unwrap_or_default()
            );
        }
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// The service's self-signed certificate (generated on first start).
    pub fn cert_pem(&self) -> Vec<u8> {
        std::fs::read(self.data_dir.join("data/cert.pem")).expect("cert.pem")
    }

    pub fn key_pem(&self) -> Vec<u8> {
        std::fs::read(self.data_dir.join("data/key.pem")).expect("key.pem")
    }

    /// Wait until `/readyz` says the XMPP link is up (at most `limit`).
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(mut c) = tokio::net::TcpStream::connect(self.admin).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let _ = c
                    .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await;
                let mut buf = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut buf)).await;
                if buf.starts_with(b"HTTP/1.1 200") {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// SIGTERM, then SIGKILL after 10 s; waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            xmpp::testkit::stop_child(&mut child, Duration::from_secs(10));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One seeded account.
#[derive(Clone)]
pub struct Seeded {
    pub name: String,
    pub token: String,
}

/// Create the database at `data_dir/data/register.db` (through the service's own store, so the
/// schema and pragmas are the real ones) and insert `users` active accounts with one token each
/// in one transaction. Even accounts are phones, odd ones devices, and each phone is bound to the
/// device after it. `jid_pwd` is sealed with [`ENC_KEY`] as the service would.
pub fn seed(data_dir: &Path, users: usize) -> Vec<Seeded> {
    let dir = data_dir.join("data");
    std::fs::create_dir_all(&dir).expect("data dir");
    let db = dir.join("register.db");
    drop(register::store::sqlite::SqliteStore::open(&db).expect("creating the database"));
    let mut c = rusqlite::Connection::open(&db).expect("opening the database");
    c.pragma_update(None, "synchronous", "OFF").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let phc = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0000000000000000000000000000000000000000000";
    let tx = c.transaction().unwrap();
    let mut out = Vec::with_capacity(users);
    {
        let mut acc = tx
            .prepare(
                "INSERT INTO accounts (id, user_name, type, device_type, des, password_hash, \
                 jid_node, jid_pwd, state, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, '', ?5, ?6, ?7, 'active', ?8, ?8)",
            )
            .unwrap();
        let mut tok = tx
            .prepare(
                "INSERT INTO tokens (hash, account_id, expires_at, created_at) VALUES (?1, ?2, ?3, ?4)",
            )
            .unwrap();
        for i in 0..users {
            let id = i as i64 + 1;
            let kind: u8 = if i % 2 == 0 { 1 } else { 2 };
            let name = format!("user-{i:06}");
            let node = format!("u{i:06}bench");
            let sealed = register::auth::crypto::seal(&ENC_KEY, &node, &format!("jid-pw-{i}"));
            let device_type = (kind == 2).then_some("camera");
            acc.execute(rusqlite::params![
                id,
                name,
                kind,
                device_type,
                phc,
                node,
                sealed,
                now
            ])
            .unwrap();
            let token = register::auth::crypto::new_token();
            tok.execute(rusqlite::params![
                register::auth::crypto::token_hash(&token),
                id,
                now + 86_400,
                now
            ])
            .unwrap();
            out.push(Seeded { name, token });
        }
        // Each phone (even index) is bound to the device after it, as `/bind` leaves a pair: the
        // HTTPS benchmark asks for both, as a phone asks for its devices.
        let mut pair = tx
            .prepare("INSERT INTO bindings (a, b, state, updated_at) VALUES (?1, ?2, 'bound', ?3)")
            .unwrap();
        for id in (1..users as i64).step_by(2) {
            pair.execute(rusqlite::params![id, id + 1, now]).unwrap();
        }
    }
    tx.commit().unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    out
}

/// The PostgreSQL twin of [`seed`]: create or migrate the schema at `url` through the service's
/// own `PgStore::connect`, empty the tables, then insert the same accounts and tokens as `seeded`
/// (same names, same tokens, `jid_pwd` sealed with [`ENC_KEY`]) with multi-row `INSERT … SELECT
/// FROM unnest(…)` statements of 5,000 rows each.
pub fn seed_pg(url: &str, seeded: &[Seeded]) {
    let rt = client_rt();
    rt.block_on(async {
        drop(
            register::store::postgres::PgStore::connect(url, 2)
                .await
                .expect("creating the PostgreSQL schema"),
        );
        let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connecting to PostgreSQL");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        c.batch_execute("TRUNCATE accounts, tokens, bindings, captchas RESTART IDENTITY CASCADE")
            .await
            .expect("emptying the tables");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let phc = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0000000000000000000000000000000000000000000";
        let acc = c
            .prepare(
                "INSERT INTO accounts (user_name, type, device_type, des, password_hash, jid_node, \
                 jid_pwd, state, created_at, updated_at) \
                 SELECT n, k, d, '', $4, j, p, 'active', $5, $5 \
                 FROM unnest($1::text[], $2::int[], $3::text[], $6::text[], $7::bytea[]) AS t(n, k, d, j, p)",
            )
            .await
            .expect("prepare accounts");
        let tok = c
            .prepare(
                "INSERT INTO tokens (hash, account_id, expires_at, created_at) \
                 SELECT t.h, a.id, $3, $4 FROM unnest($1::text[], $2::bytea[]) AS t(n, h) \
                 JOIN accounts a ON a.user_name = t.n",
            )
            .await
            .expect("prepare tokens");
        for (b, chunk) in seeded.chunks(5000).enumerate() {
            let base = b * 5000;
            let mut names = Vec::with_capacity(chunk.len());
            let mut kinds = Vec::with_capacity(chunk.len());
            let mut devs: Vec<Option<String>> = Vec::with_capacity(chunk.len());
            let mut nodes = Vec::with_capacity(chunk.len());
            let mut pwds = Vec::with_capacity(chunk.len());
            let mut hashes = Vec::with_capacity(chunk.len());
            for (j, s) in chunk.iter().enumerate() {
                let i = base + j;
                let kind: i32 = if i % 2 == 0 { 1 } else { 2 };
                let node = format!("u{i:06}bench");
                pwds.push(register::auth::crypto::seal(&ENC_KEY, &node, &format!("jid-pw-{i}")));
                names.push(s.name.clone());
                kinds.push(kind);
                devs.push((kind == 2).then(|| "camera".to_owned()));
                nodes.push(node);
                hashes.push(register::auth::crypto::token_hash(&s.token));
            }
            c.execute(&acc, &[&names, &kinds, &devs, &phc, &now, &nodes, &pwds])
                .await
                .expect("inserting accounts");
            c.execute(&tok, &[&names, &hashes, &(now + 86_400), &now])
                .await
                .expect("inserting tokens");
        }
        for t in ["accounts", "tokens"] {
            c.batch_execute(&format!("VACUUM ANALYZE {t}"))
                .await
                .expect("vacuum");
        }
    });
}

/// rustls client configuration trusting `cert_pem` only.
pub fn tls_client(cert_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &cert_pem[..]) {
        roots.add(c.expect("certificate")).expect("adding a root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

/// One kept-alive HTTPS connection (HTTP/1.1 over rustls).
pub struct Https {
    send: SendRequest<Full<Bytes>>,
}

/// A reply: status, `X-Verify-Code-Id` if any, body.
pub struct HttpReply {
    pub status: u16,
    pub captcha_id: Option<String>,
    pub body: Bytes,
}

impl Https {
    pub async fn connect(
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Https> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("localhost").expect("name");
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Https { send })
    }

    /// GET `path_query` (body `None`) or POST a form body.
    pub async fn call(
        &mut self,
        path_query: &str,
        form: Option<String>,
        headers: &[(&str, &str)],
    ) -> Result<HttpReply, String> {
        self.send.ready().await.map_err(|e| e.to_string())?;
        let mut b = hyper::Request::builder()
            .uri(path_query)
            .header("host", "localhost");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = match form {
            Some(body) => b
                .method("POST")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(body))),
            None => b.method("GET").body(Full::new(Bytes::new())),
        }
        .map_err(|e| e.to_string())?;
        let r = self
            .send
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let captcha_id = r
            .headers()
            .get("x-verify-code-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = r
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(HttpReply {
            status,
            captcha_id,
            body,
        })
    }
}

/// Percent-encode a form value.
pub fn enc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// A form body for `POST path` of `params` with a version 2 `param_sign` added (keyed with
/// [`APP_KEY`]): `sign_v`, the current `timestamp` and a fresh `nonce` go in first.
pub fn signed_form(path: &str, params: &[(&str, &str)]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string();
    let nonce = register::auth::crypto::new_nonce();
    let mut all: Vec<(&str, &str)> = params.to_vec();
    all.extend([
        ("sign_v", "2"),
        ("timestamp", now.as_str()),
        ("nonce", nonce.as_str()),
    ]);
    let p: Vec<(String, String)> = all
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let sig = register::auth::crypto::param_sign_v2(APP_KEY.as_bytes(), "POST", path, &p);
    form(&all) + "&param_sign=" + &sig
}

pub fn form(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `"result"` of a JSON reply body, or -1.
pub fn result_of(body: &[u8]) -> i64 {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["result"].as_i64())
        .unwrap_or(-1)
}

/// Kept-alive HTTPS connections shared by workers (a worker takes one, uses it, gives it back).
pub struct Pool {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    idle: std::sync::Mutex<Vec<Https>>,
}

impl Pool {
    pub fn new(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Arc<Pool> {
        Arc::new(Pool {
            addr,
            tls,
            idle: Default::default(),
        })
    }

    pub async fn take(&self) -> Option<Https> {
        let idle = self.idle.lock().unwrap().pop();
        match idle {
            Some(c) => Some(c),
            None => Https::connect(self.addr, self.tls.clone()).await.ok(),
        }
    }

    pub fn put(&self, c: Https) {
        self.idle.lock().unwrap().push(c);
    }
}
