//! Consistency between the database and the XMPP server under faults (issue 5).
//!
//! Faults are real: Prosody is stopped and restarted under a stream of requests, the `register`
//! binary is killed with SIGKILL and started again on the same data directory, requests race. The
//! outcome is checked from outside the code under test: Prosody's account files on disk, logins
//! and rosters through the testkit's own XMPP client, the database read directly.
//!
//! Every test prints its counts (`--nocapture` to see them).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use register::config::Config;
use register::server::Server;
use register::store::sqlite::SqliteStore;
use register::store::{AccountState, BindingState, Store};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use xmpp::testkit::{Prosody, ProsodyOptions};

use crate::harness::{assert_signed, config_for, signed, Opts, ProsodyExt, CAPTCHA};

const PASSWORD: &str = "password1";

// ---------------------------------------------------------------------------------------------
// A client of the service (in-process or the binary) that many tasks can share: no cookie store,
// the captcha id travels as `verify_code_id`.

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// Trusts the service's self-signed certificate from its data directory.
    fn new(data_dir: &Path, port: u16) -> Client {
        let cert = std::fs::read(data_dir.join("cert.pem")).expect("cert.pem");
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Client {
            http,
            base: format!("https://localhost:{port}"),
        }
    }

    /// POST a form; `Err` when no reply came (connection refused or cut).
    async fn post(&self, path: &str, params: &[(String, String)]) -> Result<Value, String> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .form(params)
            .send()
            .await
            .map_err(|e| chain(&e))?;
        assert_eq!(r.status(), 200, "{path}");
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        assert_signed(&v);
        Ok(v)
    }

    async fn captcha(&self) -> Result<String, String> {
        let r = self
            .http
            .get(format!("{}/verify_code", self.base))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        assert_eq!(r.status(), 200);
        Ok(r.headers()["x-verify-code-id"].to_str().unwrap().to_owned())
    }

    /// Phones (1) answer a captcha, devices (2) sign.
    async fn register(&self, name: &str, kind: u8) -> Result<i64, String> {
        let id = if kind == 2 {
            None
        } else {
            Some(self.captcha().await?)
        };
        self.register_with(name, kind, id).await
    }

    /// Register with a captcha fetched beforehand (phones).
    async fn register_with(
        &self,
        name: &str,
        kind: u8,
        captcha: Option<String>,
    ) -> Result<i64, String> {
        let t = kind.to_string();
        let mut p = vec![("user_name", name), ("password", PASSWORD), ("type", &t)];
        let Some(id) = captcha else {
            p.push(("device_type", "cam"));
            let v = self.post("/register", &signed(&p)).await?;
            return Ok(v["result"].as_i64().unwrap());
        };
        p.push(("verify_code", CAPTCHA));
        p.push(("verify_code_id", &id));
        let v = self.post("/register", &owned(&p)).await?;
        Ok(v["result"].as_i64().unwrap())
    }

    async fn login(&self, name: &str, kind: u8) -> Result<Value, String> {
        let t = kind.to_string();
        let mut p = vec![("user_name", name), ("password", PASSWORD), ("type", &t)];
        let id;
        if kind != 2 {
            id = self.captcha().await?;
            p.push(("verify_code", CAPTCHA));
            p.push(("verify_code_id", &id));
        }
        self.post("/login", &signed(&p)).await
    }

    /// Bind or unbind (`path`) `me` with `peer`; a device signs its request.
    async fn pair(
        &self,
        path: &str,
        token: &str,
        me: &str,
        device: bool,
        peer: &str,
    ) -> Result<i64, String> {
        let peers = json!([peer]).to_string();
        let p = [
            ("access_token", token),
            ("user_name", me),
            ("user_name_ls", peers.as_str()),
        ];
        let p = if device { signed(&p) } else { owned(&p) };
        let v = self.post(path, &p).await?;
        Ok(v["result"].as_i64().unwrap())
    }
}

/// Text without terminal colour sequences (the binary's log).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// An error with its causes.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s += &format!(": {c}");
        cur = c.source();
    }
    s
}

fn owned(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// `/verify_access_token` over the TCP API.
async fn verify_token(tcp: std::net::SocketAddr, token: &str) -> Value {
    let mut c = BufReader::new(TcpStream::connect(tcp).await.unwrap());
    let line = format!(
        "/verify_access_token {}\n",
        json!({ "access_token": token })
    );
    c.get_mut().write_all(line.as_bytes()).await.unwrap();
    let mut reply = String::new();
    c.read_line(&mut reply).await.unwrap();
    let v: Value = serde_json::from_str(&reply).unwrap();
    assert_signed(&v);
    v
}

// ---------------------------------------------------------------------------------------------
// The stream: a few tasks, each registering phone/device pairs, logging both in and binding them.

/// What the clients were told. `None`: no reply (the connection failed or was cut).
#[derive(Default)]
struct Results {
    registered: BTreeMap<String, Option<i64>>,
    /// Name → (token, jid, jid_pwd) for logins answered 0.
    logins: HashMap<String, (String, String, String)>,
    bound: BTreeMap<(String, String), Option<i64>>,
    /// Replies that were neither 0 nor absent, by code.
    errors: BTreeMap<i64, u64>,
    no_reply: u64,
    /// The first few transport errors (for the log).
    no_reply_samples: Vec<String>,
    /// Requests sent (all kinds, retries included).
    sent: u64,
}

#[derive(Clone)]
struct Stream {
    client: Arc<Mutex<Client>>,
    results: Arc<Mutex<Results>>,
    /// Registrations answered 0 so far (the trigger for the fault).
    acked: Arc<AtomicU64>,
}

impl Stream {
    fn new(client: Client) -> Stream {
        Stream {
            client: Arc::new(Mutex::new(client)),
            results: Arc::new(Mutex::new(Results::default())),
            acked: Arc::new(AtomicU64::new(0)),
        }
    }

    fn client(&self) -> Client {
        self.client.lock().unwrap().clone()
    }

    fn note(&self, r: &Result<i64, String>) {
        let mut res = self.results.lock().unwrap();
        match r {
            Ok(0) => {}
            Ok(c) => *res.errors.entry(*c).or_default() += 1,
            Err(e) => {
                res.no_reply += 1;
                if res.no_reply_samples.len() < 3 {
                    res.no_reply_samples.push(e.clone());
                }
            }
        }
    }

    /// Spawn `workers` tasks of `pairs` phone/device pairs each: register both, log both in,
    /// bind them. A task paces itself (and waits longer after a failure) so that a fault lands in
    /// the middle of the stream. Like a real client it sends a request that got no reply once
    /// more (the recorded outcome is the last reply); a pair goes on when both names were
    /// registered (0, or 103 on a retry: the first attempt may have made it) and both log in.
    fn spawn(&self, tag: &str, workers: usize, pairs: usize) -> Vec<tokio::task::JoinHandle<()>> {
        (0..workers)
            .map(|w| {
                let s = self.clone();
                let tag = tag.to_owned();
                tokio::spawn(async move {
                    for k in 0..pairs {
                        s.one_pair(&format!("{tag}-p{w}-{k}"), &format!("{tag}-d{w}-{k}"))
                            .await;
                    }
                })
            })
            .collect()
    }

    async fn one_pair(&self, phone: &str, dev: &str) {
        let mut ok = true;
        for (name, kind) in [(phone, 1u8), (dev, 2u8)] {
            let (r, retried) = self
                .retry(|c| {
                    let name = name.to_owned();
                    async move { Ok(json!({ "result": c.register(&name, kind).await? })) }
                })
                .await;
            let r = r.map(|v| v["result"].as_i64().unwrap());
            self.results
                .lock()
                .unwrap()
                .registered
                .insert(name.to_owned(), r.clone().ok());
            if r == Ok(0) {
                self.acked.fetch_add(1, Ordering::SeqCst);
            }
            ok &= r == Ok(0) || (retried && r == Ok(103));
        }
        if !ok {
            return;
        }
        let mut token = None;
        for (name, kind) in [(phone, 1u8), (dev, 2u8)] {
            let (r, _) = self
                .retry(|c| {
                    let name = name.to_owned();
                    async move { c.login(&name, kind).await }
                })
                .await;
            let Ok(v) = r.as_ref() else { return };
            if v["result"] != 0 {
                return;
            }
            let f = |k: &str| v["user_info"][k].as_str().unwrap().to_owned();
            let t = v["access_token"].as_str().unwrap().to_owned();
            if kind == 1 {
                token = Some(t.clone());
            }
            self.results
                .lock()
                .unwrap()
                .logins
                .insert(name.to_owned(), (t, f("jid"), f("jid_pwd")));
        }
        let token = token.expect("phone logged in");
        let (r, _) = self
            .retry(|c| {
                let (token, phone, dev) = (token.clone(), phone.to_owned(), dev.to_owned());
                async move {
                    let r = c
                        .pair("/set_user_banding", &token, &phone, false, &dev)
                        .await?;
                    Ok(json!({ "result": r }))
                }
            })
            .await;
        self.results.lock().unwrap().bound.insert(
            (phone.to_owned(), dev.to_owned()),
            r.ok().map(|v| v["result"].as_i64().unwrap()),
        );
    }

    /// Send once, and once more after a pause if no reply came; count every request. Returns the
    /// last outcome and whether it was a retry.
    async fn retry<F, Fut>(&self, mut op: F) -> (Result<Value, String>, bool)
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<Value, String>>,
    {
        let mut retried = false;
        loop {
            self.results.lock().unwrap().sent += 1;
            let r = op(self.client()).await;
            let code = r.as_ref().map(|v| v["result"].as_i64().unwrap());
            self.note(&code.map_err(|e| e.to_string()));
            self.pause(code == Ok(0)).await;
            if r.is_ok() || retried {
                return (r, retried);
            }
            retried = true;
        }
    }

    async fn pause(&self, ok: bool) {
        let ms = if ok { 50 } else { 1000 };
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    async fn wait_acked(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while self.acked.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "the stream made no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait until `n` registrations were answered 0, then until some operation is half-way (an
    /// unfinished record in the database), so the fault lands on it; after 10 s strike anyway.
    /// Returns what was caught.
    /// With `pairs_only`, wait for a bind in flight.
    async fn fault_point(&self, n: u64, store: &dyn Store, pairs_only: bool) -> String {
        self.wait_acked(n).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let (a, b) = store.unfinished(i64::MAX).await.unwrap();
            if !b.is_empty() || (!pairs_only && !a.is_empty()) {
                return format!(
                    "{} pending account(s), {} pair(s) in flight",
                    a.len(),
                    b.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        "nothing in flight".into()
    }
}

async fn join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(300), t)
            .await
            .expect("stream tasks end")
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Independent checks.

/// The nodes of every account Prosody holds on disk (`<data>/<host>/accounts/<node>.dat`).
fn nodes_on_disk(p: &Prosody) -> Vec<String> {
    let host: String = p
        .domain
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_string()
            } else {
                format!("%{:02x}", c as u32)
            }
        })
        .collect();
    let dir = p.data_path.join(host).join("accounts");
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if let Some(node) = name.strip_suffix(".dat") {
                // Generated nodes are lower-case letters and digits: nothing is escaped.
                out.push(node.to_owned());
            }
        }
    }
    out.sort();
    out
}

/// What the final check found.
#[derive(Debug, Default)]
struct Found {
    /// Registrations answered 0 whose account logs in and whose JID logs in.
    accounts_intact: u64,
    /// Accounts that exist although their registration got no reply (completed before the fault).
    accounts_unacked_complete: u64,
    /// Binds answered 0 that are `both` on both rosters.
    pairs_intact: u64,
    /// Pairs bound on both rosters although the bind got no 0 (none expected).
    pairs_bound_unacked: u64,
    /// Pairs on neither roster.
    pairs_clean: u64,
    jids_on_disk: u64,
}

/// After reconciliation: every registration answered 0 has an account and a JID that logs in; no
/// JID on the server lacks an active account; no unfinished record is left; every pair the stream
/// touched is `both` on both rosters (and `bound` in the database) or on neither (and has no
/// row); every bind answered 0 is bound.
async fn check_consistent(
    prosody: &Prosody,
    store: &dyn Store,
    client: &Client,
    res: &Results,
) -> Found {
    let mut f = Found::default();
    let (accounts, pairs) = store.unfinished(i64::MAX).await.unwrap();
    assert!(
        accounts.is_empty() && pairs.is_empty(),
        "unfinished records left: {:?} / {:?}",
        accounts
            .iter()
            .map(|a| (&a.user_name, a.state))
            .collect::<Vec<_>>(),
        pairs
    );
    // No orphan JID: every account on Prosody's disk belongs to an active account.
    let nodes = nodes_on_disk(prosody);
    f.jids_on_disk = nodes.len() as u64;
    let known = store.accounts_by_nodes(&nodes).await.unwrap();
    for n in &nodes {
        let a = known.iter().find(|a| &a.jid_node == n);
        assert!(
            a.is_some_and(|a| a.state == AccountState::Active),
            "orphan JID {n} on the server"
        );
    }
    // Every account, asked through the service: answered 0 ⇒ there, and its JID logs in.
    let mut creds: HashMap<String, (String, String)> = HashMap::new();
    for (name, reply) in &res.registered {
        let kind = if name.contains("-d") { 2 } else { 1 };
        let v = client.login(name, kind).await.unwrap();
        let exists = v["result"] == 0;
        if *reply == Some(0) {
            assert!(
                exists,
                "registration of {name} was answered 0 but login says {v}"
            );
        } else if exists {
            f.accounts_unacked_complete += 1;
        } else {
            assert_eq!(v["result"], 102, "{name}: {v}");
        }
        if exists {
            let jid = v["user_info"]["jid"].as_str().unwrap().to_owned();
            let pwd = v["user_info"]["jid_pwd"].as_str().unwrap().to_owned();
            assert!(
                prosody.can_login(&jid, &pwd).await,
                "{name}: its JID {jid} does not log in"
            );
            let node = jid.split('@').next().unwrap();
            assert!(nodes.iter().any(|n| n == node), "{name}: no account file");
            if *reply == Some(0) {
                f.accounts_intact += 1;
            }
            creds.insert(name.clone(), (jid, pwd));
        }
    }
    // Pairs: both rosters `both` and a `bound` row, or neither roster and no row.
    for name in res.registered.keys() {
        if !name.contains("-p") {
            continue;
        }
        let dev = name.replacen("-p", "-d", 1);
        let (Some((pj, pp)), Some((dj, dp))) = (creds.get(name), creds.get(&dev)) else {
            continue;
        };
        let sub = |roster: Vec<xmpp::RosterEntry>, peer: &str| {
            roster
                .into_iter()
                .find(|e| e.jid == peer)
                .map(|e| e.subscription)
        };
        let on_p = sub(prosody.roster(pj, pp).await, dj);
        let on_d = sub(prosody.roster(dj, dp).await, pj);
        let pa = store.account_by_name(name).await.unwrap().unwrap();
        let da = store.account_by_name(&dev).await.unwrap().unwrap();
        let row = store
            .binding(pa.id.min(da.id), pa.id.max(da.id))
            .await
            .unwrap();
        let acked = res.bound.get(&(name.clone(), dev.clone())) == Some(&Some(0));
        match (on_p.as_deref(), on_d.as_deref()) {
            (Some("both"), Some("both")) => {
                assert_eq!(
                    row.map(|b| b.state),
                    Some(BindingState::Bound),
                    "{name}-{dev} bound on the server but not in the database"
                );
                if acked {
                    f.pairs_intact += 1;
                } else {
                    f.pairs_bound_unacked += 1;
                }
            }
            (None, None) => {
                assert!(
                    row.is_none(),
                    "{name}-{dev}: row {row:?} but no roster item"
                );
                assert!(!acked, "bind {name}-{dev} was answered 0 but is not bound");
                f.pairs_clean += 1;
            }
            other => panic!("{name}-{dev} half-bound: {other:?} (row {row:?})"),
        }
    }
    f
}

// ---------------------------------------------------------------------------------------------
// 1. Prosody stopped in the middle of a stream of registrations and binds.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_stopped_mid_stream() {
    let mut prosody = Prosody::start(ProsodyOptions::default());
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config_for(&prosody, data.path().join("data"), Opts::default());
    cfg.xmpp.timeout_ms = 3000;
    let server = Server::start(cfg).await.expect("service starts");
    wait_link(&server, true, 20).await;
    let client = Client::new(&server.app.cfg.data_dir, server.addrs.http.port());
    let stream = Stream::new(client.clone());
    let started = Instant::now();
    let tasks = stream.spawn("ps", 5, 4);
    let caught = stream
        .fault_point(8, server.app.store.as_ref(), false)
        .await;
    let acked_before = stream.acked.load(Ordering::SeqCst);
    prosody = tokio::task::spawn_blocking(move || {
        prosody.stop();
        prosody
    })
    .await
    .unwrap();
    wait_link(&server, false, 20).await;
    // Requests keep coming while the server is away.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let acked_during = stream.acked.load(Ordering::SeqCst) - acked_before;
    prosody = tokio::task::spawn_blocking(move || {
        prosody.restart();
        prosody
    })
    .await
    .unwrap();
    let fault_at = started.elapsed();
    wait_link(&server, true, 30).await;
    let acked_after_restart = stream.acked.load(Ordering::SeqCst);
    join(tasks).await;

    let mut lines = Vec::new();
    let rep = register::reconcile::run(&server.app, server.app.now() + 1, &mut |_, l| {
        lines.push(l.to_owned())
    })
    .await
    .unwrap();
    for l in &lines {
        println!("  reconcile: {l}");
    }
    assert_eq!(rep.failed, 0, "{rep:?}");

    let res = std::mem::take(&mut *stream.results.lock().unwrap());
    let found = check_consistent(&prosody, server.app.store.as_ref(), &client, &res).await;
    let regs_acked = res.registered.values().filter(|r| **r == Some(0)).count();
    let binds_acked = res.bound.values().filter(|r| **r == Some(0)).count();
    println!(
        "prosody_stopped_mid_stream: {} requests; {} names registered + {} pairs bound; acknowledged {} + {}; \
         registrations acked: {} before the stop ({caught} at the stop), {} while down, {} after; \
         restart {:.1}s into the stream; refused {:?}, no reply {}",
        res.sent,
        res.registered.len(),
        res.bound.len(),
        regs_acked,
        binds_acked,
        acked_before,
        acked_during,
        regs_acked as u64 - acked_after_restart,
        fault_at.as_secs_f64(),
        res.errors,
        res.no_reply
    );
    println!("  found intact: {found:?}");
    println!("  repaired: {rep:?}");
    assert_eq!(found.accounts_intact as usize, regs_acked);
    assert_eq!(found.pairs_intact as usize, binds_acked);
    assert_eq!(found.pairs_bound_unacked, 0);
    assert!(
        !res.errors.is_empty(),
        "the fault hit no request: {:?}",
        res.errors
    );
    assert!(
        regs_acked as u64 > acked_after_restart,
        "the stream did not go on after the restart"
    );
    server.stop().await.unwrap();
}

async fn wait_link(server: &Server, up: bool, secs: u64) {
    let mut w = server.app.xmpp.link_watch();
    tokio::time::timeout(
        Duration::from_secs(secs),
        w.wait_for(|s| (*s == xmpp::LinkState::Up) == up),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "component link did not become {}",
            if up { "up" } else { "down" }
        )
    })
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// 2. The binary killed with SIGKILL in the middle of the stream, then started again.

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A configuration file for the binary with the test settings of `c` and fixed ports.
fn write_toml(dir: &Path, c: &Config, http: u16, tcp: u16, admin: u16) -> PathBuf {
    let toml = format!(
        "data_dir = {:?}\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\n\
         [tcp]\nlisten = \"127.0.0.1:{tcp}\"\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\n\
         [xmpp]\ndomain = {:?}\ncomponent = {:?}\ncomponent_addr = {:?}\nc2s_addr = {:?}\n\
         c2s_tls = \"off\"\nallow_plain_without_tls = true\ntimeout_ms = 3000\n\
         [security]\nsign_key = {:?}\napp_keys = [{:?}]\nrate_per_minute = 0\n\
         [captcha]\nfixed_answer = {:?}\n\
         [reconcile]\ninterval_secs = 0\n",
        c.data_dir,
        c.xmpp.domain,
        c.xmpp.component,
        c.xmpp.component_addr,
        c.xmpp.c2s_addr,
        c.security.sign_key,
        c.security.app_keys[0],
        c.captcha.fixed_answer,
    );
    let path = dir.join("register.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

struct Binary {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Binary {
    fn start(cfg: &Path, secret: &str, log: PathBuf) -> Binary {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_register"))
            .arg("--config")
            .arg(cfg)
            .env("REGISTER_XMPP__COMPONENT_SECRET", secret)
            .stdout(Stdio::null())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Binary { child, log }
    }

    async fn wait_ready(&mut self, admin: u16) {
        let url = format!("http://127.0.0.1:{admin}/readyz");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(&url).await {
                if r.status() == 200 {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("binary exited with {status}:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "binary not ready:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn kill9(&mut self) {
        self.child.start_kill().unwrap(); // SIGKILL
        let status = self.child.wait().await.unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_killed_mid_stream() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let c = config_for(&prosody, dir.path().join("data"), Opts::default());
    let (hp, tp, ap) = (free_port(), free_port(), free_port());
    let toml = write_toml(dir.path(), &c, hp, tp, ap);
    let log = dir.path().join("register.log");
    let mut bin = Binary::start(&toml, &prosody.secret, log.clone());
    bin.wait_ready(ap).await;

    // The test reads the database directly (WAL: beside the service's own connections).
    let store = SqliteStore::open(&c.data_dir.join("register.db")).unwrap();
    let stream = Stream::new(Client::new(&c.data_dir, hp));
    let tasks = stream.spawn("k9", 5, 4);
    // Three kills, each when some operation is half-way; started again at once on the same data.
    let mut kills = Vec::new();
    for (n, pairs_only) in [(6, false), (14, true), (22, true)] {
        let caught = stream.fault_point(n, &store, pairs_only).await;
        bin.kill9().await;
        kills.push(format!(
            "kill after {} acked registrations ({caught})",
            stream.acked.load(Ordering::SeqCst)
        ));
        bin = Binary::start(&toml, &prosody.secret, log.clone());
        bin.wait_ready(ap).await;
        // A fresh client: no pooled connection to the dead process.
        *stream.client.lock().unwrap() = Client::new(&c.data_dir, hp);
    }
    join(tasks).await;

    // The run at start repairs what the kill left; wait until nothing unfinished is left.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (a, b) = store.unfinished(i64::MAX).await.unwrap();
        if a.is_empty() && b.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left unfinished: {a:?} {b:?}\n{}",
            bin.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = Client::new(&c.data_dir, hp);
    let res = std::mem::take(&mut *stream.results.lock().unwrap());
    // Tokens handed out before and after the kill still verify.
    let mut tokens_ok = 0;
    for (name, (token, jid, _)) in &res.logins {
        let v = verify_token(([127, 0, 0, 1], tp).into(), token).await;
        assert_eq!(v["result"], 0, "token of {name}: {v}");
        assert_eq!(v["jid"], jid.as_str());
        tokens_ok += 1;
    }
    let found = check_consistent(&prosody, &store, &client, &res).await;
    let log = strip_ansi(&bin.log_text());
    let repaired_lines: Vec<&str> = log.lines().filter(|l| l.contains("reconciled")).collect();
    let regs_acked = res.registered.values().filter(|r| **r == Some(0)).count();
    let binds_acked = res.bound.values().filter(|r| **r == Some(0)).count();
    println!(
        "binary_killed_mid_stream: {} requests; {} names registered + {} pairs bound; acknowledged \
         {} + {} and {} logins; refused {:?}, no reply {}",
        res.sent,
        res.registered.len(),
        res.bound.len(),
        regs_acked,
        binds_acked,
        res.logins.len(),
        res.errors,
        res.no_reply
    );
    for k in &kills {
        println!("  {k}");
    }
    println!("  no-reply samples: {:?}", res.no_reply_samples);
    println!("  found intact: {found:?}; tokens verified over TCP: {tokens_ok}");
    println!(
        "  repaired at start: {} records{}",
        repaired_lines.len(),
        log.lines()
            .filter(|l| l.contains("reconciler run"))
            .map(|l| format!("\n    {l}"))
            .collect::<String>()
    );
    for l in &repaired_lines {
        println!("    {l}");
    }
    assert_eq!(found.accounts_intact as usize, regs_acked);
    assert_eq!(found.pairs_intact as usize, binds_acked);
    assert_eq!(found.pairs_bound_unacked, 0);
    assert!(res.no_reply > 0, "the kill hit no request");
    bin.kill9().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Races: one name registered twice at once, one pair bound (and unbound) twice at once.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_same_name_and_same_pair() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let data = tempfile::tempdir().unwrap();
    let cfg = config_for(&prosody, data.path().join("data"), Opts::default());
    let server = Server::start(cfg).await.expect("service starts");
    wait_link(&server, true, 20).await;
    let c = Client::new(&server.app.cfg.data_dir, server.addrs.http.port());
    let rounds = 4;
    let mut tally: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for i in 0..rounds {
        // Same name, twice at once: two devices, then two phones (captchas fetched first, so
        // both requests leave together).
        let name = format!("race-{i}");
        let (kind, ids) = if i % 2 == 0 {
            (2, (None, None))
        } else {
            (
                1,
                (
                    Some(c.captcha().await.unwrap()),
                    Some(c.captcha().await.unwrap()),
                ),
            )
        };
        let (x, y) = tokio::join!(
            c.register_with(&name, kind, ids.0),
            c.register_with(&name, kind, ids.1)
        );
        let mut r = vec![x.unwrap(), y.unwrap()];
        r.sort();
        assert_eq!(r, vec![0, 103], "register {name}");
        tally.entry("register").or_default().extend(&r);
        // Exactly one account, with one JID that logs in.
        let a = server
            .app
            .store
            .account_by_name(&name)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.state, AccountState::Active);
        assert!(prosody.account_on_disk(&a.jid_node));

        // A fresh pair; bound twice at once — the same caller twice, then each side at once.
        let (p, d) = (format!("rp-{i}"), format!("rd-{i}"));
        assert_eq!(c.register(&p, 1).await, Ok(0));
        assert_eq!(c.register(&d, 2).await, Ok(0));
        let lp = c.login(&p, 1).await.unwrap();
        let ld = c.login(&d, 2).await.unwrap();
        let tp = lp["access_token"].as_str().unwrap();
        let td = ld["access_token"].as_str().unwrap();
        let (x, y) = if i % 2 == 0 {
            tokio::join!(
                c.pair("/set_user_banding", tp, &p, false, &d),
                c.pair("/set_user_banding", tp, &p, false, &d)
            )
        } else {
            tokio::join!(
                c.pair("/set_user_banding", tp, &p, false, &d),
                c.pair("/set_user_banding", td, &d, true, &p)
            )
        };
        let mut r = vec![x.unwrap(), y.unwrap()];
        r.sort();
        assert_eq!(r, vec![0, 109], "bind {p}-{d}");
        tally.entry("bind").or_default().extend(&r);
        let (jp, pp) = (
            lp["user_info"]["jid"].as_str().unwrap(),
            lp["user_info"]["jid_pwd"].as_str().unwrap(),
        );
        let (jd, pd) = (
            ld["user_info"]["jid"].as_str().unwrap(),
            ld["user_info"]["jid_pwd"].as_str().unwrap(),
        );
        let sub = |r: Vec<xmpp::RosterEntry>, peer: &str| {
            r.into_iter()
                .find(|e| e.jid == peer)
                .map(|e| e.subscription)
        };
        assert_eq!(
            sub(prosody.roster(jp, pp).await, jd).as_deref(),
            Some("both")
        );
        assert_eq!(
            sub(prosody.roster(jd, pd).await, jp).as_deref(),
            Some("both")
        );

        // Unbound twice at once: one 0, one 110, neither roster keeps the other.
        let (x, y) = tokio::join!(
            c.pair("/set_user_unbanding", tp, &p, false, &d),
            c.pair("/set_user_unbanding", td, &d, true, &p)
        );
        let mut r = vec![x.unwrap(), y.unwrap()];
        r.sort();
        assert_eq!(r, vec![0, 110], "unbind {p}-{d}");
        tally.entry("unbind").or_default().extend(&r);
        assert_eq!(sub(prosody.roster(jp, pp).await, jd), None);
        assert_eq!(sub(prosody.roster(jd, pd).await, jp), None);
    }
    let (a, b) = server.app.store.unfinished(i64::MAX).await.unwrap();
    assert!(a.is_empty() && b.is_empty());
    for (what, codes) in &tally {
        let wins = codes.iter().filter(|c| **c == 0).count();
        println!(
            "concurrent_same_name_and_same_pair: {what}: {} requests in {} races; {} won (0), {} lost ({:?})",
            codes.len(),
            rounds,
            wins,
            codes.len() - wins,
            codes.iter().filter(|c| **c != 0).collect::<Vec<_>>()
        );
    }
    server.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 4. The link down: the service stays up on the database, XMPP operations fail fast, /readyz
// says not ready, the link comes back by itself.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_down_degrades_and_recovers() {
    let mut prosody = Prosody::start(ProsodyOptions::default());
    let data = tempfile::tempdir().unwrap();
    let cfg = config_for(&prosody, data.path().join("data"), Opts::default());
    let timeout = Duration::from_millis(cfg.xmpp.timeout_ms);
    let server = Server::start(cfg).await.expect("service starts");
    wait_link(&server, true, 20).await;
    let c = Client::new(&server.app.cfg.data_dir, server.addrs.http.port());
    let readyz = format!("http://{}/readyz", server.addrs.admin);
    assert_eq!(reqwest::get(&readyz).await.unwrap().status(), 200);
    for (n, k) in [("ld-p", 1), ("ld-d", 2), ("ld-c", 2)] {
        assert_eq!(c.register(n, k).await, Ok(0));
    }
    let old = c.login("ld-p", 1).await.unwrap();
    let old_token = old["access_token"].as_str().unwrap().to_owned();
    let (jp, pp) = (
        old["user_info"]["jid"].as_str().unwrap().to_owned(),
        old["user_info"]["jid_pwd"].as_str().unwrap().to_owned(),
    );
    // ld-c is bound to ld-p, and will be cancelled while the server is away.
    let lc = c.login("ld-c", 2).await.unwrap();
    let c_token = lc["access_token"].as_str().unwrap().to_owned();
    let jc = lc["user_info"]["jid"].as_str().unwrap().to_owned();
    let c_node = jc.split('@').next().unwrap().to_owned();
    assert_eq!(
        c.pair("/set_user_banding", &old_token, "ld-p", false, "ld-c")
            .await,
        Ok(0)
    );

    prosody = tokio::task::spawn_blocking(move || {
        prosody.stop();
        prosody
    })
    .await
    .unwrap();
    wait_link(&server, false, 20).await;
    let down = Instant::now();

    // Not ready, but alive.
    let r = reqwest::get(&readyz).await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["xmpp_link"], false);
    assert_eq!(body["database"], true);
    // Login, tokens and get_users work from the database.
    let t = Instant::now();
    let v = c.login("ld-p", 1).await.unwrap();
    assert_eq!(v["result"], 0, "{v}");
    let login_ms = t.elapsed().as_millis();
    let v = verify_token(server.addrs.tcp, &old_token).await;
    assert_eq!(
        (v["result"].clone(), v["validate"].clone()),
        (json!(0), json!(true))
    );
    let v = c
        .post(
            "/get_users",
            &owned(&[
                ("access_token", &old_token),
                ("user_name_ls", r#"["ld-p","ld-d"]"#),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(v["result"], 0, "{v}");
    assert_eq!(v["user_info_ls"].as_array().unwrap().len(), 2);
    // What needs the XMPP server fails fast, and nothing is written for a registration.
    let t = Instant::now();
    let reg_r = c.register("ld-new", 2).await.unwrap();
    let register_ms = t.elapsed().as_millis();
    assert!(reg_r == 101 || reg_r == 9, "register while down: {reg_r}");
    assert!(t.elapsed() < timeout / 2, "register took {register_ms} ms");
    assert!(server
        .app
        .store
        .account_by_name("ld-new")
        .await
        .unwrap()
        .is_none());
    let t = Instant::now();
    let bind_r = c
        .pair("/set_user_banding", &old_token, "ld-p", false, "ld-d")
        .await
        .unwrap();
    let bind_ms = t.elapsed().as_millis();
    assert_ne!(bind_r, 0);
    assert!(t.elapsed() < timeout, "bind took {bind_ms} ms");
    // A cancel is accepted (the account is unusable at once) but cannot unbind its peer: the
    // reply says so, and the record stays for the reconciler.
    let t = Instant::now();
    let v = c
        .post(
            "/cancel",
            &signed(&[("user_name", "ld-c"), ("password", PASSWORD), ("type", "2")]),
        )
        .await
        .unwrap();
    let cancel_ms = t.elapsed().as_millis();
    let cancel_r = v["result"].as_i64().unwrap();
    assert_ne!(cancel_r, 0);
    assert!(t.elapsed() < timeout, "cancel took {cancel_ms} ms");
    assert_eq!(verify_token(server.addrs.tcp, &c_token).await["result"], 4);
    assert_eq!(c.login("ld-c", 2).await.unwrap()["result"], 102);
    assert_eq!(
        c.register("ld-c", 2).await,
        Ok(103),
        "the name stays reserved"
    );

    let prosody = tokio::task::spawn_blocking(move || {
        prosody.restart();
        prosody
    })
    .await
    .unwrap();
    // Ready again by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(&readyz).await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "/readyz did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back_after = down.elapsed();
    // The failed bind and the cancel left their records; the reconciler rolls the bind back and
    // finishes the cancel (unbinds the peer, deletes the JID and the account).
    assert!(prosody.account_on_disk(&c_node));
    let rep = register::reconcile::run(&server.app, server.app.now() + 1, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(rep.failed, 0, "{rep:?}");
    assert_eq!(
        (rep.binds_rolled_back, rep.cancels_finished),
        (1, 1),
        "{rep:?}"
    );
    assert!(!prosody.account_on_disk(&c_node));
    assert!(server
        .app
        .store
        .account_by_name("ld-c")
        .await
        .unwrap()
        .is_none());
    assert!(
        prosody.roster(&jp, &pp).await.iter().all(|i| i.jid != jc),
        "ld-p keeps the cancelled ld-c"
    );
    assert_eq!(c.register("ld-new", 2).await, Ok(0));
    let (a, b) = server.app.store.unfinished(i64::MAX).await.unwrap();
    assert!(a.is_empty() && b.is_empty());
    println!(
        "link_down_degrades_and_recovers: while down: login {login_ms} ms (0), token verified, get_users 0, \
         register {register_ms} ms ({reg_r}), bind {bind_ms} ms ({bind_r}), cancel {cancel_ms} ms ({cancel_r}), /readyz 503; ready again {:.1}s \
         after the outage began; repaired {rep:?}",
        back_after.as_secs_f64()
    );
    server.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 5. `register reconcile` on what a crash leaves: each kind of record, one orphan JID.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_command_repairs_crash_leftovers() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_for(&prosody, dir.path().join("data"), Opts::default());
    let server = Server::start(cfg.clone()).await.expect("service starts");
    wait_link(&server, true, 20).await;
    let c = Client::new(&cfg.data_dir, server.addrs.http.port());
    let mut info = HashMap::new();
    for (n, k) in [
        ("cl-a", 1),
        ("cl-b", 2),
        ("cl-c", 2),
        ("cl-d", 2),
        ("cl-e", 1),
    ] {
        assert_eq!(c.register(n, k).await, Ok(0), "{n}");
        let v = c.login(n, k).await.unwrap();
        let s = |f: &str| v["user_info"][f].as_str().unwrap().to_owned();
        info.insert(
            n,
            (
                v["access_token"].as_str().unwrap().to_owned(),
                s("jid"),
                s("jid_pwd"),
            ),
        );
    }
    for peer in ["cl-b", "cl-c"] {
        let r = c
            .pair("/set_user_banding", &info["cl-a"].0, "cl-a", false, peer)
            .await;
        assert_eq!(r, Ok(0));
    }
    server.stop().await.unwrap();

    // What a crash at each step would leave (the service is stopped, as after a crash).
    let store = SqliteStore::open(&cfg.data_dir.join("register.db")).unwrap();
    let id = |n: &'static str| {
        let store = &store;
        async move { store.account_by_name(n).await.unwrap().unwrap() }
    };
    let (a, b, cc, d, e) = (
        id("cl-a").await,
        id("cl-b").await,
        id("cl-c").await,
        id("cl-d").await,
        id("cl-e").await,
    );
    // Register: the JID was made, the activation not written.
    store
        .set_account_state(e.id, AccountState::Pending, 1)
        .await
        .unwrap();
    // Register: the row was written, the JID never made (and its jid_pwd cannot even be opened).
    store
        .insert_pending_account(
            register::store::NewAccount {
                user_name: "cl-ghost".into(),
                kind: register::types::AccountType::Phone,
                device_type: None,
                des: String::new(),
                password_hash: "x".into(),
                jid_node: "ughost0000000000000".into(),
                jid_pwd: vec![0; 40],
            },
            1,
        )
        .await
        .unwrap();
    // Cancel: accepted, nothing remote done.
    assert!(store.begin_cancel(d.id, 1).await.unwrap());
    // Bind: bound on the server, `bound` not written; unbind: started, row not deleted.
    store
        .set_binding_state(a.id.min(b.id), a.id.max(b.id), BindingState::Binding, 1)
        .await
        .unwrap();
    store
        .set_binding_state(a.id.min(cc.id), a.id.max(cc.id), BindingState::Unbinding, 1)
        .await
        .unwrap();
    assert!(prosody.account_on_disk(&e.jid_node));
    assert!(prosody.account_on_disk(&d.jid_node));

    let toml = write_toml(dir.path(), &cfg, free_port(), free_port(), free_port());
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_register"))
            .arg("--config")
            .arg(&toml)
            .arg("reconcile")
            .env("REGISTER_XMPP__COMPONENT_SECRET", &prosody.secret)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run();
    println!("reconcile_command_repairs_crash_leftovers: `register reconcile` printed\n--- stderr\n{stderr}--- stdout\n{stdout}---");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("found 5 unfinished records"), "{stdout}");
    assert!(stdout.contains("5 repaired, 0 left"), "{stdout}");
    assert!(
        stdout.contains("undone: 2 (orphan JIDs deleted: 1)"),
        "{stdout}"
    );
    for l in [
        "cancels finished:     1",
        "binds rolled back:    1",
        "unbinds finished:     1",
    ] {
        assert!(stdout.contains(l), "{l}: {stdout}");
    }
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with('[')).count(),
        5,
        "{stderr}"
    );
    assert!(stderr.contains("[5/5]"), "{stderr}");

    // The orphan JID and the cancelled account are gone from the server, the rows are gone.
    assert!(!prosody.account_on_disk(&e.jid_node));
    assert!(!prosody.account_on_disk(&d.jid_node));
    for n in ["cl-d", "cl-e", "cl-ghost"] {
        assert!(store.account_by_name(n).await.unwrap().is_none(), "{n}");
    }
    // Both pairs are on neither roster and have no row; the three accounts still work.
    for (x, y) in [("cl-a", "cl-b"), ("cl-a", "cl-c")] {
        let (jx, px) = (&info[x].1, &info[x].2);
        let (jy, py) = (&info[y].1, &info[y].2);
        assert!(
            prosody.roster(jx, px).await.iter().all(|i| &i.jid != jy),
            "{x} keeps {y}"
        );
        assert!(
            prosody.roster(jy, py).await.iter().all(|i| &i.jid != jx),
            "{y} keeps {x}"
        );
    }
    for n in ["cl-a", "cl-b", "cl-c"] {
        assert!(prosody.can_login(&info[n].1, &info[n].2).await, "{n}");
    }
    assert!(store.bindings_of(a.id).await.unwrap().is_empty());
    let (code, stdout, _) = run();
    assert_eq!(code, Some(0));
    assert!(stdout.contains("found 0 unfinished records"), "{stdout}");
    println!("  second run: {}", stdout.lines().next().unwrap_or(""));
}

// ---------------------------------------------------------------------------------------------
// 6. The reconciler taking every record while requests are in flight (as the run at start and
// `register reconcile` do): its claims and the requests' last steps are compare-and-set, so a
// request either finishes (and the record is skipped) or is undone and not answered 0.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciler_racing_live_requests() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let data = tempfile::tempdir().unwrap();
    let cfg = config_for(&prosody, data.path().join("data"), Opts::default());
    let server = Server::start(cfg).await.expect("service starts");
    wait_link(&server, true, 20).await;
    let client = Client::new(&server.app.cfg.data_dir, server.addrs.http.port());
    let stream = Stream::new(client.clone());
    let tasks = stream.spawn("rr", 4, 3);
    let app = server.app.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut total = register::reconcile::Report::default();
            let mut runs = 0;
            while !stop.load(Ordering::SeqCst) {
                let r = register::reconcile::run(&app, app.now() + 1, &mut |_, _| {})
                    .await
                    .unwrap();
                runs += 1;
                total.found += r.found;
                total.repaired += r.repaired;
                total.skipped += r.skipped;
                total.failed += r.failed;
                total.pending_removed += r.pending_removed;
                total.orphan_jids_deleted += r.orphan_jids_deleted;
                total.binds_rolled_back += r.binds_rolled_back;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            (runs, total)
        })
    };
    join(tasks).await;
    stop.store(true, Ordering::SeqCst);
    let (runs, total) = racer.await.unwrap();
    let last = register::reconcile::run(&server.app, server.app.now() + 1, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(last.failed, 0, "{last:?}");
    let res = std::mem::take(&mut *stream.results.lock().unwrap());
    let found = check_consistent(&prosody, server.app.store.as_ref(), &client, &res).await;
    let regs_acked = res.registered.values().filter(|r| **r == Some(0)).count();
    let binds_acked = res.bound.values().filter(|r| **r == Some(0)).count();
    println!(
        "reconciler_racing_live_requests: {} requests; acknowledged {} registrations + {} binds; \
         refused {:?}; {runs} reconciler runs alongside: {total:?}; last run {last:?}",
        res.sent, regs_acked, binds_acked, res.errors
    );
    println!("  found intact: {found:?}");
    assert_eq!(found.accounts_intact as usize, regs_acked);
    assert_eq!(found.pairs_intact as usize, binds_acked);
    assert_eq!(found.pairs_bound_unacked, 0);
    server.stop().await.unwrap();
}
