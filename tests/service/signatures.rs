//! Issue 18, point 4, as the attacks on `param_sign` against the real service: a captured signed
//! request sent again, moved to another endpoint or method, and an old app's version 1 signature.

use crate::harness::{post_form, signed, signed_as, signed_v1, Env, Opts, APP_KEY};

const PW: &str = "password1";

fn login_params(name: &str) -> Vec<(&str, &str)> {
    vec![("user_name", name), ("password", PW), ("type", "2")]
}

fn nonce_of(p: &[(String, String)]) -> String {
    p.iter().find(|(k, _)| k == "nonce").unwrap().1.clone()
}

#[tokio::test]
async fn a_replayed_v2_signature_is_refused_and_each_reply_names_its_request() {
    let env = Env::start(Opts::default()).await;
    env.account("replay-cam", 2).await;
    let captured = signed("/login", &login_params("replay-cam"));
    let first = post_form(&env.http, &env.base, "/login", &captured).await;
    assert_eq!(first["result"], 0, "{first}");
    // The reply carries the request's nonce inside what `sign` covers (post_form checked `sign`).
    assert_eq!(first["nonce"], nonce_of(&captured).as_str());
    // The same request again, well within the timestamp window: the nonce is spent.
    let again = post_form(&env.http, &env.base, "/login", &captured).await;
    assert_eq!(again["result"], 6, "{again}");
    assert_eq!(again["nonce"], nonce_of(&captured).as_str());
    // A captured reply cannot stand for another request: a new request's reply names its own
    // nonce, so the old one fails the client's check.
    let fresh = signed("/login", &login_params("replay-cam"));
    let second = post_form(&env.http, &env.base, "/login", &fresh).await;
    assert_eq!(second["result"], 0);
    assert_ne!(second["nonce"], first["nonce"]);
    assert_eq!(second["nonce"], nonce_of(&fresh).as_str());
    // A replay whose nonce was changed no longer matches its signature.
    let mut forged = captured.clone();
    for (k, v) in forged.iter_mut() {
        if k == "nonce" {
            *v = "ffffffffffffffffffffffffffffffff".into();
        }
    }
    let v = post_form(&env.http, &env.base, "/login", &forged).await;
    assert_eq!(v["result"], 6, "{v}");
    // A v2 request without a nonce or a timestamp is refused, even correctly signed.
    for missing in ["nonce", "timestamp"] {
        let mut p: Vec<(String, String)> = login_params("replay-cam")
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        p.push(("sign_v".into(), "2".into()));
        if missing != "nonce" {
            p.push(("nonce".into(), register::auth::crypto::new_nonce()));
        }
        if missing != "timestamp" {
            p.push(("timestamp".into(), env.server().app.now().to_string()));
        }
        let s = register::auth::crypto::param_sign_v2(APP_KEY.as_bytes(), "POST", "/login", &p);
        p.push(("param_sign".into(), s));
        let v = post_form(&env.http, &env.base, "/login", &p).await;
        assert_eq!(v["result"], 6, "without {missing}: {v}");
    }
}

#[tokio::test]
async fn a_v2_signature_moved_to_another_path_or_method_is_refused() {
    let env = Env::start(Opts::default()).await;
    env.account("moved-cam", 2).await;
    // A device's /login signature carries exactly the parameters /cancel needs.
    let login = signed("/login", &login_params("moved-cam"));
    let v = post_form(&env.http, &env.base, "/cancel", &login).await;
    assert_eq!(v["result"], 6, "a /login signature used on /cancel: {v}");
    // The same signature by GET instead of POST.
    let v = env.get("/login", &login).await;
    assert_eq!(v["result"], 6, "a POST signature used by GET: {v}");
    // The account is untouched: the request signed for what it does works.
    let get = signed_as(
        "GET",
        "/login",
        &login_params("moved-cam"),
        APP_KEY.as_bytes(),
    );
    let v = env.get("/login", &get).await;
    assert_eq!(v["result"], 0, "{v}");
    let v = post_form(&env.http, &env.base, "/login", &login).await;
    assert_eq!(v["result"], 0, "{v}");
}

#[tokio::test]
async fn a_v1_signature_is_refused_unless_the_operator_accepts_it() {
    let env = Env::start(Opts::default()).await;
    env.account("old-app-cam", 2).await;
    let now = env.server().app.now().to_string();
    let mut p = login_params("old-app-cam");
    p.push(("timestamp", &now));
    let v = post_form(&env.http, &env.base, "/login", &signed_v1(&p)).await;
    assert_eq!(v["result"], 6, "version 1 by default: {v}");
    // An unknown version is refused too.
    let mut v3 = login_params("old-app-cam");
    v3.push(("sign_v", "3"));
    let v = post_form(&env.http, &env.base, "/login", &signed_v1(&v3)).await;
    assert_eq!(v["result"], 6, "sign_v=3: {v}");
    drop(env);

    let env = Env::start_tuned(Opts::default(), |c| c.security.accept_v1_signatures = true).await;
    env.account("old-app-cam", 2).await;
    let v = post_form(&env.http, &env.base, "/login", &signed_v1(&p)).await;
    assert_eq!(v["result"], 0, "version 1 accepted when configured: {v}");
    // Version 2 keeps its rules beside it: a replay is still refused.
    let v2 = signed("/login", &login_params("old-app-cam"));
    assert_eq!(
        post_form(&env.http, &env.base, "/login", &v2).await["result"],
        0
    );
    assert_eq!(
        post_form(&env.http, &env.base, "/login", &v2).await["result"],
        6
    );
}

/// `security.accept_v1_signatures = true` is warned about at every start of the binary.
#[tokio::test]
async fn accepting_v1_signatures_is_warned_about_at_every_start() {
    use std::time::Duration;
    use xmpp::testkit::{Prosody, ProsodyOptions};

    let prosody = Prosody::start(ProsodyOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (cfg, c) = crate::binary::write_config(&prosody, dir.path(), Opts::default()).await;
    let mut toml = std::fs::read_to_string(&cfg).unwrap();
    toml.push_str("[security]\naccept_v1_signatures = true\n");
    std::fs::write(&cfg, toml).unwrap();
    let warnings = |log: &str| {
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains("accept_v1_signatures = true"))
            .count()
    };
    for start in 1..=2 {
        let log = dir.path().join(format!("register-{start}.log"));
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_register"))
            .arg("--config")
            .arg(&cfg)
            .env("REGISTER_XMPP__COMPONENT_SECRET", &c.xmpp.component_secret)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let ready = format!("http://{}/readyz", c.admin.listen);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) {
            assert!(
                std::time::Instant::now() < deadline,
                "the binary became ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let pid = child.id().unwrap();
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .expect("the binary stops on SIGTERM")
            .unwrap();
        assert_eq!(status.code(), Some(0));
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(warnings(&text), 1, "start {start}:\n{text}");
    }
}
