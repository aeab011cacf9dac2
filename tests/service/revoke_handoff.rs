//! `register token revoke` when the hand-off to the running instance fails: the command writes
//! to the database itself, and the running binary, which holds the tokens in its cache, stops
//! accepting them before the command reports them revoked (docs/OPERATIONS.md).

use xmpp::testkit::{Prosody, ProsodyOptions};

use crate::harness::{
    binary_config, free_port, post_form, ready_binary, run_cli, signed, sigterm_exits_0,
    tcp_verify_signed, trusting, APP_KEY, SIGN_KEY,
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

/// The running binary (its token cache on), with `leak-bin` registered and logged in: the
/// binary's configuration file and config, its component secret, an HTTPS client and base URL,
/// the token (valid over TCP, the second time from the cache), and the child.
struct Running {
    cfg: std::path::PathBuf,
    c: register::service::config::Config,
    http: reqwest::Client,
    base: String,
    token: String,
    child: tokio::process::Child,
}

async fn running_with_a_token(prosody: &Prosody, dir: &std::path::Path) -> Running {
    let keys = format!("[security]\napp_keys = [{APP_KEY:?}]\nsign_key = {SIGN_KEY:?}\n");
    let (cfg, c) = binary_config(prosody, dir, &keys).await;
    let log = dir.join("register.log");
    let child = ready_binary(&cfg, &c.xmpp.component_secret, c.admin.listen, &log).await;

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
    Running {
        cfg,
        c,
        http,
        base,
        token,
        child,
    }
}

/// After the revoke: the running binary refuses the token over TCP and HTTPS.
async fn refused_everywhere(r: &Running) {
    assert!(
        !tcp_valid(r.c.tcp.listen, &r.token).await,
        "revoked over TCP"
    );
    let check = [
        ("access_token", r.token.as_str()),
        ("user_name_ls", "[\"leak-bin\"]"),
    ];
    let v = post_form(
        &r.http,
        &r.base,
        "/get_users",
        &signed("/get_users", &check),
    )
    .await;
    assert_eq!(v["result"], 4, "revoked over HTTPS: {v}");
}

#[tokio::test]
async fn a_revoke_the_running_binary_never_hears_of_is_still_enforced_before_the_cli_says_so() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let mut r = running_with_a_token(&prosody, dir.path()).await;
    let (cfg, c) = (&r.cfg, &r.c);
    let secret = &c.xmpp.component_secret;

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
        .arg(cfg)
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
    refused_everywhere(&r).await;
    sigterm_exits_0(&mut r.child).await;
}

/// Prosody's count of component connections accepted so far (one log line each, at info).
fn component_connections(prosody: &Prosody) -> usize {
    prosody
        .log()
        .matches("Incoming Jabber component connection")
        .count()
}

/// With the running instance's hand-off moved aside, `register token revoke` revokes from the
/// database alone: it never opens a component connection of its own, which would take the
/// service's component name (refused with `conflict` while the instance holds it; held by the
/// CLI for a moment on a server that admits several, or while the instance restarts). Neither do
/// `register user list` and `user show`, which read only the database. Proven on Prosody's own
/// count of component connections, which stays at the instance's one, with the instance ready
/// throughout.
#[tokio::test]
async fn a_revoke_without_the_hand_off_never_opens_a_component_connection() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let mut r = running_with_a_token(&prosody, dir.path()).await;
    let secret = r.c.xmpp.component_secret.clone();
    let before = component_connections(&prosody);
    assert!(
        before >= 1,
        "the instance's link is counted:\n{}",
        prosody.log()
    );

    let handoff = r.c.data_dir.join("admin-handoff");
    std::fs::rename(&handoff, r.c.data_dir.join("admin-handoff.aside")).unwrap();
    let (code, out, err) = run_cli(&r.cfg, &secret, &["token", "revoke", "leak-bin"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("revoked 1 tokens of leak-bin"), "{out}");
    assert!(
        out.contains("no running instance took the hand-off"),
        "{out}"
    );
    refused_everywhere(&r).await;
    let (code, out, err) = run_cli(&r.cfg, &secret, &["user", "list"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let jid = format!("@{}", r.c.xmpp.domain);
    assert!(out.contains("leak-bin") && out.contains(&jid), "{out}");
    let (code, out, err) = run_cli(&r.cfg, &secret, &["user", "show", "leak-bin"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("user_name:   leak-bin"), "{out}");
    // The audit trail has the CLI's revoke, as it had when the CLI built the whole service.
    let (code, out, err) = run_cli(&r.cfg, &secret, &["audit", "--user", "leak-bin"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.contains("admin.token.revoke") && l.contains("1 tokens revoked")),
        "{out}"
    );

    let log = prosody.log();
    assert_eq!(
        component_connections(&prosody),
        before,
        "the CLI opened a component connection:\n{log}"
    );
    assert!(
        !log.contains("Second component attempted to connect"),
        "{log}"
    );
    let ready = reqwest::get(format!("http://{}/readyz", r.c.admin.listen))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "the instance's link stays up");
    sigterm_exits_0(&mut r.child).await;
}
