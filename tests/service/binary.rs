//! The real `register` binary: starts from a config file, serves, stops on SIGTERM; a bad
//! configuration exits with 7.

use std::process::Stdio;
use std::time::Duration;

use crate::harness::{config_for, Opts};
use xmpp::testkit::{Prosody, ProsodyOptions};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn binary_starts_serves_and_stops() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let c = config_for(&prosody, dir.path().join("data"), Opts::default());
    let (hp, ap) = (free_port(), free_port());
    let toml = format!(
        "data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:{hp}\"\n[tcp]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:{ap}\"\n\
         [xmpp]\ndomain = {:?}\ncomponent = {:?}\ncomponent_addr = {:?}\nc2s_addr = {:?}\nc2s_tls = \"off\"\nallow_plain_without_tls = true\n",
        c.data_dir, c.xmpp.domain, c.xmpp.component, c.xmpp.component_addr, c.xmpp.c2s_addr
    );
    let cfg = dir.path().join("register.toml");
    std::fs::write(&cfg, toml).unwrap();
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
