//! The audit trail after a scripted session against the real service and Prosody: `register
//! audit --user NAME` (the real binary) lists the events in order, and the database holds no
//! secret of the session.

use xmpp::testkit::{Prosody, ProsodyOptions};

use crate::binary::write_config;
use crate::harness::{run_cli, signed, stored_bytes, Env, Opts};

/// `register --config CFG ARGS…`: exit status and stdout (stderr, the log, goes to the test's).
fn cli(cfg: &std::path::Path, secret: &str, args: &[&str]) -> (i32, String) {
    let (code, out, log) = run_cli(cfg, secret, args, &[]);
    eprint!("{log}");
    (code, out)
}

// Multi-threaded: the service runs in this process and answers the CLI's admin request while the
// test thread waits for the CLI process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lists_a_session_in_order_and_holds_no_secret() {
    let prosody = Prosody::start(ProsodyOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (cfg, c) = write_config(&prosody, dir.path(), Opts::default()).await;
    let env = Env::start_with(prosody, dir, c.clone()).await;

    let (cam_token, _, cam_pwd) = env.account("aud-cam", 2).await;
    let (ph_token, _, ph_pwd) = env.account("aud-ph", 1).await;
    // Failed logins up to the lock-out (security.lockout_threshold = 5), then one refused by it.
    let wrong: Vec<String> = (0..6).map(|i| format!("wrong-guess-{i}")).collect();
    for w in &wrong {
        assert_eq!(env.login("aud-ph", w, 1).await["result"], 102);
    }
    // The device issues a bind token; the phone redeems it, then unbinds.
    let p = signed(
        "/get_bind_token",
        &[
            ("access_token", cam_token.as_str()),
            ("user_name", "aud-cam"),
        ],
    );
    let p: Vec<(&str, &str)> = p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let v = env.post("/get_bind_token", &p).await;
    assert_eq!(v["result"], 0, "{v}");
    let bind_token = v["bind_token"].as_str().unwrap().to_owned();
    let ph = [("access_token", ph_token.as_str()), ("user_name", "aud-ph")];
    let mut bind = ph.to_vec();
    bind.push(("bind_token", &bind_token));
    assert_eq!(env.post("/set_user_banding", &bind).await["result"], 0);
    let mut unbind = ph.to_vec();
    unbind.push(("user_name_ls", r#"["aud-cam"]"#));
    assert_eq!(env.post("/set_user_unbanding", &unbind).await["result"], 0);
    // The admin deletes the phone (through the running instance).
    let (code, out) = cli(&cfg, &env.prosody.secret, &["user", "delete", "aud-ph"]);
    assert_eq!(code, 0, "{out}");

    let (code, out) = cli(&cfg, &env.prosody.secret, &["audit", "--user", "aud-ph"]);
    assert_eq!(code, 0, "{out}");
    // time, actor, action, subject, network, result, detail…
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let events: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r[1], r[2], r[5])).collect();
    let mut expected = vec![("aud-ph", "register", "0"), ("aud-ph", "login", "0")];
    expected.extend([("aud-ph", "login", "102"); 5]);
    expected.extend([
        ("aud-ph", "lockout", "102"),
        ("aud-ph", "login", "102"),
        ("aud-ph", "bind", "0"),
        ("aud-ph", "unbind", "0"),
        ("admin", "admin.user.delete", "0"),
    ]);
    assert_eq!(events, expected, "{out}");
    assert!(rows[9].join(" ").contains("bind token redeemed"), "{out}");
    assert_eq!(rows[10][3], "aud-cam", "unbind names its peer: {out}");
    assert_eq!(rows[11][3], "aud-ph", "the admin's subject: {out}");
    assert!(rows[0][4].contains("127.0.0.1"), "client network: {out}");
    // Only events since a minute ago, and another user's own events.
    let (_, recent) = cli(&cfg, &env.prosody.secret, &["audit", "--since", "1m"]);
    assert!(
        recent.contains("bind_token.issue") && recent.contains("aud-cam"),
        "{recent}"
    );

    let (bytes, _) = stored_bytes(&c, Some("audit")).await;
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(has("admin.user.delete"), "the scan sees the audit records");
    for secret in [
        "password1",
        &cam_token,
        &ph_token,
        &cam_pwd,
        &ph_pwd,
        &bind_token,
    ]
    .into_iter()
    .chain(wrong.iter().map(String::as_str))
    {
        assert!(!has(secret), "a secret in the database: {secret}");
    }
}

/// The audit store's contract on PostgreSQL (SQLite's is a unit test in `src/store/audit.rs`):
/// order of writing, the user filter (actor or a name in the subject, not a prefix), `since`,
/// and the prune.
#[tokio::test]
async fn audit_store_on_postgres_lists_filters_and_prunes() {
    use register::store::audit::{AuditQuery, AuditRecord, AuditStore};
    let Some(base) = crate::harness::pg_url("audit_store_on_postgres_lists_filters_and_prunes")
    else {
        return;
    };
    let db = crate::postgres::TestDb::create(&base).await;
    let s = register::store::postgres::PgStore::connect(&db.url, 2)
        .await
        .unwrap();
    let rec = |at: i64, actor: &str, action: &str, subject: &str| AuditRecord {
        at,
        actor: actor.into(),
        action: action.into(),
        subject: subject.into(),
        network: "::1".into(),
        result: 0,
        detail: String::new(),
    };
    for r in [
        rec(10, "ann", "register", ""),
        rec(20, "bob", "bind", "ann,cid"),
        rec(30, "admin", "admin.user.delete", "bob"),
        rec(30, "anna", "login", ""),
    ] {
        s.audit_append(r).await.unwrap();
    }
    let q = |user: Option<&str>, since| AuditQuery {
        user: user.map(str::to_owned),
        since,
        limit: 100,
    };
    let ann: Vec<String> = s
        .audit_list(q(Some("ann"), 0))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(ann, ["register", "bind"]);
    assert_eq!(s.audit_list(q(Some("bob"), 0)).await.unwrap().len(), 2);
    assert_eq!(s.audit_list(q(None, 20)).await.unwrap().len(), 3);
    assert_eq!(s.audit_prune(30).await.unwrap(), 2);
    assert_eq!(s.audit_list(q(None, 0)).await.unwrap()[0].actor, "admin");
    drop(s);
}
