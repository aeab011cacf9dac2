//! Consistency between the database and the XMPP server under faults (issue 5).
//!
//! Faults are real: Prosody is stopped and restarted under a stream of requests, the `register`
//! binary is killed with SIGKILL and started again on the same data directory, requests race. The
//! outcome is checked from outside the code under test: Prosody's account files on disk, logins
//! and rosters through the testkit's own XMPP client, the database read directly.
//!
//! Every test prints its counts (`--nocapture` to see them).
//!
//! Layout: this module holds what several tests share (a client of the service, the request
//! stream, the independent consistency check, link and binary-configuration helpers); each
//! submodule holds one kind of fault:
//!
//! - `prosody_stop`: Prosody stopped and restarted under a stream of requests;
//! - `sigkill`: the `register` binary killed with SIGKILL and started again;
//! - `races`: requests racing each other, and the reconciler racing requests;
//! - `link_down`: the service degraded while the component link is down, then recovering;
//! - `reconcile_cmd`: `register reconcile` repairing what a crash left;
//! - `reconcile_loop`: the service's periodic reconciler repairing it alone, grace and prune.
//!
//! Every service here runs on the suite's backend (`harness::test_config`): SQLite, or
//! PostgreSQL with `REGISTER_TEST_BACKEND=postgres`.

mod link_down;
mod prosody_stop;
mod races;
mod reconcile_cmd;
mod reconcile_loop;
mod sigkill;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use register::service::config::Config;
use register::store::{AccountState, BindingState, Store};
use serde_json::{json, Value};
use xmpp::testkit::Prosody;

use crate::harness::{assert_signed, signed, ProsodyExt, CAPTCHA};

const PASSWORD: &str = "password1";

/// A service on a fresh Prosody that binds by name (the open bind of old clients; bind tokens:
/// bind_tokens.rs), what it was started with, and a client of its HTTPS API.
struct OpenBind {
    prosody: Prosody,
    /// The data directory's parent: the test's own files.
    dir: tempfile::TempDir,
    cfg: Config,
    server: register::service::server::Server,
    client: Client,
}

/// Starts an [`OpenBind`] service, its test configuration first changed by `tune`.
async fn open_bind_service(tune: impl FnOnce(&mut Config)) -> OpenBind {
    let prosody = Prosody::start(xmpp::testkit::ProsodyOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let opts = crate::harness::Opts::default();
    let mut cfg = crate::harness::test_config(&prosody, dir.path().join("data"), opts).await;
    cfg.binding.consent = "none".into();
    tune(&mut cfg);
    let server = crate::harness::start_service(cfg.clone()).await;
    let client = Client::new(&cfg.data_dir, server.addrs.http.port());
    OpenBind {
        prosody,
        dir,
        cfg,
        server,
        client,
    }
}

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
        let http = crate::harness::trusting(data_dir)
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
            let v = self.post("/register", &signed("/register", &p)).await?;
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
        self.post("/login", &signed("/login", &p)).await
    }

    /// Registers and logs in each `(name, kind)`; name → (access token, jid, jid_pwd).
    async fn accounts<'a>(
        &self,
        list: &[(&'a str, u8)],
    ) -> HashMap<&'a str, (String, String, String)> {
        let mut info = HashMap::new();
        for &(n, k) in list {
            assert_eq!(self.register(n, k).await, Ok(0), "{n}");
            let v = self.login(n, k).await.unwrap();
            let s = |f: &str| v["user_info"][f].as_str().unwrap().to_owned();
            let token = v["access_token"].as_str().unwrap().to_owned();
            info.insert(n, (token, s("jid"), s("jid_pwd")));
        }
        info
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
        let p = if device { signed(path, &p) } else { owned(&p) };
        let v = self.post(path, &p).await?;
        Ok(v["result"].as_i64().unwrap())
    }
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
    crate::harness::tcp_verify_signed(tcp, token).await
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

/// Each side's subscription to the other on `prosody`: `a`'s to `b`, then `b`'s to `a` (each side
/// a `(jid, jid_pwd)`).
async fn subs_both_ways(
    prosody: &Prosody,
    a: (&str, &str),
    b: (&str, &str),
) -> [Option<String>; 2] {
    let items = crate::harness::items_both_ways(prosody, a, b).await;
    items.map(|item| item.map(|(subscription, _, _)| subscription))
}

/// Sorted replies of two requests sent at once (which of them won does not matter).
fn sorted(x: Result<i64, String>, y: Result<i64, String>) -> Vec<i64> {
    let mut r = vec![x.unwrap(), y.unwrap()];
    r.sort();
    r
}

impl Results {
    /// How many registrations and how many binds were acknowledged (answered 0).
    fn acked(&self) -> (usize, usize) {
        let zero = |r: &&Option<i64>| **r == Some(0);
        let regs = self.registered.values().filter(zero).count();
        (regs, self.bound.values().filter(zero).count())
    }
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
        let [on_p, on_d] = subs_both_ways(prosody, (pj, pp), (dj, dp)).await;
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
// The component link.

pub(crate) use crate::harness::wait_link;

/// Stops Prosody on a blocking thread (stopping waits for the process) and gives it back.
pub(crate) async fn stopped(mut prosody: Prosody) -> Prosody {
    tokio::task::spawn_blocking(move || {
        prosody.stop();
        prosody
    })
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The binary: fixed ports and a configuration file (the SIGKILL test and `register reconcile`).

use crate::harness::free_port;

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
         api_rate_per_minute = 0\naccount_rate_per_minute = 0\n\
         [captcha]\nfixed_answer = {:?}\n\
         [reconcile]\ninterval_secs = 0\n{}",
        c.data_dir,
        c.xmpp.domain,
        c.xmpp.component,
        c.xmpp.component_addr,
        c.xmpp.c2s_addr,
        c.security.sign_key,
        c.security.app_keys[0],
        c.captcha.fixed_answer,
        crate::harness::database_toml(c),
    );
    let path = dir.join("register.toml");
    std::fs::write(&path, toml).unwrap();
    path
}
