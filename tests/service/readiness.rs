//! `binding = "privileged"` against a server that granted no roster permission: found at
//! link-up, and `/readyz` answers 503 saying why (while a server that grants it is ready).

use std::time::{Duration, Instant};

use serde_json::Value;
use xmpp::testkit::{Prosody, ProsodyOptions};

use crate::harness::{test_config, Env, Opts};

/// `/readyz` once the link-up check has decided (the body names `binding`), or once ready.
async fn readyz_decided(env: &Env) -> (u16, Value) {
    let url = format!("http://{}/readyz", env.server().addrs.admin);
    // Bounded so that a check that never decides fails the test instead of hanging it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = reqwest::get(&url).await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        if body.get("binding").is_some() || status == 200 {
            return (status, body);
        }
        assert!(Instant::now() < deadline, "never decided: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn privileged_binding_without_the_grant_is_not_ready_and_says_why() {
    let prosody = Prosody::start(ProsodyOptions {
        privileged: false,
        ..Default::default()
    });
    let data = tempfile::tempdir().unwrap();
    let o = Opts {
        privileged: true,
        ..Opts::default()
    };
    let cfg = test_config(&prosody, data.path().join("data"), o).await;
    let env = Env::start_with(prosody, data, cfg).await;
    let (status, body) = readyz_decided(&env).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["xmpp_link"], true, "the link itself is up: {body}");
    assert_eq!(body["ready"], false);
    let why = body["binding"].as_str().unwrap();
    assert!(
        why.contains("roster permission 'both'") && why.contains("xmpp.binding"),
        "{why}"
    );
    assert_eq!(
        env.server().app.xmpp.binding_problem().as_deref(),
        Some(why)
    );
}

#[tokio::test]
async fn privileged_binding_with_the_grant_is_ready() {
    let env = Env::start(Opts {
        privileged: true,
        ..Opts::default()
    })
    .await;
    // The link-up check runs beside the link: ready once it found nothing against the mode.
    let url = format!("http://{}/readyz", env.server().addrs.admin);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = reqwest::get(&url).await.unwrap();
        let body: Value = r.json().await.unwrap();
        assert!(body.get("binding").is_none(), "{body}");
        if body["ready"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(env.server().app.xmpp.binding_problem(), None);
}
