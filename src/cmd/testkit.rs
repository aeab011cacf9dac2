//! The commands' test kit: one constructor for an [`App`] on a temporary SQLite store (behind the
//! token cache, as the service runs it), a [`ManualClock`] and the in-memory XMPP server
//! ([`FakeXmpp`], behind the same metering as the real client), with the small helpers every
//! command test needs: calls signed or with a captcha answered, accounts with a JID and a token,
//! result codes. No XMPP server and no network are needed.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::app::{App, Call};
use crate::auth::crypto;
use crate::auth::passwords::Hasher;
use crate::auth::ratelimit::RateLimiter;
use crate::clock::ManualClock;
use crate::cmd::reply::Reply;
use crate::error::ApiError;
use crate::lifecycle::account;
use crate::lifecycle::fake_port::FakeXmpp;
use crate::lifecycle::port::Metered;
use crate::service::config::Config;
use crate::service::metrics::Metrics;
use crate::service::secrets::Secrets;
use crate::store::{Account, NewAccount};
use crate::types::{AccountType, UserName};

/// The key devices sign their requests with in the kit.
pub const APP_KEY: &[u8] = b"kit-app-key-for-param-sign";
/// Where the manual clock starts.
pub const START: i64 = 1_700_000_000;
/// The password of every account [`Kit::account`] makes.
pub const PASSWORD: &str = "password1";

pub struct Kit {
    pub app: App,
    pub clock: ManualClock,
    pub xmpp: Arc<FakeXmpp>,
    _dir: tempfile::TempDir,
}

impl Kit {
    /// The default configuration.
    pub async fn new() -> Kit {
        Kit::with(|_| {}).await
    }

    /// The default configuration, changed by `tune` first.
    pub async fn with(tune: impl FnOnce(&mut Config)) -> Kit {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cfg = Config {
            data_dir: dir.path().join("data"),
            ..Default::default()
        };
        cfg.xmpp.domain = "kit.test".into();
        tune(&mut cfg);
        std::fs::create_dir_all(&cfg.data_dir).expect("data_dir");
        let stores = crate::service::server::open_stores(&cfg)
            .await
            .expect("a SQLite store");
        let clock = ManualClock::new(START);
        let xmpp = Arc::new(FakeXmpp::new(&cfg.xmpp.domain));
        let metrics = Arc::new(Metrics::default());
        let app = App {
            hasher: Hasher::bounded(cfg.security.hash_concurrency, cfg.security.hash_queue),
            limiter: RateLimiter::new(&cfg.security, Arc::new(clock.clone())),
            store: stores.store,
            nonces: stores.nonces,
            jid_pwds: stores.jid_pwds,
            audit: crate::service::audit::Audit(stores.audit),
            xmpp: Arc::new(Metered::new(xmpp.clone(), metrics.clone())),
            secrets: Secrets {
                sign_key: crypto::ReplyKey::new(b"kit-sign-key"),
                app_keys: vec![APP_KEY.to_vec()],
                encryption_key: [7; 32],
                generated: vec![],
            },
            clock: Arc::new(clock.clone()),
            metrics,
            cfg,
        };
        Kit {
            app,
            clock,
            xmpp,
            _dir: dir,
        }
    }

    /// A kit with one account, as [`account`](Self::account) makes it, and its token.
    pub async fn with_account(name: &str, kind: AccountType) -> (Kit, Account, String) {
        let k = Kit::new().await;
        let (a, token) = k.account(name, kind).await;
        (k, a, token)
    }

    /// A kit with [`phone_and_device`](Self::phone_and_device).
    pub async fn with_phone_and_device() -> (Kit, (Account, String), (Account, String)) {
        let k = Kit::new().await;
        let (p, d) = k.phone_and_device().await;
        (k, p, d)
    }

    /// A kit with a [`bound_pair`](Self::bound_pair).
    pub async fn with_bound_pair() -> (Kit, (Account, String), (Account, String)) {
        let k = Kit::new().await;
        let (p, d) = k.bound_pair().await;
        (k, p, d)
    }

    /// A call with these parameters, unsigned, from 127.0.0.1 over HTTPS.
    pub fn call(&self, params: &[(&str, &str)]) -> Call {
        Call {
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            captcha_id: None,
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            via_tcp: false,
            route: Default::default(),
            signed: Default::default(),
        }
    }

    /// A call signed with `param_sign`, as a device sends it.
    pub fn signed(&self, params: &[(&str, &str)]) -> Call {
        let mut c = self.call(params);
        self.sign(&mut c);
        c
    }

    /// A call by the account `name` holding `token`, signed, with `extra` parameters after those.
    pub fn signed_as(&self, token: &str, name: &str, extra: &[(&str, &str)]) -> Call {
        let mut p = vec![("access_token", token), ("user_name", name)];
        p.extend_from_slice(extra);
        self.signed(&p)
    }

    /// A call carrying the answer of a fresh captcha, as a phone sends it.
    pub async fn human(&self, params: &[(&str, &str)]) -> Call {
        let (id, answer) = self.captcha().await;
        let mut c = self.call(params);
        c.params.push(("verify_code".into(), answer));
        c.captcha_id = Some(id);
        c
    }

    /// [`human`](Self::human), signed too (`/login` wants both from a phone).
    pub async fn human_signed(&self, params: &[(&str, &str)]) -> Call {
        let mut c = self.human(params).await;
        self.sign(&mut c);
        c
    }

    /// Sign `c` as a client does (version 2: a fresh nonce, the clock's time, `param_sign`
    /// last, over the call's route).
    fn sign(&self, c: &mut Call) {
        let (name, version) = crypto::SIGN_VERSION;
        c.params.push((name.into(), version.into()));
        c.params
            .push(("timestamp".into(), self.app.now().to_string()));
        c.params.push(("nonce".into(), crypto::new_nonce()));
        let sign = crypto::param_sign_v2(APP_KEY, c.route.method, &c.route.path, &c.params);
        c.params.push(("param_sign".into(), sign));
    }

    /// A captcha challenge in the store (id, answer), living `captcha.ttl_secs`.
    pub async fn captcha(&self) -> (String, String) {
        let id = crypto::new_token();
        let expires = self.app.now() + self.app.cfg.captcha.ttl_secs as i64;
        self.app
            .store
            .insert_captcha(id.clone(), "kit7q".into(), expires)
            .await
            .unwrap();
        (id, "kit7q".into())
    }

    /// An active account with its JID on the fake server (password [`PASSWORD`]), made through
    /// the account lifecycle, and a fresh access token of it.
    pub async fn account(&self, name: &str, kind: AccountType) -> (Account, String) {
        let app = &self.app;
        let node = account::new_jid_node();
        let jid_pwd = account::new_jid_password();
        let hash = app.hasher.hash(PASSWORD.into()).await.unwrap();
        let id = account::reserve(
            app,
            NewAccount {
                user_name: name.into(),
                kind,
                device_type: (kind == AccountType::Device).then(|| "lamp".into()),
                des: String::new(),
                password_hash: hash,
                jid_node: node.clone(),
                jid_pwd: crypto::seal(&app.secrets.encryption_key, &node, &jid_pwd),
            },
        )
        .await
        .unwrap();
        let user = UserName::parse(name).unwrap();
        let reserved = account::Reserved {
            id,
            name: &user,
            node: &node,
            jid_pwd: &jid_pwd,
        };
        account::create_jid(app, &reserved).await.unwrap();
        (self.named(name).await.unwrap(), self.token(id).await)
    }

    /// A phone `p` and a device `d`, with a token each.
    pub async fn phone_and_device(&self) -> ((Account, String), (Account, String)) {
        let p = self.account("p", AccountType::Phone).await;
        let d = self.account("d", AccountType::Device).await;
        (p, d)
    }

    /// [`phone_and_device`](Self::phone_and_device), bound to each other.
    pub async fn bound_pair(&self) -> ((Account, String), (Account, String)) {
        let (p, d) = self.phone_and_device().await;
        self.bind(&p.0, &d.0).await;
        (p, d)
    }

    /// A new access token of account `id`, living `security.token_ttl_secs`.
    pub async fn token(&self, id: i64) -> String {
        let token = crypto::new_token();
        let now = self.app.now();
        let ttl = self.app.cfg.security.token_ttl_secs as i64;
        self.app
            .store
            .insert_token(crypto::token_hash(&token), id, now + ttl, now)
            .await
            .unwrap();
        token
    }

    /// Binds two accounts through the pair lifecycle.
    pub async fn bind(&self, x: &Account, y: &Account) {
        crate::lifecycle::pair::bind(&self.app, x, y).await.unwrap();
    }

    /// A bind token issued by `name` (holding `access`) through `/get_bind_token`.
    pub async fn bind_token(&self, name: &str, access: &str, format: &str) -> String {
        let c = self.signed(&[
            ("access_token", access),
            ("user_name", name),
            ("format", format),
        ]);
        let v = crate::cmd::get_bind_token::run(&self.app, &c)
            .await
            .unwrap()
            .into_json();
        v["bind_token"].as_str().unwrap().to_owned()
    }

    /// The account named `name`, if it exists (in any state).
    pub async fn named(&self, name: &str) -> Option<Account> {
        self.app.store.account_by_name(name).await.unwrap()
    }
}

/// The login parameters of `name`: its password and its account type code ("1" a phone, "2" a
/// device, …).
pub fn credentials<'a>(name: &'a str, password: &'a str, kind: &'a str) -> [(&'a str, &'a str); 3] {
    [("user_name", name), ("password", password), ("type", kind)]
}

/// Asserts that `text` contains every one of `needles`.
pub fn assert_contains_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

/// The `result` code of a command's outcome.
pub fn code(r: &Result<Reply, ApiError>) -> i64 {
    match r {
        Ok(v) => v.code(),
        Err(e) => e.code(),
    }
}
