//! The service against ejabberd 23.01 (issue 9): register a phone and a device, bind them (c2s
//! binding), check both rosters independently, cancel the device, check the phone's roster and
//! that the device's JID is gone. Also: privileged binding on ejabberd 23.01 is refused at once
//! with a clear reason rather than half-binding. (Prosody runs the same paths in `bindings`.)

use register::service::server::Server;
use serde_json::Value;
use xmpp::testkit::{Ejabberd, EjabberdOptions, TestClient, TestServer};

use crate::harness::{
    bound_item, items_both_ways, roster_item_on, signed, start_https, test_config, Opts, CAPTCHA,
};

struct Svc {
    server: Server,
    http: reqwest::Client,
    base: String,
    _data: tempfile::TempDir,
}

impl Svc {
    async fn start(xmpp: &dyn TestServer, o: Opts) -> Svc {
        let data = tempfile::tempdir().unwrap();
        let mut cfg = test_config(xmpp, data.path().join("data"), o).await;
        // These tests bind by name: the open bind of old clients (bind tokens: bind_tokens.rs).
        cfg.binding.consent = "none".into();
        let (server, http, base) = start_https(cfg).await;
        Svc {
            server,
            http,
            base,
            _data: data,
        }
    }

    async fn post(&self, path: &str, params: &[(&str, &str)]) -> Value {
        crate::harness::post_form(&self.http, &self.base, path, params).await
    }

    async fn post_signed(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let p = signed(path, params);
        let p: Vec<(&str, &str)> = p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        self.post(path, &p).await
    }

    async fn captcha(&self) {
        let r = crate::harness::fetch(&self.http, &self.base, "/verify_code").await;
        assert_eq!(r.status(), 200);
    }

    /// Registers and logs in a phone (captcha) or a device (signed); (token, jid, jid_pwd).
    async fn account(&self, name: &str, kind: u8) -> (String, String, String) {
        let t = kind.to_string();
        let mut p = vec![
            ("user_name", name),
            ("password", "password1"),
            ("type", t.as_str()),
        ];
        if kind == 2 {
            p.extend([("des", "a device"), ("device_type", "cam")]);
            let v = self.post_signed("/register", &p).await;
            assert_eq!(v["result"], 0, "register {name}: {v}");
        } else {
            self.captcha().await;
            p.push(("verify_code", CAPTCHA));
            let v = self.post("/register", &p).await;
            assert_eq!(v["result"], 0, "register {name}: {v}");
        }
        let mut l = vec![
            ("user_name", name),
            ("password", "password1"),
            ("type", t.as_str()),
        ];
        if kind != 2 {
            self.captcha().await;
            l.push(("verify_code", CAPTCHA));
        }
        let v = self.post_signed("/login", &l).await;
        assert_eq!(v["result"], 0, "login {name}: {v}");
        (
            v["access_token"].as_str().unwrap().to_owned(),
            v["user_info"]["jid"].as_str().unwrap().to_owned(),
            v["user_info"]["jid_pwd"].as_str().unwrap().to_owned(),
        )
    }

    async fn bind(&self, token: &str, who: &str, peers: &str) -> Value {
        self.post(
            "/set_user_banding",
            &[
                ("access_token", token),
                ("user_name", who),
                ("user_name_ls", peers),
            ],
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_register_bind_cancel_c2s() {
    let ej = Ejabberd::start(EjabberdOptions::default());
    let svc = Svc::start(&ej, Opts::default()).await;
    let (tok_p, jid_p, pwd_p) = svc.account("phone-ej", 1).await;
    let (_, jid_d, pwd_d) = svc.account("dev-ej", 2).await;

    let v = svc.bind(&tok_p, "phone-ej", r#"["dev-ej"]"#).await;
    assert_eq!(v["result"], 0, "{v}");
    assert_eq!(
        items_both_ways(&ej, (&jid_p, &pwd_p), (&jid_d, &pwd_d)).await,
        [
            bound_item("dev-ej", "Device"),
            bound_item("phone-ej", "Phone")
        ]
    );
    assert_eq!(
        svc.bind(&tok_p, "phone-ej", r#"["dev-ej"]"#).await["result"],
        109
    );

    let v = svc
        .post_signed(
            "/cancel",
            &[
                ("user_name", "dev-ej"),
                ("password", "password1"),
                ("type", "2"),
            ],
        )
        .await;
    assert_eq!(v["result"], 0, "{v}");
    assert!(
        roster_item_on(&ej, &jid_p, &pwd_p, &jid_d).await.is_none(),
        "cancel removed the binding from the peer"
    );
    let node = jid_d.split('@').next().unwrap();
    assert!(
        TestClient::login(&ej, node, &pwd_d).await.is_err(),
        "cancelled JID still logs in on ejabberd"
    );
    drop(svc.server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_privileged_binding_is_refused_cleanly() {
    let ej = Ejabberd::start(EjabberdOptions::default());
    let svc = Svc::start(&ej, Opts::PRIVILEGED).await;
    let (tok_p, jid_p, pwd_p) = svc.account("phone-pr", 1).await;
    let (_, jid_d, _) = svc.account("dev-pr", 2).await;
    let started = std::time::Instant::now();
    let v = svc.bind(&tok_p, "phone-pr", r#"["dev-pr"]"#).await;
    // The binding mode is unsupported there: no roster can be set, documented as 107.
    assert_eq!(
        (v["result"].clone(), v["failed_ls"].clone()),
        (serde_json::json!(107), serde_json::json!(["dev-pr"])),
        "{v}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // Nothing half-bound.
    assert!(roster_item_on(&ej, &jid_p, &pwd_p, &jid_d).await.is_none());
    let why = svc.server.app.xmpp.probe().await;
    assert!(
        matches!(&why, Err(xmpp::XmppError::Unsupported(m)) if m.contains("c2s")),
        "{why:?}"
    );
}

/// `/renew_jid_pwd` on ejabberd, component mode (XEP-0133 change-user-password) and ibr mode
/// (XEP-0077 over c2s): the old `jid_pwd` fails an independent login, the new one succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_renew_jid_pwd_retires_the_old_password() {
    for ibr in [false, true] {
        let ej = Ejabberd::start(EjabberdOptions::default());
        let svc = Svc::start(
            &ej,
            Opts {
                ibr,
                ..Opts::default()
            },
        )
        .await;
        let (tok, jid, old) = svc.account("renew-ej", 2).await;
        let v = svc
            .post_signed(
                "/renew_jid_pwd",
                &[("user_name", "renew-ej"), ("access_token", &tok)],
            )
            .await;
        assert_eq!(v["result"], 0, "ibr {ibr}: {v}");
        let new = v["jid_pwd"].as_str().unwrap();
        let node = jid.split('@').next().unwrap();
        assert!(
            TestClient::login(&ej, node, &old).await.is_err(),
            "ibr {ibr}: the old jid_pwd still logs in on ejabberd"
        );
        TestClient::login(&ej, node, new)
            .await
            .unwrap_or_else(|e| panic!("ibr {ibr}: the new jid_pwd does not log in: {e}"))
            .close()
            .await;
        drop(svc.server);
    }
}

/// `/renew_jid_pwd` on ejabberd (component mode): a session opened with the old `jid_pwd` is
/// ended (XEP-0133 end-user-session, which ejabberd admits from the component; unlike Prosody,
/// ejabberd 23.01 does not end sessions itself when a password changes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_renew_jid_pwd_ends_the_old_sessions() {
    let ej = Ejabberd::start(EjabberdOptions::default());
    let svc = Svc::start(&ej, Opts::default()).await;
    let (tok, jid, old) = svc.account("kick-ej", 2).await;
    let mut leaked = TestClient::login(&ej, jid.split('@').next().unwrap(), &old)
        .await
        .expect("a session with the old password");
    let renewal = [("user_name", "kick-ej"), ("access_token", tok.as_str())];
    let v = svc.post_signed("/renew_jid_pwd", &renewal).await;
    assert_eq!(v["result"], 0, "{v}");
    let how = leaked.ended_by_server().await;
    assert!(
        how.is_ok(),
        "the old password's session survived on ejabberd: {how:?}"
    );
    drop(svc.server);
}
