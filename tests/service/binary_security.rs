//! The security rules against the real `register` binary, started from a config file as an operator
//! runs it: nothing of the test configuration (`captcha.fixed_answer`, the test keys) is used. The
//! captcha's answer is read from the service's own database, where the issued answer is kept, and
//! every request is signed with the keys the binary generated in its data directory.
//!
//! With `REGISTER_TEST_BACKEND=postgres` the binary keeps its data in a PostgreSQL database of its
//! own, and the rows are read from there.

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use xmpp::testkit::{Prosody, ProsodyOptions};

use crate::binary::write_config;
use crate::harness::{assert_signed_with, issued_answer, tcp_verify, wait_binary_ready, Opts};

/// Where the binary keeps its rows, read independently of the service's code.
struct Db {
    cfg: register::service::config::Config,
}

impl Db {
    /// The database the configuration `c` names.
    fn of(c: &register::service::config::Config) -> Db {
        Db { cfg: c.clone() }
    }

    /// One integer row of `sql` with one text parameter.
    async fn ints(&self, sql_lite: &str, sql_pg: &str, arg: &str) -> Option<Vec<i64>> {
        if !self.cfg.database.is_postgres() {
            let c = rusqlite::Connection::open_with_flags(
                self.cfg.data_dir.join("register.db"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            let mut s = c.prepare(sql_lite).unwrap();
            let n = s.column_count();
            return s
                .query_row([arg], |r| (0..n).map(|i| r.get::<_, i64>(i)).collect())
                .ok();
        }
        let (c, conn) = tokio_postgres::connect(&self.cfg.database.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let row = c.query_opt(sql_pg, &[&arg]).await.unwrap()?;
        Some((0..row.len()).map(|i| row.get::<_, i64>(i)).collect())
    }

    /// `(failures, locked_until)` of an account for the loopback client network, where the
    /// tests' requests come from; `(0, 0)` when there is none.
    async fn lock_row(&self, name: &str) -> (i64, i64) {
        let v = self
            .ints(
                "SELECT f.failures, f.locked_until FROM login_failures f \
                 JOIN accounts a ON a.id = f.account_id \
                 WHERE a.user_name = ?1 AND f.network = '127.0.0.1'",
                "SELECT f.failures::BIGINT, f.locked_until::BIGINT FROM login_failures f \
                 JOIN accounts a ON a.id = f.account_id \
                 WHERE a.user_name = $1 AND f.network = '127.0.0.1'",
                name,
            )
            .await;
        v.map_or((0, 0), |v| (v[0], v[1]))
    }

    /// The answer the service keeps for a captcha it issued.
    async fn captcha_answer(&self, id: &str) -> String {
        issued_answer(&self.cfg, id).await
    }
}

/// The binary as a child process, with an HTTPS client trusting its generated certificate and the
/// keys it generated.
struct Binary {
    child: tokio::process::Child,
    cfg: std::path::PathBuf,
    secret: String,
    http: reqwest::Client,
    base: String,
    tcp: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    app_key: Vec<u8>,
    sign_key: Vec<u8>,
}

impl Binary {
    /// Write the configuration (the test's `extra` TOML sections appended; on PostgreSQL with a
    /// database of its own) and start the binary.
    /// A fresh Prosody and data folder, and the binary started on them (`extra` appended to its
    /// config); the Prosody and the folder live as long as the test holds them.
    async fn fresh(extra: &str) -> (Prosody, tempfile::TempDir, Binary, Db) {
        let prosody = Prosody::start(ProsodyOptions::default());
        let dir = tempfile::tempdir().unwrap();
        let (bin, db) = Binary::first(&prosody, dir.path(), extra).await;
        (prosody, dir, bin, db)
    }

    async fn first(prosody: &Prosody, dir: &std::path::Path, extra: &str) -> (Binary, Db) {
        let (cfg, c) = write_config(prosody, dir, Opts::default()).await;
        let mut toml = std::fs::read_to_string(&cfg).unwrap();
        toml.push_str(extra);
        std::fs::write(&cfg, toml).unwrap();
        let db = Db::of(&c);
        let bin = Binary::start(cfg, c.xmpp.component_secret, c.tcp.listen, c.admin.listen).await;
        (bin, db)
    }

    async fn start(
        cfg: std::path::PathBuf,
        secret: String,
        tcp: std::net::SocketAddr,
        admin: std::net::SocketAddr,
    ) -> Binary {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_register"))
            .arg("--config")
            .arg(&cfg)
            .env("REGISTER_XMPP__COMPONENT_SECRET", &secret)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Its output goes nowhere: nothing to show when it fails.
        wait_binary_ready(&mut child, &admin.to_string(), String::new).await;
        let text: toml::Value = toml::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        let data = std::path::PathBuf::from(text["data_dir"].as_str().unwrap());
        let http_port = text["http"]["listen"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        let cert = std::fs::read(data.join("cert.pem")).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
            .build()
            .unwrap();
        let key = |f: &str| {
            std::fs::read_to_string(data.join(f))
                .unwrap()
                .trim()
                .as_bytes()
                .to_vec()
        };
        Binary {
            child,
            secret,
            http,
            base: format!("https://localhost:{http_port}"),
            tcp,
            admin,
            app_key: key("app_key"),
            sign_key: key("sign_key"),
            cfg,
        }
    }

    /// SIGTERM; the binary exits 0.
    async fn stop(
        mut self,
    ) -> (
        std::path::PathBuf,
        String,
        std::net::SocketAddr,
        std::net::SocketAddr,
    ) {
        crate::harness::sigterm_exits_0(&mut self.child).await;
        (self.cfg, self.secret, self.tcp, self.admin)
    }

    async fn restart(self) -> Binary {
        let (cfg, secret, tcp, admin) = self.stop().await;
        Binary::start(cfg, secret, tcp, admin).await
    }

    /// `params` with a version 2 `param_sign` for `POST path`, made with the binary's generated
    /// app key.
    fn signed(&self, path: &str, params: &[(&str, &str)]) -> Vec<(String, String)> {
        crate::harness::signed_as("POST", path, params, &self.app_key)
    }

    /// POST a signed form; the reply's `sign` is checked with the generated sign key.
    async fn post(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .form(&self.signed(path, params))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let v: Value = r.json().await.unwrap();
        self.assert_signed(&v);
        v
    }

    fn assert_signed(&self, v: &Value) {
        assert_signed_with(v, &self.sign_key);
    }

    /// A new captcha: its id, from the header.
    async fn captcha(&self) -> String {
        let r = crate::harness::fetch(&self.http, &self.base, "/verify_code").await;
        assert_eq!(r.status(), 200);
        let id = r.headers()["x-verify-code-id"].to_str().unwrap().to_owned();
        assert_eq!(&r.bytes().await.unwrap()[..4], b"\x89PNG");
        id
    }

    /// A phone's request with a captcha solved from the database.
    async fn human(&self, db: &Db, path: &str, params: &[(&str, &str)]) -> Value {
        let id = self.captcha().await;
        let answer = db.captcha_answer(&id).await;
        let mut p = params.to_vec();
        p.push(("verify_code_id", &id));
        p.push(("verify_code", &answer));
        self.post(path, &p).await
    }

    async fn login_device(&self, name: &str, password: &str) -> Value {
        self.post(
            "/login",
            &[("user_name", name), ("password", password), ("type", "2")],
        )
        .await
    }

    async fn login_phone(&self, db: &Db, name: &str, password: &str) -> Value {
        self.human(
            db,
            "/login",
            &[("user_name", name), ("password", password), ("type", "1")],
        )
        .await
    }

    /// One TCP token check.
    async fn tcp_check(&self, token: &str) -> Value {
        let v = tcp_verify(self.tcp, token).await;
        self.assert_signed(&v);
        v
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

const LOCK: &str = "[security]\nlockout_threshold = 3\nlockout_secs = 4\n";

#[tokio::test]
async fn binary_locks_a_device_right_after_registering_and_the_lock_expires() {
    let (_prosody, _dir, bin, db) = Binary::fresh(LOCK).await;
    let reg = bin
        .post(
            "/register",
            &[
                ("user_name", "cam-001"),
                ("password", "secret123"),
                ("type", "2"),
                ("des", ""),
                ("device_type", "camera"),
            ],
        )
        .await;
    assert_eq!(reg["result"], 0, "{reg}");
    // Three wrong guesses, one of them shorter than any valid password: each counts.
    for (i, guess) in ["bad", "wrongpass1", "wrongpass2"].into_iter().enumerate() {
        assert_eq!(bin.login_device("cam-001", guess).await["result"], 102);
        let (failed, locked) = db.lock_row("cam-001").await;
        if i < 2 {
            assert_eq!((failed, locked), (i as i64 + 1, 0), "after guess {guess}");
        } else {
            assert_eq!(failed, 0, "the count starts again once locked");
            assert!(locked > unix_now(), "locked in the database: {locked}");
        }
    }
    let (_, locked_until) = db.lock_row("cam-001").await;
    // The operator sees the lock and where it applies.
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_register"))
        .arg("--config")
        .arg(&bin.cfg)
        .args(["user", "show", "cam-001"])
        .env("REGISTER_XMPP__COMPONENT_SECRET", &bin.secret)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains(&format!(
            "for these client networks: 127.0.0.1 until {locked_until}"
        )),
        "{text}"
    );
    // The right password is refused while the lock holds, and the refusals do not extend it.
    assert_eq!(
        bin.login_device("cam-001", "secret123").await["result"],
        102
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let reply = loop {
        let v = bin.login_device("cam-001", "secret123").await;
        if v["result"] == 0 {
            break v;
        }
        assert_eq!(v["result"], 102);
        assert!(Instant::now() < deadline, "the lock expires");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        unix_now() >= locked_until,
        "let in only once the lock ended ({locked_until})"
    );
    assert!(reply["access_token"].is_string());
    assert_eq!(
        db.lock_row("cam-001").await,
        (0, 0),
        "a success clears both"
    );
    bin.stop().await;
}

#[tokio::test]
async fn binary_locks_a_phone_after_a_successful_login_and_the_lock_survives_a_restart() {
    let (_prosody, _dir, bin, db) =
        Binary::fresh("[security]\nlockout_threshold = 3\nlockout_secs = 600\n").await;
    let phone = "13800138000";
    let reg = bin
        .human(
            &db,
            "/register",
            &[
                ("user_name", phone),
                ("password", "secret123"),
                ("type", "1"),
            ],
        )
        .await;
    assert_eq!(reg["result"], 0, "{reg}");
    assert_eq!(bin.login_phone(&db, phone, "secret123").await["result"], 0);
    // A stranger asking as a device (no captcha) is refused without moving the phone's counter.
    for _ in 0..5 {
        assert_eq!(bin.login_device(phone, "wrongpass").await["result"], 102);
    }
    assert_eq!(
        db.lock_row(phone).await,
        (0, 0),
        "type=2 attempts count nothing"
    );
    for guess in ["wrongpass1", "wrongpass2", "wrongpass3"] {
        assert_eq!(bin.login_phone(&db, phone, guess).await["result"], 102);
    }
    let (failed, locked) = db.lock_row(phone).await;
    assert_eq!(failed, 0);
    assert!(locked > unix_now() + 500, "locked for 600 s: {locked}");
    assert_eq!(
        bin.login_phone(&db, phone, "secret123").await["result"],
        102
    );
    // The lock is in the database: a restarted service keeps it.
    let bin = bin.restart().await;
    assert_eq!(
        bin.login_phone(&db, phone, "secret123").await["result"],
        102
    );
    assert_eq!(
        db.lock_row(phone).await,
        (0, locked),
        "unchanged by refusals"
    );
    bin.stop().await;
}

#[tokio::test]
async fn binary_captcha_must_match_is_single_use_and_expires() {
    let (_prosody, _dir, bin, db) = Binary::fresh("[captcha]\nttl_secs = 1\n").await;
    let reg = |id: String, answer: String| {
        let bin = &bin;
        async move {
            bin.post(
                "/register",
                &[
                    ("user_name", "13900139000"),
                    ("password", "secret123"),
                    ("type", "1"),
                    ("verify_code_id", &id),
                    ("verify_code", &answer),
                ],
            )
            .await["result"]
                .clone()
        }
    };
    // No captcha at all.
    let v = bin
        .post(
            "/register",
            &[
                ("user_name", "13900139000"),
                ("password", "secret123"),
                ("type", "1"),
            ],
        )
        .await;
    assert_eq!(v["result"], 5);
    // A wrong answer spends the captcha: the right answer after it is refused too.
    let id = bin.captcha().await;
    let answer = db.captcha_answer(&id).await;
    let wrong: String = answer
        .chars()
        .map(|c| if c == 'a' { 'b' } else { 'a' })
        .collect();
    assert_eq!(reg(id.clone(), wrong).await, 5);
    assert_eq!(reg(id, answer).await, 5, "spent by the wrong try");
    // An expired captcha is refused (ttl 1 s: issued at t, dead from t + 1 on the server's clock).
    let id = bin.captcha().await;
    let answer = db.captcha_answer(&id).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(reg(id, answer).await, 5, "expired");
    // A fresh one works once; the same id and answer again are refused.
    let id = bin.captcha().await;
    let answer = db.captcha_answer(&id).await;
    assert_eq!(reg(id.clone(), answer.clone()).await, 0);
    let again = bin
        .post(
            "/login",
            &[
                ("user_name", "13900139000"),
                ("password", "secret123"),
                ("type", "1"),
                ("verify_code_id", &id),
                ("verify_code", &answer),
            ],
        )
        .await;
    assert_eq!(again["result"], 5, "replayed captcha");
    bin.stop().await;
}

#[tokio::test]
async fn binary_refuses_a_token_revoked_by_cancel_over_https_and_tcp() {
    let (_prosody, _dir, bin, _db) = Binary::fresh("").await;
    let creds = [
        ("user_name", "cam-002"),
        ("password", "secret123"),
        ("type", "2"),
    ];
    let mut reg = creds.to_vec();
    reg.extend([("des", ""), ("device_type", "camera")]);
    assert_eq!(bin.post("/register", &reg).await["result"], 0);
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let v = bin.post("/login", &creds).await;
        assert_eq!(v["result"], 0, "{v}");
        tokens.push(v["access_token"].as_str().unwrap().to_owned());
    }
    for t in &tokens {
        // Twice: the first check reads the database, the second is answered from memory.
        for _ in 0..2 {
            let v = bin.tcp_check(t).await;
            assert_eq!(
                (v["result"].clone(), v["validate"].clone()),
                (json!(0), json!(true))
            );
        }
    }
    assert_eq!(bin.post("/cancel", &creds).await["result"], 0);
    for t in &tokens {
        let v = bin.tcp_check(t).await;
        assert_eq!(v["validate"], false, "revoked over TCP: {v}");
        let v = bin
            .post(
                "/get_user_banding",
                &[("access_token", t), ("user_name", "cam-002")],
            )
            .await;
        assert_eq!(v["result"], 4, "revoked over HTTPS: {v}");
    }
    bin.stop().await;
}
