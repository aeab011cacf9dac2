//! Operations: the admin CLI against a real Prosody, metrics content, and graceful shutdown.

use crate::binary::write_config;
use crate::harness::{run_cli, Env, Opts};
use xmpp::testkit::{Prosody, ProsodyOptions};

/// Run `register --config CFG ARGS…` with the component secret in the environment.
fn cli(cfg: &std::path::Path, secret: &str, args: &[&str]) -> (i32, String) {
    let (code, out, log) = run_cli(cfg, secret, args, &[("REGISTER_XMPP__TIMEOUT_MS", "3000")]);
    (code, out + &log)
}

// Multi-threaded: the service runs in this process and must answer the CLI's admin requests
// while the test thread waits for the CLI process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (cfg, c) = write_config(&prosody, dir.path(), Opts::default()).await;

    let (code, out) = cli(&cfg, &prosody.secret, &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("database: ok") && out.contains("xmpp: ok"),
        "{out}"
    );

    let (code, out) = cli(&cfg, "wrong-secret", &["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("xmpp: FAILED") && out.contains("not-authorized"),
        "{out}"
    );

    // Accounts made through the service are listed, shown and deleted by the CLI.
    // The same data directory and database as the CLI's configuration file.
    let mut cfg_env = c.clone();
    cfg_env.tcp.listen = "127.0.0.1:0".parse().unwrap();
    cfg_env.admin.listen = "127.0.0.1:0".parse().unwrap();
    cfg_env.http.listen = "127.0.0.1:0".parse().unwrap();
    let env = Env::start_with(prosody, dir, cfg_env).await;
    let (_, jid, pwd) = env.account("cli-dev", 2).await;
    let (code, out) = cli(&cfg, &env.prosody.secret, &["user", "list"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cli-dev") && out.contains(&jid), "{out}");
    let (code, out) = cli(&cfg, &env.prosody.secret, &["user", "show", "cli-dev"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("device_type: cam") && out.contains("state:       active"),
        "{out}"
    );
    assert!(!out.contains(&pwd), "show never prints jid_pwd");
    let (code, out) = cli(&cfg, &env.prosody.secret, &["user", "show", "nobody"]);
    assert_eq!(code, 1, "{out}");
    // While the service runs it holds the component name (a second link would be refused), so
    // check and delete run through the running instance's admin listener and its link.
    let (code, out) = cli(&cfg, &env.prosody.secret, &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("database: ok")
            && out.contains("xmpp: ok")
            && out.contains("through the running instance"),
        "{out}"
    );
    let (code, out) = cli(&cfg, &env.prosody.secret, &["user", "delete", "cli-dev"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("through the running instance"), "{out}");
    use crate::harness::ProsodyExt;
    assert!(
        !env.prosody.can_login(&jid, &pwd).await,
        "the CLI deleted the JID"
    );
    let (code, out) = cli(&cfg, &env.prosody.secret, &["user", "show", "cli-dev"]);
    assert_eq!(code, 1, "the account row is gone too: {out}");
    let (code, out) = cli(&cfg, &env.prosody.secret, &["reconcile"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("found 0 unfinished records") && out.contains("through the running instance"),
        "{out}"
    );
    // A hand-off file with a wrong token is not trusted: the CLI opens its own link, which the
    // server refuses while the service holds the name.
    let handoff = c.data_dir.join("admin-handoff");
    let text = std::fs::read_to_string(&handoff).unwrap();
    let addr = text.lines().next().unwrap().to_owned();
    std::fs::write(&handoff, format!("{addr}\nnot-the-token\n")).unwrap();
    let (code, out) = cli(&cfg, &env.prosody.secret, &["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("conflict"), "{out}");
    let mut env = env;
    env.server.take().unwrap().stop().await.unwrap();
    let (code, out) = cli(&cfg, &env.prosody.secret, &["reconcile"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("found 0 unfinished records"), "{out}");
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let env = Env::start(Opts::default()).await;
    env.account("m-dev", 2).await;
    assert_eq!(env.login("m-dev", "wrong-pass", 2).await["result"], 102);
    let m = env.metrics_text().await;
    for needle in [
        "register_requests_total{endpoint=\"/register\",result=\"0\"} 1",
        "register_requests_total{endpoint=\"/login\",result=\"102\"} 1",
        "register_xmpp_operations_total{op=\"create_account\",ok=\"true\"} 1",
        "register_logins_failed_total 1",
        "register_xmpp_link_up 1",
        "register_xmpp_link_connects_total 1",
    ] {
        assert!(m.contains(needle), "missing {needle} in\n{m}");
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let mut env = Env::start(Opts::default()).await;
    let params = crate::harness::signed(
        "/register",
        &[
            ("user_name", "late-dev"),
            ("password", "password1"),
            ("type", "2"),
            ("device_type", "cam"),
        ],
    );
    env.captcha().await; // a kept-alive connection, so the request below goes out at once
    let (http, url) = (env.http.clone(), format!("{}/register", env.base));
    let in_flight = tokio::spawn(async move { http.post(url).form(&params).send().await });
    // Stop once the request is inside the service: its `pending` row is written after hashing,
    // before the JID is made (waited for, not guessed with a sleep).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let state = loop {
        if let Some(a) = env
            .server()
            .app
            .store
            .account_by_name("late-dev")
            .await
            .unwrap()
        {
            break a.state;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the request never reached the service"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    };
    println!("graceful_shutdown_finishes_in_flight_requests: stopped with the account {state:?}");
    let server = env.server.take().unwrap();
    let stopping = tokio::spawn(server.stop());
    let r = in_flight
        .await
        .unwrap()
        .expect("in-flight request answered");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["result"], 0, "{v}");
    stopping.await.unwrap().unwrap();
    // After shutdown nothing listens any more.
    assert!(env
        .http
        .get(format!("{}/verify_code", env.base))
        .send()
        .await
        .is_err());
}

/// The twin of `admin_cli` on the scripted Openfire (`xmpp::testkit::Openfire`), which refuses a
/// second component connection for the connected name at the stream header as Openfire does:
/// `register check` and `register user delete` succeed while the service runs, through its
/// admin listener and link; with a hand-off the CLI cannot trust, its own link is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_on_scripted_openfire_while_the_service_runs() {
    use xmpp::testkit::{Openfire, OpenfireOptions, TestServer};
    let of = Openfire::start(OpenfireOptions::default());
    let secret = of.secret().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let (cfg, c) = write_config(&of, dir.path(), Opts::default()).await;

    // No service yet: the CLI attaches its own link.
    let (code, out) = cli(&cfg, &secret, &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("xmpp: ok") && !out.contains("running instance"),
        "{out}"
    );

    let mut run = c.clone();
    run.tcp.listen = "127.0.0.1:0".parse().unwrap();
    run.admin.listen = "127.0.0.1:0".parse().unwrap();
    run.http.listen = "127.0.0.1:0".parse().unwrap();
    let server = register::service::server::Server::start(run)
        .await
        .expect("service starts");
    let mut link = server.app.xmpp.link_watch();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        link.wait_for(|s| *s == xmpp::LinkState::Up),
    )
    .await
    .expect("link up")
    .unwrap();
    // A device registers through the service: its JID is made on the scripted Openfire.
    let cert = std::fs::read(server.app.cfg.data_dir.join("cert.pem")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", server.addrs.http.port());
    let p = crate::harness::signed(
        "/register",
        &[
            ("user_name", "of-dev"),
            ("password", "password1"),
            ("type", "2"),
            ("des", "a device"),
            ("device_type", "cam"),
        ],
    );
    let v = crate::harness::post_form(&http, &base, "/register", &p).await;
    assert_eq!(v["result"], 0, "{v}");
    let jid_node = server
        .app
        .store
        .account_by_name("of-dev")
        .await
        .unwrap()
        .expect("account row")
        .jid_node;
    assert!(of.has_user(&jid_node), "the JID exists on the server");

    let (code, out) = cli(&cfg, &secret, &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("xmpp: ok") && out.contains("through the running instance"),
        "{out}"
    );
    let (code, out) = cli(&cfg, &secret, &["user", "delete", "of-dev"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("through the running instance"), "{out}");
    assert!(!of.has_user(&jid_node), "the CLI deleted the JID");
    assert_eq!(of.open_sessions(), 0);

    // Without a trusted hand-off the CLI opens its own link: Openfire refuses it at the header.
    let handoff = c.data_dir.join("admin-handoff");
    let text = std::fs::read_to_string(&handoff).unwrap();
    let addr = text.lines().next().unwrap().to_owned();
    std::fs::write(&handoff, format!("{addr}\nnot-the-token\n")).unwrap();
    let (code, out) = cli(&cfg, &secret, &["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("refused at the stream header"), "{out}");
    assert!(of.with(|s| s.refused_at_header) >= 1);
    server.stop().await.unwrap();
}

/// The commands that need only the database set nothing up: on SQLite with a `data_dir` that does
/// not exist, `user list`, `user show` and `token revoke` exit 1 naming it, and neither the
/// directory nor a secret is created (they used to build the whole service, secrets included).
#[test]
fn database_only_commands_on_a_missing_data_dir_set_nothing_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("register.toml");
    std::fs::write(&cfg, format!("data_dir = {data:?}\n")).unwrap();
    for args in [
        &["user", "list"][..],
        &["user", "show", "nobody"],
        &["token", "revoke", "nobody"],
    ] {
        let (code, out, err) = run_cli(&cfg, "a-component-secret", args, &[]);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        let named = err.contains("does not exist") && err.contains(&data.display().to_string());
        assert!(named, "{args:?}: {err}");
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
}
