//! `register token revoke` when the hand-off to the running instance fails: the command writes
//! to the database itself, and the running binary, which holds the tokens in its cache, stops
//! accepting them before the command reports them revoked (docs/OPERATIONS.md).

use xmpp::testkit::{Prosody, ProsodyOptions};

use crate::harness::{
    binary_config, free_port, post_form, ready_binary, signed, sigterm_exits_0, tcp_verify_signed,
    trusting, APP_KEY, SIGN_KEY,
};

/// A token check over the running binary's TCP API: true for a valid token, false for 4.
async fn tcp_valid(tcp: std::net::SocketAddr, token: &str) -> bool {
    let v = tcp_verify_signed(tcp, token).await;
    match v["result"].as_i64() {
        Some(0) => true,
        Some(4) => false,
        other => panic!("unexpected {other:?}: {v}"),
    }
}

#[tokio::test]
async fn a_revoke_the_running_binary_never_hears_of_is_still_enforced_before_the_cli_says_so() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let keys = format!("[security]\napp_keys = [{APP_KEY:?}]\nsign_key = {SIGN_KEY:?}\n");
    let (cfg, c) = binary_config(&prosody, dir.path(), &keys).await;
    let secret = &c.xmpp.component_secret;
    let log = dir.path().join("register.log");
    let mut child = ready_binary(&cfg, secret, c.admin.listen, &log).await;

    let http = trusting(&c.data_dir).build().unwrap();
    let base = format!("https://localhost:{}", c.http.listen.port());
    let who = [("user_name", "leak-bin"), ("password", "password1")];
    let mut reg = who.to_vec();
    reg.extend([("type", "2"), ("device_type", "camera")]);
    let v = post_form(&http, &base, "/register", &signed("/register", &reg)).await;
    assert_eq!(v["result"], 0, "{v}");
    let mut login = who.to_vec();
    login.push(("type", "2"));
    let v = post_form(&http, &base, "/login", &signed("/login", &login)).await;
    let token = v["access_token"].as_str().expect("a token").to_owned();
    // Checked twice: the second answer comes from the instance's token cache.
    for _ in 0..2 {
        assert!(tcp_valid(c.tcp.listen, &token).await);
    }

    // The hand-off fails as it does when the CLI cannot reach the instance's admin listener (run
    // in another network namespace or container that shares the data directory): the file names
    // an address where nothing listens.
    let handoff = c.data_dir.join("admin-handoff");
    let text = std::fs::read_to_string(&handoff).unwrap();
    let (_, token_line) = text.split_once('\n').unwrap();
    let unreachable = format!("127.0.0.1:{}\n{token_line}", free_port());
    std::fs::write(&handoff, unreachable).unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_register"))
        .arg("--config")
        .arg(&cfg)
        .args(["token", "revoke", "leak-bin"])
        .env("REGISTER_XMPP__COMPONENT_SECRET", secret)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("revoked 1 tokens of leak-bin"), "{said}");
    assert!(
        said.contains("no running instance took the hand-off"),
        "{said}"
    );
    // Once the command has said so, the running binary refuses the token, over TCP and HTTPS.
    assert!(!tcp_valid(c.tcp.listen, &token).await, "revoked over TCP");
    let check = [
        ("access_token", token.as_str()),
        ("user_name_ls", "[\"leak-bin\"]"),
    ];
    let v = post_form(&http, &base, "/get_users", &signed("/get_users", &check)).await;
    assert_eq!(v["result"], 4, "revoked over HTTPS: {v}");
    sigterm_exits_0(&mut child).await;
}
