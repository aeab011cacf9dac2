//! The real `register` binary: starts from a config file, serves, stops on SIGTERM; a bad
//! configuration exits with 7.

use std::process::Stdio;
use std::time::Duration;

use crate::harness::{config_for, Opts};
use register::config::Config;
use xmpp::testkit::{Prosody, ProsodyOptions};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Write a `register.toml` for the binary (the component secret is left to the environment, as
/// an operator would pass it); returns its path and the configuration it describes.
pub fn write_config(
    prosody: &Prosody,
    dir: &std::path::Path,
    o: Opts,
) -> (std::path::PathBuf, Config) {
    let mut c = config_for(prosody, dir.join("data"), o);
    c.http.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    c.tcp.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    c.admin.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let toml = format!(
        "data_dir = {:?}\n[http]\nlisten = \"{}\"\n[tcp]\nlisten = \"{}\"\n[admin]\nlisten = \"{}\"\n\
         [xmpp]\ndomain = {:?}\ncomponent = {:?}\ncomponent_addr = {:?}\nc2s_addr = {:?}\nc2s_tls = \"off\"\n\
         allow_plain_without_tls = true\naccounts = {:?}\nbinding = {:?}\n",
        c.data_dir, c.http.listen, c.tcp.listen, c.admin.listen, c.xmpp.domain, c.xmpp.component,
        c.xmpp.component_addr, c.xmpp.c2s_addr, c.xmpp.accounts, c.xmpp.binding
    );
    let path = dir.join("register.toml");
    std::fs::write(&path, toml).unwrap();
    (path, c)
}

#[tokio::test]
async fn binary_starts_serves_and_stops() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (cfg, c) = write_config(&prosody, dir.path(), Opts::default());
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
    // Secrets were generated owner-only.
    for f in ["sign_key", "app_key", "encryption_key"] {
        assert!(dir.path().join("data").join(f).exists(), "{f}");
    }
    let pid = child.id().unwrap() as i32;
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn bad_config_exits_7() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("register.toml");
    std::fs::write(&cfg, "[xmpp]\naccounts = \"magic\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_register"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stderr).contains("xmpp.accounts"));
}
