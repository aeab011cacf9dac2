//! The real `register` binary: starts from a config file, serves, generates its secrets owner-only,
//! stops on SIGTERM; reads every secret from `<key>_file` and logs JSON without secrets; a bad
//! configuration exits with 7.

use std::process::Stdio;
use std::time::Duration;

use crate::harness::{assert_signed_with, database_toml, test_config, Opts, ProsodyExt};
use register::service::config::Config;
use serde_json::Value;
use xmpp::testkit::{Prosody, ProsodyOptions};

use crate::harness::free_port;

/// Write a `register.toml` for the binary (the component secret is left to the environment, as
/// an operator would pass it); returns its path and the configuration it describes.
pub async fn write_config(
    server: &dyn xmpp::testkit::TestServer,
    dir: &std::path::Path,
    o: Opts,
) -> (std::path::PathBuf, Config) {
    let mut c = test_config(server, dir.join("data"), o).await;
    c.http.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    c.tcp.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    c.admin.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let toml = format!(
        "data_dir = {:?}\n[http]\nlisten = \"{}\"\n[tcp]\nlisten = \"{}\"\n[admin]\nlisten = \"{}\"\n\
         [xmpp]\ndomain = {:?}\ncomponent = {:?}\ncomponent_addr = {:?}\nc2s_addr = {:?}\nc2s_tls = \"off\"\n\
         allow_plain_without_tls = true\naccounts = {:?}\nbinding = {:?}\n{}",
        c.data_dir, c.http.listen, c.tcp.listen, c.admin.listen, c.xmpp.domain, c.xmpp.component,
        c.xmpp.component_addr, c.xmpp.c2s_addr, c.xmpp.accounts, c.xmpp.binding,
        database_toml(&c)
    );
    let path = dir.join("register.toml");
    std::fs::write(&path, toml).unwrap();
    (path, c)
}

#[tokio::test]
async fn binary_starts_serves_and_stops() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (cfg, c) = write_config(&prosody, dir.path(), Opts::default()).await;
    let (hp, ap) = (c.http.listen.port(), c.admin.listen.port());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_register"))
        .arg("--config")
        .arg(&cfg)
        .env("REGISTER_XMPP__COMPONENT_SECRET", &c.xmpp.component_secret)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let admin = format!("http://127.0.0.1:{ap}/readyz");
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(&admin).await {
            if r.status() == 200 {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "binary became ready");
    // The generated self-signed certificate serves the captcha.
    let cert = std::fs::read(dir.path().join("data/cert.pem")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .build()
        .unwrap();
    let r = http
        .get(format!("https://localhost:{hp}/verify_code"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Secrets were generated owner-only: every file 0600 (the TLS key with them), the data
    // directory 0700.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: std::path::PathBuf| {
        std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let data = dir.path().join("data");
    assert_eq!(mode(data.clone()), 0o700, "data directory");
    for f in ["sign_key", "app_key", "encryption_key", "key.pem"] {
        assert_eq!(mode(data.join(f)), 0o600, "{f}");
    }
    crate::harness::sigterm_exits_0(&mut child).await;
}

/// Runs the binary with the configuration file `cfg` until it exits.
fn run_to_exit(cfg: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_register"))
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap()
}

#[tokio::test]
async fn bad_config_exits_7() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("register.toml");
    std::fs::write(&cfg, "[xmpp]\naccounts = \"magic\"\n").unwrap();
    let out = run_to_exit(&cfg);
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stderr).contains("xmpp.accounts"));
}

/// Every secret given as `<key>_file` (the component secret, the signing key, two app keys, the
/// encryption key, and on PostgreSQL the database URL), `log.format = "json"`: the binary uses
/// the files (nothing is generated; replies are signed with the file's key; a device signs with
/// the second app key; the sealed `jid_pwd` opens and logs in), every log line is a JSON object,
/// and no secret, password or token appears anywhere in the log, at debug level.
#[tokio::test]
async fn binary_reads_every_secret_from_files_and_logs_json_without_secrets() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let c = test_config(&prosody, dir.path().join("data"), Opts::default()).await;
    let (hp, tp, ap) = (free_port(), free_port(), free_port());
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let put = |name: &str, text: &str| {
        let p = secrets.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let sign_key = "file-sign-key-7d1c";
    let app_keys = ["file-app-key-one-4a2", "file-app-key-two-9b3"];
    let enc_key = "8f".repeat(32);
    let mut toml = format!(
        "data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:{hp}\"\n[tcp]\nlisten = \"127.0.0.1:{tp}\"\n\
         [admin]\nlisten = \"127.0.0.1:{ap}\"\n\
         [xmpp]\ndomain = {:?}\ncomponent = {:?}\ncomponent_addr = {:?}\nc2s_addr = {:?}\n\
         c2s_tls = \"off\"\nallow_plain_without_tls = true\ncomponent_secret_file = {:?}\n\
         [security]\nsign_key_file = {:?}\napp_keys_file = {:?}\nencryption_key_file = {:?}\n\
         [log]\nformat = \"json\"\nlevel = \"register=debug,xmpp=debug,http_api=debug,tcp_api=debug,info\"\n",
        c.data_dir,
        c.xmpp.domain,
        c.xmpp.component,
        c.xmpp.component_addr,
        c.xmpp.c2s_addr,
        put("component_secret", &format!("{}\n", prosody.secret)),
        put("sign_key", &format!("{sign_key}\n")),
        put("app_keys", &format!("{}\n{}\n", app_keys[0], app_keys[1])),
        put("encryption_key", &enc_key),
    );
    if c.database.is_postgres() {
        toml += &format!(
            "[database]\nurl_file = {:?}\n",
            put("database_url", &c.database.url)
        );
    }
    let cfg = dir.path().join("register.toml");
    std::fs::write(&cfg, toml).unwrap();
    let log = dir.path().join("register.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_register"))
        .arg("--config")
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ready = format!("http://127.0.0.1:{ap}/readyz");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !matches!(reqwest::get(&ready).await, Ok(r) if r.status() == 200) {
        assert!(
            std::time::Instant::now() < deadline,
            "not ready:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(child.try_wait().unwrap().is_none(), "the binary exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for f in ["sign_key", "app_key", "encryption_key"] {
        assert!(
            !c.data_dir.join(f).exists(),
            "{f} was generated although configured by file"
        );
    }
    let cert = std::fs::read(c.data_dir.join("cert.pem")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .build()
        .unwrap();
    let post = |path: &'static str, params: Vec<(String, String)>| {
        let http = &http;
        async move {
            let base = format!("https://localhost:{hp}");
            let v = crate::harness::post_unchecked(http, &base, path, &params).await;
            assert_signed_with(&v, sign_key.as_bytes());
            v
        }
    };
    let sign = |path: &str, p: &[(&str, &str)]| {
        crate::harness::signed_as("POST", path, p, app_keys[1].as_bytes())
    };
    let password = "device-password-5e8f";
    let v = post(
        "/register",
        sign(
            "/register",
            &[
                ("user_name", "file-dev"),
                ("password", password),
                ("type", "2"),
                ("device_type", "cam"),
            ],
        ),
    )
    .await;
    assert_eq!(v["result"], 0, "{v}");
    let v = post(
        "/login",
        sign(
            "/login",
            &[
                ("user_name", "file-dev"),
                ("password", password),
                ("type", "2"),
            ],
        ),
    )
    .await;
    assert_eq!(v["result"], 0, "{v}");
    let token = v["access_token"].as_str().unwrap().to_owned();
    let jid = v["user_info"]["jid"].as_str().unwrap().to_owned();
    let jid_pwd = v["user_info"]["jid_pwd"].as_str().unwrap().to_owned();
    assert!(prosody.can_login(&jid, &jid_pwd).await);
    // A refused login and a refused token are logged (at info): their secrets are not.
    let wrong = "wrong-password-c4d2";
    let v = post(
        "/login",
        sign(
            "/login",
            &[
                ("user_name", "file-dev"),
                ("password", wrong),
                ("type", "2"),
            ],
        ),
    )
    .await;
    assert_eq!(v["result"], 102);
    let v = post(
        "/get_users",
        vec![
            ("access_token".into(), format!("{token}00")),
            ("user_name_ls".into(), r#"["file-dev"]"#.into()),
        ],
    )
    .await;
    assert_eq!(v["result"], 4);
    crate::harness::sigterm_exits_0(&mut child).await;

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "a log was written:\n{text}");
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v.is_object(), "{l}");
    }
    assert!(text.contains("register started"), "{text}");
    let mut never = vec![
        sign_key.to_owned(),
        app_keys[0].to_owned(),
        app_keys[1].to_owned(),
        enc_key.clone(),
        prosody.secret.clone(),
        password.to_owned(),
        wrong.to_owned(),
        token.clone(),
        jid_pwd.clone(),
    ];
    if let Some((_, pass)) = c.database.url.split_once(':').and_then(|(_, rest)| {
        rest.trim_start_matches("//")
            .split_once('@')
            .and_then(|(user, _)| user.split_once(':'))
    }) {
        never.push(pass.to_owned());
    }
    for s in &never {
        assert!(
            !text.contains(s.as_str()),
            "the log holds a secret ({s}):\n{text}"
        );
    }
    println!(
        "binary_reads_every_secret_from_files_and_logs_json_without_secrets: {} JSON log lines, \
         none holding any of {} secrets",
        lines.len(),
        never.len()
    );
}

/// A configuration that could never register anyone is refused at start (exit 7), with one line
/// naming the keys, instead of starting, answering ready and failing every `/register` with 101.
#[tokio::test]
async fn ibr_without_tls_or_plain_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("register.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[xmpp]\naccounts = \"ibr\"\nc2s_tls = \"off\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let out = run_to_exit(&cfg);
    assert_eq!(out.status.code(), Some(7));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("xmpp.accounts") && err.contains("xmpp.c2s_tls"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "refused before anything was set up"
    );
}
