//! Starts Prosody (from `xmpp::testkit`) and the service on free loopback ports, and talks to the
//! service as a client would: HTTPS with the service's own self-signed certificate trusted.
//!
//! The service is built by [`Server::start`], the function `main` calls, so its store, token cache,
//! clock and hashing threads are the ones an operator runs; what differs is the configuration
//! ([`config_for`]: test keys, `captcha.fixed_answer`, no rate limit). The lock-out that never
//! engaged (issue 14) hid in the requests, not in the wiring: every test guessed passwords of a
//! valid length. `binary_security.rs` runs the security rules against the binary with an operator's
//! configuration.

use std::path::PathBuf;

use register::auth::crypto;
use register::service::config::Config;
use register::service::server::Server;
use serde_json::{json, Value};
use xmpp::testkit::{Prosody, ProsodyOptions, TestClient};

pub const APP_KEY: &str = "test-app-key";
pub const SIGN_KEY: &str = "test-sign-key";
pub const CAPTCHA: &str = "abcde";

/// Prosody + the service + an HTTPS client.
pub struct Env {
    pub prosody: Prosody,
    pub server: Option<Server>,
    pub http: reqwest::Client,
    pub base: String,
    pub _data: tempfile::TempDir,
}

/// Options for [`Env::start`].
#[derive(Clone, Copy, Default)]
pub struct Opts {
    pub tls: bool,
    pub privileged: bool,
    pub ibr: bool,
}

impl Opts {
    /// A test Prosody that requires TLS on c2s.
    pub const TLS: Opts = Opts {
        tls: true,
        privileged: false,
        ibr: false,
    };
    /// Binding by the component's privileges (`xmpp.binding = "privileged"`).
    pub const PRIVILEGED: Opts = Opts {
        tls: false,
        privileged: true,
        ibr: false,
    };
    /// Accounts by in-band registration (`xmpp.accounts = "ibr"`).
    pub const IBR: Opts = Opts {
        tls: false,
        privileged: false,
        ibr: true,
    };
}

/// The service's configuration for a test server (Prosody here, ejabberd in `interop`).
pub fn config_for(s: &dyn xmpp::testkit::TestServer, data_dir: PathBuf, o: Opts) -> Config {
    let mut c = Config {
        data_dir,
        ..Config::default()
    };
    c.http.listen = "127.0.0.1:0".parse().unwrap();
    c.tcp.listen = "127.0.0.1:0".parse().unwrap();
    c.admin.listen = "127.0.0.1:0".parse().unwrap();
    c.xmpp.domain = s.domain().to_owned();
    c.xmpp.component = s.component().to_owned();
    c.xmpp.component_addr = s.component_addr().to_string();
    c.xmpp.component_secret = s.secret().to_owned();
    c.xmpp.c2s_addr = s.c2s_addr().to_string();
    match s.ca_file() {
        Some(ca) => {
            c.xmpp.c2s_tls = "required".into();
            c.xmpp.tls_ca_file = ca.to_string_lossy().into_owned();
        }
        None => {
            c.xmpp.c2s_tls = "off".into();
            c.xmpp.allow_plain_without_tls = true;
        }
    }
    c.xmpp.timeout_ms = 5000;
    c.xmpp.accounts = if o.ibr { "ibr" } else { "component" }.into();
    c.xmpp.binding = if o.privileged { "privileged" } else { "c2s" }.into();
    c.security.sign_key = SIGN_KEY.into();
    c.security.app_keys = vec![APP_KEY.into()];
    c.security.rate_per_minute = 0;
    c.security.api_rate_per_minute = 0;
    c.security.account_rate_per_minute = 0;
    c.captcha.fixed_answer = CAPTCHA.into();
    c.reconcile.interval_secs = 0;
    c
}

/// Starts the service in-process with `cfg` (its log in the test output) and waits for its
/// component link: the start-up every in-process test shares.
pub async fn start_service(cfg: Config) -> Server {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let server = Server::start(cfg).await.expect("service starts");
    wait_link(&server, true, 20).await;
    server
}

/// [`start_service`], and an HTTPS client (keeping cookies) for it with its base URL.
pub async fn start_https(cfg: Config) -> (Server, reqwest::Client, String) {
    let server = start_service(cfg).await;
    let http = trusting(&server.app.cfg.data_dir)
        .cookie_store(true)
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", server.addrs.http.port());
    (server, http, base)
}

/// A client builder trusting the service's self-signed certificate in `data_dir`.
pub fn trusting(data_dir: &std::path::Path) -> reqwest::ClientBuilder {
    let cert = std::fs::read(data_dir.join("cert.pem")).expect("the service's cert.pem");
    reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
}

/// [`crate::binary::write_config`] with the TOML sections `extra` appended (sections it does not
/// write itself: `[security]`, `[database]` on SQLite, …).
pub async fn binary_config(
    server: &dyn xmpp::testkit::TestServer,
    dir: &std::path::Path,
    extra: &str,
) -> (std::path::PathBuf, Config) {
    let (cfg, c) = crate::binary::write_config(server, dir, Opts::default()).await;
    let toml = std::fs::read_to_string(&cfg).unwrap() + extra;
    std::fs::write(&cfg, toml).unwrap();
    (cfg, c)
}

/// The `register` binary started with the configuration file `cfg` (the component secret from
/// the environment, as an operator passes it; standard error into `log`), once its admin
/// listener at `admin` answers `/readyz` with 200 (at most 30 s, else the test fails).
pub async fn ready_binary(
    cfg: &std::path::Path,
    secret: &str,
    admin: std::net::SocketAddr,
    log: &std::path::Path,
) -> tokio::process::Child {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_register"))
        .arg("--config")
        .arg(cfg)
        .env("REGISTER_XMPP__COMPONENT_SECRET", secret)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ready = async {
        let url = format!("http://{admin}/readyz");
        while !reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(30), ready)
        .await
        .is_err()
    {
        panic!(
            "not ready in 30 s:\n{}",
            std::fs::read_to_string(log).unwrap()
        );
    }
    child
}

/// Sends SIGTERM to the binary `child` and checks it exits with 0 within 15 s (the graceful stop).
pub async fn sigterm_exits_0(child: &mut tokio::process::Child) {
    let pid = child.id().expect("the binary runs").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -TERM {pid}");
    let status = tokio::time::timeout(std::time::Duration::from_secs(15), child.wait())
        .await
        .expect("the binary stops on SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// `name`'s account as the service's store holds it, checked active with its JID on Prosody.
pub async fn active_account(
    server: &Server,
    prosody: &Prosody,
    name: &str,
) -> register::store::Account {
    let a = server
        .app
        .store
        .account_by_name(name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no account {name}"));
    assert_eq!(a.state, register::store::AccountState::Active, "{name}");
    assert!(
        prosody.account_on_disk(&a.jid_node),
        "{name}'s JID on Prosody"
    );
    a
}

/// A GET of `path` at `base` (no parameters), unchecked.
pub async fn fetch(http: &reqwest::Client, base: &str, path: &str) -> reqwest::Response {
    http.get(format!("{base}{path}")).send().await.unwrap()
}

/// Waits until the service's component link is up (`up`) or down; panics after `secs` seconds.
pub async fn wait_link(server: &Server, up: bool, secs: u64) {
    let within = std::time::Duration::from_secs(secs);
    assert!(
        xmpp::testkit::wait_link(server.app.xmpp.link_watch(), up, within).await,
        "component link did not become {} within {secs} s",
        if up { "up" } else { "down" }
    );
}

impl Env {
    pub async fn start(o: Opts) -> Env {
        Env::start_tuned(o, |_| {}).await
    }

    /// Start with the test configuration changed by `tune`.
    pub async fn start_tuned(o: Opts, tune: impl FnOnce(&mut Config)) -> Env {
        let prosody = Prosody::start(ProsodyOptions {
            tls: o.tls,
            ..Default::default()
        });
        let data = tempfile::tempdir().unwrap();
        let mut cfg = test_config(&prosody, data.path().join("data"), o).await;
        tune(&mut cfg);
        Env::start_with(prosody, data, cfg).await
    }

    pub async fn start_with(prosody: Prosody, data: tempfile::TempDir, cfg: Config) -> Env {
        let (server, http, base) = start_https(cfg).await;
        Env {
            prosody,
            server: Some(server),
            http,
            base,
            _data: data,
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    /// Wait until the component link is up (e.g. after restarting Prosody).
    #[allow(dead_code)] // part of the harness's interface; no test calls it today
    pub async fn wait_link(&self) {
        wait_link(self.server(), true, 20).await;
    }

    /// POST a form and return the JSON reply, checking its `sign`.
    pub async fn post(&self, path: &str, params: &[(&str, &str)]) -> Value {
        post_form(&self.http, &self.base, path, params).await
    }

    /// GET with a query string.
    pub async fn get<P: serde::Serialize + ?Sized>(&self, path: &str, params: &P) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .query(params)
            .send()
            .await
            .unwrap();
        signed_reply(r, path).await
    }

    /// Fetch a captcha (sets the cookie in this client).
    pub async fn captcha(&self) -> String {
        let r = crate::harness::fetch(&self.http, &self.base, "/verify_code").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/png");
        let id = r.headers()["x-verify-code-id"].to_str().unwrap().to_owned();
        let body = r.bytes().await.unwrap();
        assert_eq!(&body[..4], b"\x89PNG");
        id
    }

    /// Register a phone (captcha) or a device (signed). Returns the result code.
    pub async fn register(&self, name: &str, password: &str, kind: u8) -> i64 {
        let t = kind.to_string();
        if kind == 2 {
            let p = signed(
                "/register",
                &[
                    ("user_name", name),
                    ("password", password),
                    ("type", &t),
                    ("des", "a device"),
                    ("device_type", "cam"),
                ],
            );
            let p: Vec<(&str, &str)> = p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            self.post("/register", &p).await["result"].as_i64().unwrap()
        } else {
            self.captcha().await;
            self.post(
                "/register",
                &[
                    ("user_name", name),
                    ("password", password),
                    ("type", &t),
                    ("verify_code", CAPTCHA),
                ],
            )
            .await["result"]
                .as_i64()
                .unwrap()
        }
    }

    /// Log in; returns the whole reply.
    pub async fn login(&self, name: &str, password: &str, kind: u8) -> Value {
        let t = kind.to_string();
        let mut base = vec![
            ("user_name", name),
            ("password", password),
            ("type", t.as_str()),
        ];
        if kind != 2 {
            self.captcha().await;
            base.push(("verify_code", CAPTCHA));
        }
        let p = signed("/login", &base);
        let p: Vec<(&str, &str)> = p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        self.post("/login", &p).await
    }

    /// Register and log in; returns (token, jid, jid_pwd).
    pub async fn account(&self, name: &str, kind: u8) -> (String, String, String) {
        assert_eq!(
            self.register(name, "password1", kind).await,
            0,
            "register {name}"
        );
        let v = self.login(name, "password1", kind).await;
        assert_eq!(v["result"], 0, "login {name}: {v}");
        (
            v["access_token"].as_str().unwrap().to_owned(),
            v["user_info"]["jid"].as_str().unwrap().to_owned(),
            v["user_info"]["jid_pwd"].as_str().unwrap().to_owned(),
        )
    }
}

/// `REGISTER_TEST_BACKEND=postgres` (with `REGISTER_TEST_PG_URL`) runs every service the suite
/// starts (in-process or the binary) on PostgreSQL instead of SQLite; `.ci/run` runs the suite both
/// ways. Asking for PostgreSQL without a URL fails the test: it never falls back to SQLite.
pub fn postgres_backend() -> Option<String> {
    if std::env::var("REGISTER_TEST_BACKEND").as_deref() != Ok("postgres") {
        return None;
    }
    Some(pg_url_env().unwrap_or_else(|| {
        panic!(
            "REGISTER_TEST_BACKEND=postgres but REGISTER_TEST_PG_URL is not set \
             (scripts/pg-test.sh start DIR prints one)"
        )
    }))
}

fn pg_url_env() -> Option<String> {
    std::env::var("REGISTER_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// Whether this run must have every server it needs: on CI (`CI=true`, as CI services set it) or
/// when PostgreSQL was asked for, a missing server fails the test instead of skipping it.
pub fn strict() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
        || std::env::var("REGISTER_TEST_BACKEND").as_deref() == Ok("postgres")
}

/// The PostgreSQL server for the tests that need one (`REGISTER_TEST_PG_URL`). Without it: a
/// failure on CI or with `REGISTER_TEST_BACKEND=postgres`, else `None` and a line saying the test
/// was skipped (so a developer's `cargo test` without PostgreSQL still runs the rest).
pub fn pg_url(test: &str) -> Option<String> {
    if let Some(u) = pg_url_env() {
        return Some(u);
    }
    assert!(
        !strict(),
        "{test}: REGISTER_TEST_PG_URL is not set, and this run may not skip (CI or \
         REGISTER_TEST_BACKEND=postgres); start one with scripts/pg-test.sh"
    );
    eprintln!("{test}: skipped (REGISTER_TEST_PG_URL is not set; see scripts/pg-test.sh)");
    None
}

/// [`config_for`] on the suite's backend: with `REGISTER_TEST_BACKEND=postgres`, a PostgreSQL
/// database of its own (left to the throwaway cluster, which CI removes).
pub async fn test_config(s: &dyn xmpp::testkit::TestServer, data_dir: PathBuf, o: Opts) -> Config {
    let mut c = config_for(s, data_dir, o);
    if let Some(base) = postgres_backend() {
        c.database.url = crate::postgres::TestDb::create(&base).await.url;
    }
    c
}

/// The database of `cfg`, opened beside the service (or after it) to read it directly: the test's
/// independent view, with no token cache in front.
pub async fn direct_store(cfg: &Config) -> std::sync::Arc<dyn register::store::Store> {
    if cfg.database.is_postgres() {
        std::sync::Arc::new(
            register::store::postgres::PgStore::connect(&cfg.database.url, 4)
                .await
                .expect("PostgreSQL store"),
        )
    } else {
        std::sync::Arc::new(
            register::store::sqlite::SqliteStore::open(&cfg.data_dir.join("register.db"))
                .expect("SQLite store"),
        )
    }
}

/// The `[database]` section for a configuration file written from `cfg` (empty on SQLite).
pub fn database_toml(cfg: &Config) -> String {
    if cfg.database.url.is_empty() {
        String::new()
    } else {
        format!("[database]\nurl = {:?}\n", cfg.database.url)
    }
}

/// The answer of the captcha `id` as the service stored it, read straight from its database —
/// the tests' way to answer a random captcha (no `fixed_answer`), with nothing in the service
/// that a configuration could switch on.
pub async fn issued_answer(cfg: &Config, id: &str) -> String {
    stored_captcha(cfg, id)
        .await
        .unwrap_or_else(|| panic!("captcha {id} is not stored"))
}

/// The stored answer of captcha `id`, if it is still stored (read without taking it).
pub async fn stored_captcha(cfg: &Config, id: &str) -> Option<String> {
    if cfg.database.is_postgres() {
        let (c, conn) = tokio_postgres::connect(&cfg.database.url, tokio_postgres::NoTls)
            .await
            .expect("connecting to the service's database");
        tokio::spawn(conn);
        c.query_opt("SELECT answer FROM captchas WHERE id = $1", &[&id])
            .await
            .unwrap()
            .map(|row| row.get(0))
    } else {
        use rusqlite::OptionalExtension;
        let db = rusqlite::Connection::open_with_flags(
            cfg.data_dir.join("register.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        db.query_row("SELECT answer FROM captchas WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()
        .unwrap()
    }
}

/// A loopback port nobody listens on, for a binary's fixed ports, chosen below Linux's ephemeral
/// range (32768–60999): a port picked by binding port 0 lies inside it, where any outgoing
/// connection (to PostgreSQL, Prosody, the service) may take it as its local port before the
/// binary — or the binary restarted after a SIGKILL — binds it.
pub fn free_port() -> u16 {
    // Handed out once per process: a config's three listeners never share one.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let p = 10_000 + rand::random::<u16>() % 22_000;
        if !given.contains(&p) && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            given.push(p);
            return p;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// POST a form to `base` + `path`; the reply must be 200 with a valid `sign`.
pub async fn post_form<P: serde::Serialize + ?Sized>(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    params: &P,
) -> Value {
    let r = http
        .post(format!("{base}{path}"))
        .form(params)
        .send()
        .await
        .unwrap();
    signed_reply(r, path).await
}

/// POST a form to `base` + `path` and return the JSON body, with no check of status or `sign`.
pub async fn post_unchecked<P: serde::Serialize + ?Sized>(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    params: &P,
) -> Value {
    let r = http.post(format!("{base}{path}")).form(params).send();
    r.await.unwrap().json().await.unwrap()
}

/// A reply to `path` that must be a 200 with a signed JSON body.
pub async fn signed_reply(r: reqwest::Response, path: &str) -> Value {
    assert_eq!(r.status(), 200, "{path}");
    let v: Value = r.json().await.unwrap();
    assert_signed(&v);
    v
}

/// Independent checks on the XMPP server, through the testkit's own client (not the code under test).
pub trait ProsodyExt {
    /// Whether `jid` logs in with `password`.
    async fn can_login(&self, jid: &str, password: &str) -> bool;
    /// `jid`'s roster as the server holds it.
    async fn roster(&self, jid: &str, password: &str) -> Vec<xmpp::RosterEntry>;
}

impl ProsodyExt for Prosody {
    async fn can_login(&self, jid: &str, password: &str) -> bool {
        let node = jid.split('@').next().unwrap();
        match TestClient::login(self, node, password).await {
            Ok(c) => {
                c.close().await;
                true
            }
            Err(_) => false,
        }
    }

    async fn roster(&self, jid: &str, password: &str) -> Vec<xmpp::RosterEntry> {
        roster_on(self, jid, password).await
    }
}

/// `peer`'s item on `jid`'s roster as Prosody holds it: (subscription, nickname, groups).
pub async fn roster_item(
    env: &Env,
    jid: &str,
    pwd: &str,
    peer: &str,
) -> Option<(String, String, Vec<String>)> {
    roster_item_on(&env.prosody, jid, pwd, peer).await
}

/// Parameters with a version 2 `param_sign` added for `POST path` (as a device or the login page
/// computes it): `sign_v=2`, the current `timestamp` and a fresh `nonce` added first.
pub fn signed(path: &str, params: &[(&str, &str)]) -> Vec<(String, String)> {
    signed_as("POST", path, params, APP_KEY.as_bytes())
}

/// [`signed`] for another method or app key.
pub fn signed_as(
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    key: &[u8],
) -> Vec<(String, String)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let mut p: Vec<(String, String)> = params
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    for (k, v) in [
        ("sign_v", "2".to_owned()),
        ("timestamp", now),
        ("nonce", crypto::new_nonce()),
    ] {
        if !p.iter().any(|(n, _)| n == k) {
            p.push((k.into(), v));
        }
    }
    let s = crypto::param_sign_v2(key, method, path, &p);
    p.push(("param_sign".into(), s));
    p
}

/// Parameters with a version 1 `param_sign` (an older app's), refused unless the service has
/// `security.accept_v1_signatures`.
pub fn signed_v1(params: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = params
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let s = crypto::param_sign(APP_KEY.as_bytes(), &p);
    p.push(("param_sign".into(), s));
    p
}

/// Check a reply's `sign` as a client would, independently of the server's code: serde_json's
/// default map is sorted by key, so `to_string` is the canonical form.
pub fn assert_signed(v: &Value) {
    assert_signed_with(v, SIGN_KEY.as_bytes())
}

/// [`assert_signed`] with another signing key.
pub fn assert_signed_with(v: &Value, key: &[u8]) {
    let mut m = v.as_object().expect("reply is an object").clone();
    let sign = m.remove("sign").expect("reply has sign");
    assert_eq!(sign, json!(reply_sign(&m, key)), "sign of {m:?}");
}

/// The `sign` of a reply's other members under `key`, computed as a client would.
pub fn reply_sign(members: &serde_json::Map<String, Value>, key: &[u8]) -> String {
    use hmac::Mac;
    let text = serde_json::to_string(&Value::Object(members.clone())).unwrap();
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// [`tcp_verify`] with the reply's `sign` checked against the test key.
pub async fn tcp_verify_signed(addr: std::net::SocketAddr, token: &str) -> Value {
    let v = tcp_verify(addr, token).await;
    assert_signed(&v);
    v
}

/// One `/verify_access_token` over a new TCP connection to `addr`: the reply, its `sign` not yet
/// checked (the caller knows the key).
pub async fn tcp_verify(addr: std::net::SocketAddr, token: &str) -> Value {
    let body = json!({ "access_token": token });
    tcp_line(addr, "/verify_access_token", body).await
}

/// One request line `path body` over a new TCP connection to `addr`: the reply, its `sign` not
/// yet checked.
pub async fn tcp_line(addr: std::net::SocketAddr, path: &str, body: Value) -> Value {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut c = tokio::io::BufReader::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let line = format!("{path} {body}\n");
    c.get_mut().write_all(line.as_bytes()).await.unwrap();
    let mut reply = String::new();
    c.read_line(&mut reply).await.unwrap();
    serde_json::from_str(&reply).unwrap()
}

/// Tests of one shape: each `name => scenario(values);` entry is a test that runs the scenario
/// with its values (the modes a scenario must hold in, written as a table).
macro_rules! variants {
    ($($(#[$attr:meta])* $name:ident => $run:expr;)+) => {
        $(
            $(#[$attr])*
            #[tokio::test]
            async fn $name() {
                $run.await;
            }
        )+
    };
}
pub(crate) use variants;

// Steps several service tests share, each written once (issue 15, point 6).

/// Borrowed pairs of owned parameters (what [`signed`] returns), as [`Env::post`] takes them.
pub fn pairs(params: &[(String, String)]) -> Vec<(&str, &str)> {
    params
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect()
}

impl Env {
    /// POST `params` with a version 2 `param_sign` added (as a device sends them); the JSON reply.
    pub async fn post_signed(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let p = signed(path, params);
        self.post(path, &pairs(&p)).await
    }

    /// A POST of `params` to `path` with a version 2 `param_sign` added, as a future that owns what
    /// it needs (to run many at once) and gives the raw response.
    pub fn signed_request(
        &self,
        path: &str,
        params: &[(&str, &str)],
    ) -> impl std::future::Future<Output = reqwest::Response> + 'static {
        let form = signed(path, params);
        let req = self.http.post(format!("{}{path}", self.base)).form(&form);
        async move { req.send().await.unwrap() }
    }

    /// The text of the admin port's `/metrics`.
    pub async fn metrics_text(&self) -> String {
        let url = format!("http://{}/metrics", self.server().addrs.admin);
        reqwest::get(url).await.unwrap().text().await.unwrap()
    }

    /// The access token of one more login of an existing account (a second session).
    pub async fn second_token(&self, name: &str, password: &str, kind: u8) -> String {
        let v = self.login(name, password, kind).await;
        v["access_token"].as_str().unwrap().to_owned()
    }
}

/// A roster item as `(subscription, nickname, groups)`.
pub type RosterItem = (String, String, Vec<String>);

/// `jid`'s roster on `server`, read by an independent c2s login.
pub async fn roster_on(
    server: &dyn xmpp::testkit::TestServer,
    jid: &str,
    password: &str,
) -> Vec<xmpp::RosterEntry> {
    let node = jid.split('@').next().unwrap();
    let mut c = TestClient::login(server, node, password)
        .await
        .expect("independent login");
    let r = c.roster().await.expect("roster");
    c.close().await;
    r
}

/// `peer`'s item on `jid`'s roster on `server`, read by an independent login.
pub async fn roster_item_on(
    server: &dyn xmpp::testkit::TestServer,
    jid: &str,
    pwd: &str,
    peer: &str,
) -> Option<RosterItem> {
    let roster = roster_on(server, jid, pwd).await;
    let item = roster.into_iter().find(|e| e.jid == peer)?;
    Some((item.subscription, item.nickname, item.groups))
}

/// Each side's item for the other on `server`: `a`'s for `b`, then `b`'s for `a` (each side a
/// `(jid, jid_pwd)`).
pub async fn items_both_ways(
    server: &dyn xmpp::testkit::TestServer,
    a: (&str, &str),
    b: (&str, &str),
) -> [Option<RosterItem>; 2] {
    [
        roster_item_on(server, a.0, a.1, b.0).await,
        roster_item_on(server, b.0, b.1, a.0).await,
    ]
}

/// The item of a bound peer: subscription `both`, the peer's user_name, the group of its type.
pub fn bound_item(user_name: &str, group: &str) -> Option<RosterItem> {
    Some(("both".into(), user_name.into(), vec![group.into()]))
}

/// `register --config CFG ARGS…` (the real binary) with the component secret and `envs` in its
/// environment: its exit status, stdout and stderr.
pub fn run_cli(
    cfg: &std::path::Path,
    secret: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_register"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env("REGISTER_XMPP__COMPONENT_SECRET", secret)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let code = out.status.code().unwrap_or(-1);
    (code, text(&out.stdout), text(&out.stderr))
}

/// What the service stored, as bytes to scan for secrets, and how many tables were read: the
/// SQLite files (WAL included; no table count), or on PostgreSQL every row of `table` (all tables
/// of the schema when `None`) as PostgreSQL prints it (bytea as hex).
pub async fn stored_bytes(cfg: &Config, table: Option<&str>) -> (Vec<u8>, usize) {
    if !cfg.database.is_postgres() {
        let mut bytes = Vec::new();
        for f in ["register.db", "register.db-wal"] {
            if let Ok(b) = std::fs::read(cfg.data_dir.join(f)) {
                bytes.extend(b);
            }
        }
        return (bytes, 0);
    }
    let (c, conn) = tokio_postgres::connect(&cfg.database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let tables: Vec<String> = match table {
        Some(t) => vec![t.to_owned()],
        None => {
            let sql = "SELECT table_name::text FROM information_schema.tables \
                       WHERE table_schema = 'public'";
            let rows = c.query(sql, &[]).await.unwrap();
            rows.iter().map(|r| r.get(0)).collect()
        }
    };
    let mut text = String::new();
    for name in &tables {
        let sql = format!("SELECT t::text FROM {name} t");
        for row in c.query(&sql, &[]).await.unwrap() {
            text += &row.get::<_, String>(0);
            text.push('\n');
        }
    }
    (text.into_bytes(), tables.len())
}

/// Waits (30 s at most) until the `register` binary `child` answers 200 on its admin port's
/// `/readyz` at `admin`; panics, with `log()`, when it exits first or the time runs out.
pub async fn wait_binary_ready(
    child: &mut tokio::process::Child,
    admin: &str,
    log: impl Fn() -> String,
) {
    let url = format!("http://{admin}/readyz");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(&url).await {
            if r.status() == 200 {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("binary exited with {status}:\n{}", log());
        }
        let waited = std::time::Instant::now() < deadline;
        assert!(waited, "binary not ready:\n{}", log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
