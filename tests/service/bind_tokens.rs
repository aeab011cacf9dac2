//! Issue 17: binding only with the device in hand. Each test is an attack the bind tokens stop
//! (or a flow they must keep working), driven through the HTTPS API of the real service on a real
//! Prosody, and each outcome is checked independently by logging in to Prosody as the JIDs
//! concerned. Run in both binding modes here, and on PostgreSQL with `REGISTER_TEST_BACKEND`.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;

use register::store::{AccountState, NewAccount, PairCaps, Store, StoreError};
use register::types::AccountType;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::harness::{assert_signed, signed, variants, Env, Opts, ProsodyExt};

/// An account of the test: its type, access token, JID and JID password.
#[derive(Clone)]
struct Who {
    kind: u8,
    token: String,
    jid: String,
    pwd: String,
}

struct T {
    env: Env,
    who: HashMap<String, Who>,
}

impl T {
    async fn start(o: Opts, tune: impl FnOnce(&mut register::service::config::Config)) -> T {
        T {
            env: Env::start_tuned(o, tune).await,
            who: HashMap::new(),
        }
    }

    async fn add(&mut self, name: &str, kind: u8) {
        let (token, jid, pwd) = self.env.account(name, kind).await;
        let w = Who {
            kind,
            token,
            jid,
            pwd,
        };
        self.who.insert(name.into(), w);
    }

    fn w(&self, name: &str) -> &Who {
        &self.who[name]
    }

    /// A call as `who` (`access_token`, `user_name`, signed when a device) with `extra`.
    async fn call(&self, path: &str, who: &str, extra: &[(&str, &str)]) -> Value {
        let w = self.w(who);
        let mut p = vec![("access_token", w.token.as_str()), ("user_name", who)];
        p.extend_from_slice(extra);
        if w.kind == 2 {
            let s = signed(path, &p);
            let s: Vec<(&str, &str)> = s.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            self.env.post(path, &s).await
        } else {
            self.env.post(path, &p).await
        }
    }

    /// A bind token issued by `who` (with `extra`, e.g. `device` or `format`).
    async fn token(&self, who: &str, extra: &[(&str, &str)]) -> String {
        let v = self.call("/get_bind_token", who, extra).await;
        assert_eq!(v["result"], 0, "get_bind_token as {who}: {v}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let exp = v["expires_at"].as_i64().unwrap();
        assert!(exp > now && exp <= now + 601, "{v}");
        v["bind_token"].as_str().unwrap().to_owned()
    }

    async fn bind(&self, who: &str, token: &str) -> Value {
        self.call("/set_user_banding", who, &[("bind_token", token)])
            .await
    }

    /// `who`'s roster entry for `peer` as Prosody holds it (an independent login as `who`).
    async fn sub(&self, who: &str, peer: &str) -> Option<String> {
        let (w, p) = (self.w(who), self.w(peer));
        self.env
            .prosody
            .roster(&w.jid, &w.pwd)
            .await
            .into_iter()
            .find(|e| e.jid == p.jid)
            .map(|e| e.subscription)
    }

    /// Both sides of a pair see `both`.
    async fn assert_bound(&self, a: &str, b: &str) {
        assert_eq!(self.sub(a, b).await.as_deref(), Some("both"), "{a} → {b}");
        assert_eq!(self.sub(b, a).await.as_deref(), Some("both"), "{b} → {a}");
    }

    /// Neither side has the other in its roster.
    async fn assert_apart(&self, a: &str, b: &str) {
        assert_eq!(self.sub(a, b).await, None, "{a} still lists {b}");
        assert_eq!(self.sub(b, a).await, None, "{b} still lists {a}");
    }

    async fn users(&self, who: &str, names: &[&str]) -> Vec<Value> {
        let v = self
            .call(
                "/get_users",
                who,
                &[("user_name_ls", &json!(names).to_string())],
            )
            .await;
        assert_eq!(v["result"], 0, "{v}");
        v["user_info_ls"].as_array().unwrap().clone()
    }
}

fn names(infos: &[Value]) -> Vec<&str> {
    infos
        .iter()
        .map(|i| i["user_name"].as_str().unwrap())
        .collect()
}

/// The attacks of the issue and the flows that must work, in one service.
async fn pairing(o: Opts) {
    let mut t = T::start(o, |_| {}).await;
    for (n, k) in [
        ("phone-a", 1),
        ("cam-001", 2),
        ("stranger", 1),
        ("phone-b", 1),
        ("cam-002", 2),
        ("cam-003", 2),
    ] {
        t.add(n, k).await;
    }

    // A stranger binding a device by name: refused, and the device's roster stays without it.
    let v = t
        .call(
            "/set_user_banding",
            "stranger",
            &[("user_name_ls", r#"["cam-001"]"#)],
        )
        .await;
    assert_eq!(v["result"], 100, "{v}");
    assert_eq!(t.sub("cam-001", "stranger").await, None);
    assert_eq!(t.sub("stranger", "cam-001").await, None);
    // A device binding itself to a phone without that phone's token: refused.
    let v = t
        .call(
            "/set_user_banding",
            "cam-001",
            &[("user_name_ls", r#"["phone-a"]"#)],
        )
        .await;
    assert_eq!(v["result"], 100, "{v}");
    assert_eq!(t.sub("phone-a", "cam-001").await, None);
    // A made-up token, of either form: 111. An 8-digit one must name its issuer (else 2): a guess
    // is then against one account's codes, not all of the service's.
    assert_eq!(t.bind("stranger", "12345678").await["result"], 2);
    let v = t
        .call(
            "/set_user_banding",
            "stranger",
            &[
                ("bind_token", "12345678"),
                ("user_name_ls", r#"["cam-001"]"#),
            ],
        )
        .await;
    assert_eq!(v["result"], 111, "{v}");
    assert_eq!(
        t.bind("stranger", "AAAAAAAAAAAAAAAAAAAAAAAA").await["result"],
        111
    );

    // The phone issues, the device redeems (the camera scanned the phone's QR code).
    let tok = t.token("phone-a", &[]).await;
    assert_eq!(tok.len(), 24);
    // Its issuer cannot redeem it for itself.
    assert_eq!(t.bind("phone-a", &tok).await["result"], 111);
    let v = t.bind("cam-001", &tok).await;
    assert_eq!(v["result"], 0, "{v}");
    t.assert_bound("phone-a", "cam-001").await;
    // Redeemed twice: 111, and the second device is not bound.
    assert_eq!(t.bind("cam-002", &tok).await["result"], 111);
    t.assert_apart("phone-a", "cam-002").await;

    // The device issues, the phone redeems (the phone scanned the device's screen), naming it.
    let tok = t.token("cam-002", &[("format", "digits")]).await;
    assert!(tok.len() == 8 && tok.bytes().all(|c| c.is_ascii_digit()));
    // A token of another pair: the phone names cam-003, the token is cam-002's.
    let v = t
        .call(
            "/set_user_banding",
            "phone-a",
            &[("bind_token", &tok), ("user_name_ls", r#"["cam-003"]"#)],
        )
        .await;
    assert_eq!(v["result"], 111, "{v}");
    t.assert_apart("phone-a", "cam-003").await;
    let v = t
        .call(
            "/set_user_banding",
            "phone-a",
            &[("bind_token", &tok), ("user_name_ls", r#"["cam-002"]"#)],
        )
        .await;
    assert_eq!(v["result"], 0, "{v}");
    t.assert_bound("phone-a", "cam-002").await;

    // Two redemptions of one token at once: one binds, the other gets 111.
    let tok = t.token("cam-003", &[]).await;
    let (a, b) = tokio::join!(t.bind("phone-a", &tok), t.bind("phone-b", &tok));
    let mut codes = [a["result"].as_i64().unwrap(), b["result"].as_i64().unwrap()];
    codes.sort();
    assert_eq!(codes, [0, 111], "{a} {b}");
    let (winner, loser) = if a["result"] == 0 {
        ("phone-a", "phone-b")
    } else {
        ("phone-b", "phone-a")
    };
    t.assert_bound(winner, "cam-003").await;
    t.assert_apart(loser, "cam-003").await;
    // Undo it, from the device's side, so that what follows starts from a known state.
    let v = t
        .call(
            "/set_user_unbanding",
            "cam-003",
            &[("user_name_ls", &json!([winner]).to_string())],
        )
        .await;
    assert_eq!(v["result"], 0, "{v}");
    t.assert_apart(winner, "cam-003").await;

    // Sharing: only a phone bound to the device may issue a token for it…
    let v = t
        .call("/get_bind_token", "stranger", &[("device", "cam-001")])
        .await;
    assert_eq!(v["result"], 100, "{v}");
    // A missing device answers the same, so the reply does not tell which names exist.
    let v = t
        .call("/get_bind_token", "stranger", &[("device", "cam-missing")])
        .await;
    assert_eq!(v["result"], 100, "{v}");
    // …and the phone that redeems it is bound to the device.
    let tok = t.token("phone-a", &[("device", "cam-001")]).await;
    let v = t.bind("phone-b", &tok).await;
    assert_eq!(v["result"], 0, "{v}");
    t.assert_bound("phone-b", "cam-001").await;
    // A sharing token does not bind its redeemer to the sharing phone.
    assert_eq!(t.sub("phone-b", "phone-a").await, None);

    // Lookups: a stranger's view of cam-001 is that of a missing name.
    let seen = t.users("stranger", &["cam-001", "ghost", "stranger"]).await;
    assert_eq!(names(&seen), ["stranger"]);
    assert!(seen[0]["jid_pwd"].is_string(), "own jid_pwd");
    // A phone sees itself and its devices, not other phones or unbound devices.
    let seen = t
        .users(
            "phone-a",
            &["cam-001", "cam-002", "cam-003", "phone-b", "phone-a"],
        )
        .await;
    assert_eq!(names(&seen), ["cam-001", "cam-002", "phone-a"]);
    assert!(seen[0].get("jid_pwd").is_none() && seen[1].get("jid_pwd").is_none());
    // get_user_banding answers for the caller only.
    let p = [
        ("access_token", t.w("stranger").token.as_str()),
        ("user_name", "phone-a"),
    ];
    assert_eq!(t.env.post("/get_user_banding", &p).await["result"], 100);

    // A stranger unbinding a pair: 100 (as one side, with its own token), 110 (as itself: it has
    // no pair with the device), and the pair stays.
    let p = [
        ("access_token", t.w("stranger").token.as_str()),
        ("user_name", "phone-a"),
        ("user_name_ls", r#"["cam-001"]"#),
    ];
    assert_eq!(t.env.post("/set_user_unbanding", &p).await["result"], 100);
    let v = t
        .call(
            "/set_user_unbanding",
            "stranger",
            &[("user_name_ls", r#"["cam-001"]"#)],
        )
        .await;
    assert_eq!(v["result"], 110, "{v}");
    let v = t
        .call("/set_user_unbanding", "stranger", &[("all", "1")])
        .await;
    assert_eq!(v["result"], 0, "nothing of its own to unbind: {v}");
    t.assert_bound("phone-a", "cam-001").await;
    t.assert_bound("phone-b", "cam-001").await;

    // The phone's side unbinds one pair.
    let v = t
        .call(
            "/set_user_unbanding",
            "phone-a",
            &[("user_name_ls", r#"["cam-002"]"#)],
        )
        .await;
    assert_eq!(v["result"], 0, "{v}");
    t.assert_apart("phone-a", "cam-002").await;

    // A device after a factory reset: all=1 empties its roster and its phones' entries for it,
    // and voids the codes it showed before the reset (and the sharing tokens for it).
    let shown = t.token("cam-001", &[]).await;
    let shared = t.token("phone-a", &[("device", "cam-001")]).await;
    let v = t
        .call("/set_user_unbanding", "cam-001", &[("all", "1")])
        .await;
    assert_eq!(v["result"], 0, "{v}");
    assert_eq!(
        t.bind("phone-b", &shown).await["result"],
        111,
        "void after the reset"
    );
    assert_eq!(
        t.bind("stranger", &shared).await["result"],
        111,
        "void after the reset"
    );
    let w = t.w("cam-001");
    assert!(t.env.prosody.roster(&w.jid, &w.pwd).await.is_empty());
    t.assert_apart("phone-a", "cam-001").await;
    t.assert_apart("phone-b", "cam-001").await;
    // And get_users no longer shows the phone its former device.
    assert_eq!(
        names(&t.users("phone-a", &["cam-001"]).await),
        Vec::<&str>::new()
    );
}

variants! {
    pairing_needs_the_device_in_hand_c2s => pairing(Opts::default());
    pairing_needs_the_device_in_hand_privileged => pairing(Opts::PRIVILEGED);
}

/// A token past its TTL (1 second here) gives 111 and binds nothing.
#[tokio::test]
async fn an_expired_bind_token_binds_nothing() {
    let mut t = T::start(Opts::default(), |c| c.binding.token_ttl_secs = 1).await;
    t.add("ttl-p", 1).await;
    t.add("ttl-d", 2).await;
    let v = t.call("/get_bind_token", "ttl-p", &[]).await;
    assert_eq!(v["result"], 0, "{v}");
    let tok = v["bind_token"].as_str().unwrap().to_owned();
    // Past expires_at by more than the clock's resolution.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(t.bind("ttl-d", &tok).await["result"], 111);
    t.assert_apart("ttl-p", "ttl-d").await;
}

/// The caps hold: a device with its phones, a phone with its devices, each refused with 100 and a
/// reason, and nothing half-bound.
async fn caps(o: Opts) {
    let mut t = T::start(o, |c| {
        c.binding.max_phones_per_device = 2;
        c.binding.max_devices_per_phone = 2;
    })
    .await;
    for (n, k) in [
        ("cap-p1", 1),
        ("cap-p2", 1),
        ("cap-p3", 3),
        ("cap-d1", 2),
        ("cap-d2", 2),
        ("cap-d3", 2),
    ] {
        t.add(n, k).await;
    }
    for (p, d) in [
        ("cap-p1", "cap-d1"),
        ("cap-p1", "cap-d2"),
        ("cap-p2", "cap-d1"),
    ] {
        let tok = t.token(d, &[]).await;
        assert_eq!(t.bind(p, &tok).await["result"], 0, "{p} {d}");
    }
    // cap-d1 has two phones: a third (a WeChat account, by a shared token) is refused.
    let tok = t.token("cap-p1", &[("device", "cap-d1")]).await;
    let v = t.bind("cap-p3", &tok).await;
    assert_eq!(v["result"], 100, "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("max_phones_per_device"),
        "{v}"
    );
    t.assert_apart("cap-p3", "cap-d1").await;
    // cap-p1 has two devices: a third is refused, from either side.
    let tok = t.token("cap-p1", &[]).await;
    let v = t.bind("cap-d3", &tok).await;
    assert_eq!(v["result"], 100, "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("max_devices_per_phone"),
        "{v}"
    );
    let tok = t.token("cap-d3", &[]).await;
    assert_eq!(t.bind("cap-p1", &tok).await["result"], 100);
    t.assert_apart("cap-p1", "cap-d3").await;
    // The refused token was not spent: under the cap it binds.
    assert_eq!(t.bind("cap-p2", &tok).await["result"], 0);
    t.assert_bound("cap-p2", "cap-d3").await;
}

variants! {
    caps_hold_c2s => caps(Opts::default());
    caps_hold_privileged => caps(Opts::PRIVILEGED);
}

/// `binding.consent = "none"`: the seed's open bind by name, for old clients (the caps still hold,
/// also for several peers in one request).
#[tokio::test]
async fn consent_none_keeps_the_open_bind() {
    let mut t = T::start(Opts::default(), |c| {
        c.binding.consent = "none".into();
        c.binding.max_phones_per_device = 2;
    })
    .await;
    t.add("open-p", 1).await;
    t.add("open-d", 2).await;
    t.add("open-p2", 1).await;
    t.add("open-p3", 3).await;
    // A device naming three phones at once, over its cap of two: refused, nothing bound.
    let v = t
        .call(
            "/set_user_banding",
            "open-d",
            &[("user_name_ls", r#"["open-p","open-p2","open-p3"]"#)],
        )
        .await;
    assert_eq!(v["result"], 100, "{v}");
    assert!(v["reason"]
        .as_str()
        .unwrap()
        .contains("max_phones_per_device"));
    t.assert_apart("open-p", "open-d").await;
    t.assert_apart("open-p3", "open-d").await;
    let v = t
        .call(
            "/set_user_banding",
            "open-p",
            &[("user_name_ls", r#"["open-d"]"#)],
        )
        .await;
    assert_eq!(v["result"], 0, "{v}");
    t.assert_bound("open-p", "open-d").await;
}

/// The binary with `binding.consent = "none"` logs a warning when it starts.
#[tokio::test]
async fn consent_none_warns_at_start() {
    let prosody = xmpp::testkit::Prosody::start(xmpp::testkit::ProsodyOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (cfg, c) = crate::binary::write_config(&prosody, dir.path(), Opts::default()).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_register"))
        .arg("--config")
        .arg(&cfg)
        .env("REGISTER_XMPP__COMPONENT_SECRET", &c.xmpp.component_secret)
        .env("REGISTER_BINDING__CONSENT", "none")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The log (stderr) until the line saying the service is up.
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let read = async {
        let mut seen = Vec::new();
        while let Some(line) = err.next_line().await.unwrap() {
            let done = line.contains("register started");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    };
    let seen = tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .expect("the service starts");
    child.kill().await.unwrap();
    assert!(
        seen.iter()
            .any(|l| l.contains("WARN") && l.contains("binding.consent")),
        "{seen:#?}"
    );
}

/// Over TCP (backends on the allow-list) lookups stay full, but never carry `jid_pwd`.
#[tokio::test]
async fn tcp_get_users_never_carries_jid_pwd() {
    let mut t = T::start(Opts::default(), |_| {}).await;
    t.add("tcpl-p", 1).await;
    t.add("tcpl-d", 2).await;
    let mut c = BufReader::new(TcpStream::connect(t.env.server().addrs.tcp).await.unwrap());
    let body = json!({"access_token": t.w("tcpl-p").token, "user_name_ls": ["tcpl-p", "tcpl-d"]});
    c.get_mut()
        .write_all(format!("/get_users {body}\n").as_bytes())
        .await
        .unwrap();
    let mut line = String::new();
    c.read_line(&mut line).await.unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_signed(&v);
    assert_eq!(v["result"], 0, "{v}");
    assert_eq!(
        names(v["user_info_ls"].as_array().unwrap()),
        ["tcpl-p", "tcpl-d"]
    );
    assert!(!line.contains("jid_pwd"), "{line}");
    // Over HTTPS the same caller sees its own jid_pwd, and not the unbound device.
    let seen = t.users("tcpl-p", &["tcpl-p", "tcpl-d"]).await;
    assert_eq!(names(&seen), ["tcpl-p"]);
    assert_eq!(seen[0]["jid_pwd"], t.w("tcpl-p").pwd.as_str());
}

// ---------------------------------------------------------------------------------------------
// The bind-token store methods on their own, the same sequence on SQLite and on PostgreSQL.

async fn bind_token_store(s: Arc<dyn Store>) {
    let new = |name: &str| NewAccount {
        user_name: name.into(),
        kind: AccountType::Phone,
        device_type: None,
        des: String::new(),
        password_hash: "x".into(),
        jid_node: format!("n-{name}"),
        jid_pwd: vec![1],
    };
    let p = s.insert_pending_account(new("bt-p"), 10).await.unwrap();
    let q = s.insert_pending_account(new("bt-q"), 10).await.unwrap();
    let h = |i: u8| vec![i; 32];
    // Four tokens of p, at most three kept: the oldest is voided, the others live.
    for i in 1..=4 {
        s.insert_bind_token(h(i), p, None, 100, 10 + i as i64, 3)
            .await
            .unwrap();
    }
    assert_eq!(s.bind_token(h(1), 50).await.unwrap(), None, "voided");
    let live = s.bind_token(h(2), 50).await.unwrap().unwrap();
    assert_eq!((live.issuer, live.device, live.expires_at), (p, None, 100));
    // A hash taken is refused (the caller draws another token).
    assert!(matches!(
        s.insert_bind_token(h(2), q, Some(p), 100, 20, 3).await,
        Err(StoreError::Exists)
    ));
    // q's sharing token does not void p's.
    s.insert_bind_token(h(9), q, Some(p), 100, 20, 3)
        .await
        .unwrap();
    assert_eq!(
        s.bind_token(h(9), 50).await.unwrap().unwrap().device,
        Some(p)
    );
    assert!(s.bind_token(h(2), 50).await.unwrap().is_some());
    // Expired at expires_at.
    assert!(s.bind_token(h(3), 99).await.unwrap().is_some());
    assert_eq!(s.bind_token(h(3), 100).await.unwrap(), None);
    assert_eq!(s.take_bind_token(h(3), 100).await.unwrap(), None);
    // Taken once, however many try at the same moment.
    let takes = futures::future::join_all((0..8).map(|_| s.take_bind_token(h(4), 50))).await;
    let won = takes
        .into_iter()
        .filter(|t| t.as_ref().unwrap().is_some())
        .count();
    assert_eq!(won, 1);
    assert_eq!(s.bind_token(h(4), 50).await.unwrap(), None, "used");
    // Failed redemptions: counted per account, over the window.
    assert_eq!(s.bind_failures(q, 0).await.unwrap(), 0);
    for (i, now) in [100, 101, 102].into_iter().enumerate() {
        assert_eq!(
            s.record_bind_failure(q, now, now - 600).await.unwrap(),
            i as u32 + 1
        );
    }
    assert_eq!(s.bind_failures(q, 101).await.unwrap(), 2);
    assert_eq!(s.bind_failures(p, 0).await.unwrap(), 0);
    assert_eq!(
        s.record_bind_failure(q, 800, 200).await.unwrap(),
        1,
        "the old ones dropped"
    );
    // Expired tokens are pruned; an account's tokens go with it.
    s.prune(100).await.unwrap();
    assert_eq!(s.bind_token(h(2), 0).await.unwrap(), None);
    s.insert_bind_token(h(5), p, None, 1000, 20, 3)
        .await
        .unwrap();
    s.delete_account(p).await.unwrap();
    assert_eq!(s.bind_token(h(5), 50).await.unwrap(), None);

    // Capped pair inserts: of six phones binding one device with room for two at once, two get
    // in; a phone at its cap of one device gets no second one.
    let d = s.insert_pending_account(new("cap-d"), 10).await.unwrap();
    let mut phones = Vec::new();
    for i in 0..6 {
        phones.push(
            s.insert_pending_account(new(&format!("cap-p{i}")), 10)
                .await
                .unwrap(),
        );
    }
    for id in phones.iter().chain([&d]) {
        s.set_account_state(*id, AccountState::Active, 11)
            .await
            .unwrap();
    }
    let caps = |phone: i64| PairCaps {
        device: d,
        max_phones: 2,
        phone,
        max_devices: 1,
    };
    let tries = futures::future::join_all(
        phones
            .iter()
            .map(|&ph| s.insert_binding_capped(d.min(ph), d.max(ph), 12, caps(ph))),
    )
    .await;
    let ok = tries.iter().filter(|t| *t.as_ref().unwrap()).count();
    assert_eq!(ok, 2, "{tries:?}");
    assert_eq!(s.bindings_of(d).await.unwrap().len(), 2);
    let mut bound = None;
    for &ph in &phones {
        if !s.bindings_of(ph).await.unwrap().is_empty() {
            bound = Some(ph);
        }
    }
    let bound = bound.unwrap();
    let d2 = s.insert_pending_account(new("cap-d2"), 10).await.unwrap();
    s.set_account_state(d2, AccountState::Active, 11)
        .await
        .unwrap();
    let c2 = PairCaps {
        device: d2,
        max_phones: 8,
        phone: bound,
        max_devices: 1,
    };
    assert!(!s
        .insert_binding_capped(d2.min(bound), d2.max(bound), 12, c2)
        .await
        .unwrap());
    assert!(s.bindings_of(d2).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_token_store_on_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let lite = register::store::sqlite::SqliteStore::open(&dir.path().join("db")).unwrap();
    bind_token_store(Arc::new(lite)).await;
    match std::env::var("REGISTER_TEST_PG_URL") {
        Ok(base) if !base.is_empty() => {
            let db = crate::postgres::TestDb::create(&base).await;
            let pg = register::store::postgres::PgStore::connect(&db.url, 8)
                .await
                .unwrap();
            bind_token_store(Arc::new(pg)).await;
        }
        _ => eprintln!(
            "bind_token_store_on_sqlite_and_postgres: PostgreSQL half skipped \
             (REGISTER_TEST_PG_URL is not set; see scripts/pg-test.sh)"
        ),
    }
}
