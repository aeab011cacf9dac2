//! Configuration: a TOML file, then `REGISTER_<SECTION>__<KEY>` environment variables, then flags.
//!
//! The file and the environment are merged as TOML values before anything is typed, so an
//! environment variable can set any key the file can (`REGISTER_XMPP__TIMEOUT_MS=5000`,
//! `REGISTER_SECURITY__APP_KEYS='["k1","k2"]'`). A secret key `X` can instead be given as `X_file`,
//! naming a file whose trimmed content is the secret. See `docs/CONFIG.md` for every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration, with defaults for every key.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub http: HttpSection,
    pub tcp: TcpSection,
    pub admin: AdminSection,
    pub xmpp: XmppSection,
    pub security: SecuritySection,
    pub captcha: CaptchaSection,
    pub log: LogSection,
    pub reconcile: ReconcileSection,
    pub database: DatabaseSection,
    pub binding: BindingSection,
    pub audit: AuditSection,
}

/// The audit trail (`register audit`; docs/OPERATIONS.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSection {
    /// Days an audit record is kept; older ones go with the periodic prune.
    pub retention_days: u64,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection { retention_days: 90 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    pub listen: SocketAddr,
    pub tls: bool,
    pub cert_file: String,
    pub key_file: String,
    pub max_body_bytes: usize,
    pub max_connections: usize,
    pub header_timeout_ms: u64,
    pub trusted_proxies: Vec<String>,
    /// Plain HTTP (`tls = false`) on a non-loopback `listen` with no `trusted_proxies`: refused
    /// unless this is set (tokens and passwords would cross the network in the clear).
    pub allow_plaintext: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpSection {
    pub listen: SocketAddr,
    pub allow: Vec<String>,
    pub max_connections: usize,
    pub idle_timeout_secs: u64,
    pub max_line_bytes: usize,
    /// File holding the backends' shared secret; empty: no `/auth` asked.
    pub auth_token_file: String,
    /// TLS on the TCP listener.
    pub tls: bool,
    /// Certificate and key of the TCP listener; empty: the HTTPS ones.
    pub cert_file: String,
    pub key_file: String,
    /// Plaintext (`tls = false`) on a non-loopback `listen`: refused unless this is set (access
    /// tokens and user data would cross the network in the clear).
    pub allow_plaintext: bool,
    /// Threads of the TCP listener's own (default 1; 0: connections are tasks of the service's
    /// runtime, as everything else). See docs/SCALING.md, "TCP threads".
    pub threads: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XmppSection {
    pub domain: String,
    pub component: String,
    pub component_addr: String,
    pub component_secret: String,
    pub c2s_addr: String,
    pub c2s_tls: String,
    pub tls_ca_file: String,
    pub allow_plain_without_tls: bool,
    pub accounts: String,
    pub binding: String,
    pub timeout_ms: u64,
    pub session_idle_secs: u64,
    pub keepalive_secs: u64,
    /// Send `allowMultiple` in the component stream header (Openfire: several instances on one
    /// component name).
    pub allow_multiple: bool,
    /// XEP-0050 command sessions open at once per instance (Openfire allows 100 per requester).
    pub command_sessions: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecuritySection {
    pub sign_key: String,
    pub app_keys: Vec<String>,
    /// Key (64 hex characters) encrypting `jid_pwd` at rest; empty: generated into data_dir.
    pub encryption_key: String,
    pub token_ttl_secs: u64,
    pub timestamp_window_secs: u64,
    /// Failed logins from one client network before that network is locked out of the account.
    pub lockout_threshold: u32,
    /// Failed logins from all networks together before the whole account is locked.
    pub lockout_account_threshold: u32,
    pub lockout_secs: u64,
    /// Requests per minute per client network for /login, /register, /cancel and /verify_code
    /// (0: no limit).
    pub rate_per_minute: u32,
    /// Requests per minute per client network for every other HTTPS endpoint (0: no limit).
    pub api_rate_per_minute: u32,
    /// HTTPS requests per minute made with the access tokens of one account (0: no limit).
    pub account_rate_per_minute: u32,
    /// Client IPv6 addresses are grouped into networks of this prefix length for the rate limits.
    pub ipv6_prefix: u8,
    /// Concurrent Argon2id computations (0: number of CPUs).
    pub hash_concurrency: usize,
    /// Password hashings waiting or running at most; past that a request is refused with 503.
    pub hash_queue: usize,
    /// Live access tokens per account at most; a login past that revokes the oldest.
    pub max_tokens_per_account: u32,
    /// Accept version 1 `param_sign` (no method, path or nonce) from older apps; warned about at
    /// every start.
    pub accept_v1_signatures: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptchaSection {
    pub length: usize,
    pub ttl_secs: u64,
    pub fixed_answer: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `register=debug,info`.
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcileSection {
    /// Seconds between reconciler runs (0: only at start and by `register reconcile`).
    pub interval_secs: u64,
    /// A pending record younger than this is left alone (its request may still be running).
    pub grace_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSection {
    /// Empty: SQLite in `data_dir/register.db`. `postgres://user[:password]@host:port/dbname`:
    /// PostgreSQL, shared by every instance (docs/SCALING.md).
    pub url: String,
    /// Most PostgreSQL connections of this instance.
    pub max_connections: usize,
    /// Live access tokens kept in memory (SQLite only; about 0.6 KiB each). Size it to the tokens
    /// in use: when it is full it starts over. 0: no cache.
    pub token_cache_entries: usize,
}

/// Who may bind whom (`/get_bind_token`, `/set_user_banding`; docs/APP-GUIDE.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BindingSection {
    /// `token`: a bind needs a bind token issued by the other side (proof of the device in hand).
    /// `none`: anyone may bind anyone by name, as before bind tokens (old clients; a warning is
    /// logged at every start).
    pub consent: String,
    /// Lifetime of a bind token.
    pub token_ttl_secs: u64,
    /// Outstanding bind tokens per account; issuing one more voids the oldest.
    pub max_outstanding_tokens: u32,
    /// Failed bind-token redemptions an account may make per window before it is refused.
    pub max_failed_redemptions: u32,
    pub failed_redemption_window_secs: u64,
    /// Phones (and WeChat accounts) bound to one device at most.
    pub max_phones_per_device: u32,
    /// Devices bound to one phone (or WeChat account) at most.
    pub max_devices_per_phone: u32,
}

impl Default for BindingSection {
    fn default() -> Self {
        BindingSection {
            consent: "token".into(),
            token_ttl_secs: 600,
            max_outstanding_tokens: 3,
            max_failed_redemptions: 5,
            failed_redemption_window_secs: 600,
            max_phones_per_device: 8,
            max_devices_per_phone: 200,
        }
    }
}

impl DatabaseSection {
    /// Whether the configured database is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")
    }
}

impl Default for DatabaseSection {
    fn default() -> Self {
        DatabaseSection {
            url: String::new(),
            max_connections: 16,
            token_cache_entries: 200_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            http: HttpSection::default(),
            tcp: TcpSection::default(),
            admin: AdminSection::default(),
            xmpp: XmppSection::default(),
            security: SecuritySection::default(),
            captcha: CaptchaSection::default(),
            log: LogSection::default(),
            reconcile: ReconcileSection::default(),
            database: DatabaseSection::default(),
            binding: BindingSection::default(),
            audit: AuditSection::default(),
        }
    }
}

/// Whether `ip` is this host only: a loopback address, also written as an IPv4-mapped IPv6
/// address (`::ffff:127.0.0.1`, which `Ipv6Addr::is_loopback` does not count).
pub fn is_loopback(ip: std::net::IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

impl HttpSection {
    /// Plain HTTP reachable from other hosts, with no TLS-terminating proxy named in front.
    pub fn plaintext_on_the_network(&self) -> bool {
        !self.tls && !is_loopback(self.listen.ip()) && self.trusted_proxies.is_empty()
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: "127.0.0.1:8443".parse().unwrap(),
            tls: true,
            cert_file: String::new(),
            key_file: String::new(),
            max_body_bytes: 64 * 1024,
            max_connections: 4096,
            header_timeout_ms: 10_000,
            trusted_proxies: Vec::new(),
            allow_plaintext: false,
        }
    }
}

impl TcpSection {
    /// The TCP API in plaintext, reachable from other hosts (`tcp.allow` limits who may connect,
    /// not who may read the traffic).
    pub fn plaintext_on_the_network(&self) -> bool {
        !self.tls && !is_loopback(self.listen.ip())
    }
}

impl Default for TcpSection {
    fn default() -> Self {
        TcpSection {
            listen: "127.0.0.1:8444".parse().unwrap(),
            allow: vec!["127.0.0.0/8".into(), "::1/128".into()],
            max_connections: 20_000,
            idle_timeout_secs: 300,
            max_line_bytes: 64 * 1024,
            auth_token_file: String::new(),
            tls: false,
            cert_file: String::new(),
            key_file: String::new(),
            allow_plaintext: false,
            threads: 1,
        }
    }
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: "127.0.0.1:8445".parse().unwrap(),
        }
    }
}

impl Default for XmppSection {
    fn default() -> Self {
        XmppSection {
            domain: "example.com".into(),
            component: "register.example.com".into(),
            component_addr: "127.0.0.1:5275".into(),
            component_secret: String::new(),
            c2s_addr: "127.0.0.1:5222".into(),
            c2s_tls: "required".into(),
            tls_ca_file: String::new(),
            allow_plain_without_tls: false,
            accounts: "component".into(),
            binding: "c2s".into(),
            timeout_ms: 10_000,
            session_idle_secs: 60,
            keepalive_secs: 60,
            allow_multiple: false,
            command_sessions: 40,
        }
    }
}

impl Default for SecuritySection {
    fn default() -> Self {
        SecuritySection {
            sign_key: String::new(),
            app_keys: Vec::new(),
            encryption_key: String::new(),
            token_ttl_secs: 2_592_000,
            timestamp_window_secs: 300,
            lockout_threshold: 5,
            lockout_account_threshold: 50,
            lockout_secs: 900,
            rate_per_minute: 60,
            api_rate_per_minute: 1200,
            account_rate_per_minute: 120,
            ipv6_prefix: 64,
            hash_concurrency: 0,
            hash_queue: 64,
            max_tokens_per_account: 10,
            accept_v1_signatures: false,
        }
    }
}

impl Default for CaptchaSection {
    fn default() -> Self {
        CaptchaSection {
            length: 5,
            ttl_secs: 300,
            fixed_answer: String::new(),
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

impl Default for ReconcileSection {
    fn default() -> Self {
        ReconcileSection {
            interval_secs: 60,
            grace_secs: 120,
        }
    }
}

/// Keys outside any section, settable as `REGISTER_<KEY>`.
const TOP_LEVEL_KEYS: &[&str] = &["data_dir"];

/// Secret keys that may be given as `<key>_file`.
const SECRET_KEYS: &[(&str, &str)] = &[
    ("xmpp", "component_secret"),
    ("security", "sign_key"),
    ("security", "app_keys"),
    ("security", "encryption_key"),
    ("database", "url"),
];

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {0}")]
    Parse(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Load from `path` (a missing default file is fine: built-in defaults), the environment and
    /// `overrides` (`section.key=value` pairs from flags), in that order of precedence.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<Config, ConfigError> {
        let mut root = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse(format!("{}: {e}", p.display())))?
            }
            None => match std::fs::read_to_string("register.toml") {
                Ok(text) => text
                    .parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse(format!("register.toml: {e}")))?,
                Err(_) => toml::Table::new(),
            },
        };
        for (k, v) in env {
            let Some(rest) = k.strip_prefix("REGISTER_") else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            let (section, key) = match rest.split_once("__") {
                Some((s, k)) => (Some(s.to_owned()), k.to_owned()),
                // Only real top-level keys: other REGISTER_* variables belong to scripts.
                None if TOP_LEVEL_KEYS.contains(&rest.as_str()) => (None, rest),
                None => continue,
            };
            set_value(&mut root, section.as_deref(), &key, &v);
        }
        for o in overrides {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| ConfigError::Invalid(format!("--set {o}: expected key=value")))?;
            match k.split_once('.') {
                Some((s, key)) => set_value(&mut root, Some(s), key, v),
                None => set_value(&mut root, None, k, v),
            }
        }
        read_secret_files(&mut root)?;
        let cfg: Config = toml::Value::Table(root)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that span several keys or need more than a type.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !self.captcha.fixed_answer.is_empty()
            && (!is_loopback(self.http.listen.ip())
                || !self.http.tls
                || !self.http.trusted_proxies.is_empty())
        {
            // A TLS-terminating proxy on the same host would expose a loopback listener.
            return bad(
                "captcha.fixed_answer is for tests only: it needs a loopback http.listen, \
                 http.tls = true and no http.trusted_proxies"
                    .into(),
            );
        }
        // In-band registration sends the new password in the clear: without TLS it is refused at
        // every /register (101), so such a service could start and answer ready, never working.
        if self.xmpp.accounts == "ibr"
            && self.xmpp.c2s_tls == "off"
            && !self.xmpp.allow_plain_without_tls
        {
            return bad(
                "xmpp.accounts = \"ibr\" with xmpp.c2s_tls = \"off\" cannot register \
                 anyone: in-band registration needs TLS; set xmpp.c2s_tls = \"required\" (or \
                 \"optional\"), or xmpp.allow_plain_without_tls = true on a trusted network"
                    .into(),
            );
        }
        let sec = &self.security;
        if sec.lockout_threshold == 0 || sec.lockout_account_threshold < sec.lockout_threshold {
            return bad("security.lockout_threshold must be positive and at most \
                 security.lockout_account_threshold"
                .into());
        }
        if self.security.ipv6_prefix > 128 {
            return bad("security.ipv6_prefix must be 0-128".into());
        }
        if self.security.hash_queue == 0 || self.security.max_tokens_per_account == 0 {
            return bad(
                "security.hash_queue and security.max_tokens_per_account must be positive".into(),
            );
        }
        if !(4..=8).contains(&self.captcha.length) {
            return bad("captcha.length must be 4-8".into());
        }
        if !matches!(self.xmpp.c2s_tls.as_str(), "required" | "optional" | "off") {
            return bad("xmpp.c2s_tls must be required, optional or off".into());
        }
        if !matches!(self.xmpp.accounts.as_str(), "component" | "ibr") {
            return bad("xmpp.accounts must be component or ibr".into());
        }
        if !matches!(self.xmpp.binding.as_str(), "c2s" | "privileged") {
            return bad("xmpp.binding must be c2s or privileged".into());
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return bad("log.format must be text or json".into());
        }
        if !(1..100).contains(&self.xmpp.command_sessions) {
            return bad(
                "xmpp.command_sessions must be 1-99 (Openfire refuses the 101st open command \
                 session of a component)"
                    .into(),
            );
        }
        if !(1..=3600).contains(&self.security.timestamp_window_secs) {
            return bad(
                "security.timestamp_window_secs must lie in 1..=3600 (a signed request stays \
                 valid, and its nonce remembered, that long)"
                    .into(),
            );
        }
        if self.xmpp.timeout_ms == 0 || self.security.token_ttl_secs == 0 {
            return bad("xmpp.timeout_ms and security.token_ttl_secs must be positive".into());
        }
        for n in self.tcp.allow.iter().chain(&self.http.trusted_proxies) {
            if n.parse::<ipnet::IpNet>().is_err() && n.parse::<std::net::IpAddr>().is_err() {
                return bad(format!("{n:?} is not a network (e.g. 10.0.0.0/8)"));
            }
        }
        if self.tcp.threads > 1024 {
            return bad("tcp.threads must be at most 1024".into());
        }
        if self.tcp.cert_file.is_empty() != self.tcp.key_file.is_empty() {
            return bad("tcp.cert_file and tcp.key_file go together".into());
        }
        if !self.database.url.is_empty() && !self.database.is_postgres() {
            return bad(
                "database.url must be empty (SQLite in data_dir) or postgres://user@host:port/db"
                    .into(),
            );
        }
        if self.database.max_connections == 0 {
            return bad("database.max_connections must be positive".into());
        }
        if !matches!(self.binding.consent.as_str(), "token" | "none") {
            return bad("binding.consent must be token or none".into());
        }
        if self.binding.token_ttl_secs == 0 || self.binding.max_outstanding_tokens == 0 {
            return bad(
                "binding.token_ttl_secs and binding.max_outstanding_tokens must be positive".into(),
            );
        }
        if self.http.cert_file.is_empty() != self.http.key_file.is_empty() {
            return bad("http.cert_file and http.key_file go together".into());
        }
        self.refuse_what_cannot_work().map_err(ConfigError::Invalid)
    }

    /// Combinations that pass every single-key check but cannot work, or would silently not do
    /// what they say: one line naming the keys and the fix (exit 7 at start and in
    /// `register check`).
    fn refuse_what_cannot_work(&self) -> Result<(), String> {
        let d = Config::default();
        let refuse = |keys: &str, fix: &str| Err(format!("{keys}: {fix}"));
        if self
            .http
            .trusted_proxies
            .iter()
            .any(|n| n.parse::<ipnet::IpNet>().is_ok_and(|n| n.prefix_len() == 0))
        {
            return refuse(
                "http.trusted_proxies",
                "a /0 entry believes X-Forwarded-For from every address, so any client could \
                 choose the network its rate limits and lock-outs count against; list the \
                 proxies' own addresses",
            );
        }
        if !self.database.is_postgres()
            && self.database.max_connections != d.database.max_connections
        {
            return refuse(
                "database.max_connections without database.url",
                "it sizes the PostgreSQL pool and SQLite has none; remove it, or set \
                 database.url = \"postgres://…\"",
            );
        }
        if self.http.plaintext_on_the_network() && !self.http.allow_plaintext {
            return refuse(
                "http.tls = false on a non-loopback http.listen without http.trusted_proxies",
                "access tokens and passwords would cross the network in the clear; set \
                 http.tls = true, or put a TLS-terminating proxy in front and list its address \
                 in http.trusted_proxies, or set http.allow_plaintext = true if the network \
                 itself is protected",
            );
        }
        if self.tcp.plaintext_on_the_network() && !self.tcp.allow_plaintext {
            return refuse(
                "tcp.tls = false on a non-loopback tcp.listen",
                "access tokens and user data would cross the network in the clear (tcp.allow \
                 limits who connects, not who reads); set tcp.tls = true, or set \
                 tcp.allow_plaintext = true if the network itself is protected",
            );
        }
        if !self.http.tls && !self.http.cert_file.is_empty() {
            return refuse(
                "http.cert_file with http.tls = false",
                "the certificate would never be served; set http.tls = true, or remove \
                 http.cert_file and http.key_file (TLS ends at a proxy)",
            );
        }
        if !self.tcp.tls && !self.tcp.cert_file.is_empty() {
            return refuse(
                "tcp.cert_file with tcp.tls = false",
                "the certificate would never be served; set tcp.tls = true, or remove \
                 tcp.cert_file and tcp.key_file",
            );
        }
        if self.http.max_connections == 0
            || self.tcp.max_connections == 0
            || self.http.max_body_bytes == 0
        {
            return refuse(
                "http.max_connections, tcp.max_connections, http.max_body_bytes",
                "0 refuses every connection or request; set a positive number",
            );
        }
        if self.captcha.ttl_secs == 0 {
            return refuse(
                "captcha.ttl_secs = 0",
                "every captcha would expire as it is issued, so no phone could register; set \
                 seconds (default 300)",
            );
        }
        if self.binding.max_phones_per_device == 0 || self.binding.max_devices_per_phone == 0 {
            return refuse(
                "binding.max_phones_per_device, binding.max_devices_per_phone",
                "0 refuses every bind; set a positive number",
            );
        }
        if self.audit.retention_days == 0 {
            return refuse(
                "audit.retention_days = 0",
                "every audit record would be pruned as it is written; set days (default 90)",
            );
        }
        Ok(())
    }
}

/// Parse a list of networks (`10.0.0.0/8`, or a single address).
pub fn parse_nets(list: &[String]) -> Vec<ipnet::IpNet> {
    list.iter()
        .filter_map(|n| {
            n.parse::<ipnet::IpNet>()
                .ok()
                .or_else(|| n.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
        })
        .collect()
}

fn set_value(root: &mut toml::Table, section: Option<&str>, key: &str, raw: &str) {
    // A value that parses as TOML (number, bool, array) keeps its type; anything else is a string.
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let table = match section {
        Some(s) => {
            let entry = root
                .entry(s.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry.as_table_mut() {
                Some(t) => t,
                None => return,
            }
        }
        None => root,
    };
    table.insert(key.to_owned(), value);
}

fn read_secret_files(root: &mut toml::Table) -> Result<(), ConfigError> {
    for (section, key) in SECRET_KEYS {
        let Some(table) = root.get_mut(*section).and_then(|v| v.as_table_mut()) else {
            continue;
        };
        let file_key = format!("{key}_file");
        let Some(path) = table.remove(&file_key) else {
            continue;
        };
        let path = path
            .as_str()
            .ok_or_else(|| ConfigError::Invalid(format!("{section}.{file_key} must be a path")))?
            .to_owned();
        if path.is_empty() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone().into(),
            source,
        })?;
        let text = text.trim();
        let value = if *key == "app_keys" {
            toml::Value::Array(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| toml::Value::String(l.to_owned()))
                    .collect(),
            )
        } else {
            toml::Value::String(text.to_owned())
        };
        table.insert((*key).to_owned(), value);
    }
    Ok(())
}

#[cfg(test)]
impl Config {
    /// The defaults with `data_dir` set to `dir` (a test's temporary directory).
    pub(crate) fn in_dir(dir: &Path) -> Config {
        Config {
            data_dir: dir.to_owned(),
            ..Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml_text: &str, env: &[(&str, &str)], flags: &[&str]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.toml");
        std::fs::write(&p, toml_text).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        Config::load(Some(&p), env, &flags)
    }

    #[test]
    fn defaults_file_env_flags_in_order() {
        let c = load(
            "data_dir = \"d\"\n[xmpp]\ntimeout_ms = 5\ndomain = \"a.test\"\n",
            &[
                ("REGISTER_XMPP__TIMEOUT_MS", "7"),
                ("REGISTER_DATA_DIR", "e"),
                ("REGISTER_DATA", "ignored"),
                ("OTHER", "x"),
            ],
            &["xmpp.domain=b.test"],
        )
        .unwrap();
        assert_eq!(c.xmpp.timeout_ms, 7);
        assert_eq!(c.xmpp.domain, "b.test");
        assert_eq!(c.data_dir, PathBuf::from("e"));
        assert_eq!(c.http.listen.port(), 8443);
        assert_eq!(c.captcha.length, 5);
    }

    #[test]
    fn env_arrays_and_secret_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "s3cret\n").unwrap();
        let c = load(
            &format!(
                "[xmpp]\ncomponent_secret_file = {:?}\n",
                f.to_str().unwrap()
            ),
            &[("REGISTER_SECURITY__APP_KEYS", r#"["k1","k2"]"#)],
            &[],
        )
        .unwrap();
        assert_eq!(c.xmpp.component_secret, "s3cret");
        assert_eq!(c.security.app_keys, vec!["k1", "k2"]);
    }

    #[test]
    fn plain_http_off_loopback_needs_a_proxy_or_the_opt_in() {
        let plain = "[http]\nlisten = \"0.0.0.0:8443\"\ntls = false\n";
        let e = load(plain, &[], &[]).unwrap_err().to_string();
        assert!(
            e.contains("http.allow_plaintext") && e.contains("http.trusted_proxies"),
            "{e}"
        );
        for extra in [
            "trusted_proxies = [\"10.0.0.1\"]\n",
            "allow_plaintext = true\n",
        ] {
            let c = load(&format!("{plain}{extra}"), &[], &[]).unwrap();
            assert_eq!(
                c.http.plaintext_on_the_network(),
                extra.starts_with("allow")
            );
        }
        for listen in ["127.0.0.1:8443", "[::1]:8443", "[::ffff:127.0.0.1]:8443"] {
            let loopback = format!("[http]\nlisten = \"{listen}\"\ntls = false\n");
            assert!(load(&loopback, &[], &[]).is_ok(), "{listen}");
        }
    }

    #[test]
    fn plain_tcp_off_loopback_needs_tls_or_the_opt_in() {
        for listen in ["0.0.0.0:8444", "[::]:8444", "10.1.2.3:8444"] {
            let plain = format!("[tcp]\nlisten = \"{listen}\"\n");
            let e = load(&plain, &[], &[]).unwrap_err().to_string();
            assert!(
                e.contains("tcp.tls")
                    && e.contains("tcp.listen")
                    && e.contains("tcp.allow_plaintext"),
                "{listen}: {e}"
            );
            // Still refused when tcp.allow keeps everyone else out: it does not encrypt.
            let allow = format!("{plain}allow = [\"10.0.0.0/8\"]\n");
            assert!(load(&allow, &[], &[]).is_err(), "{listen}");
            let c = load(&format!("{plain}allow_plaintext = true\n"), &[], &[]).unwrap();
            assert!(c.tcp.plaintext_on_the_network() && c.tcp.allow_plaintext);
            let c = load(&format!("{plain}tls = true\n"), &[], &[]).unwrap();
            assert!(!c.tcp.plaintext_on_the_network(), "{listen}");
        }
        for listen in ["127.0.0.1:8444", "[::1]:8444", "[::ffff:127.0.0.1]:8444"] {
            let loopback = format!("[tcp]\nlisten = \"{listen}\"\n");
            let c = load(&loopback, &[], &[]).unwrap();
            assert!(!c.tcp.plaintext_on_the_network(), "{listen}");
        }
        // Also when the listener comes from the environment or --set.
        let e = load("", &[("REGISTER_TCP__LISTEN", "0.0.0.0:8444")], &[]);
        assert!(e.is_err());
        let ok = load(
            "",
            &[],
            &["tcp.listen=0.0.0.0:8444", "tcp.allow_plaintext=true"],
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(load("[xmpp]\nnope = 1\n", &[], &[]).is_err());
        assert!(load("[xmpp]\naccounts = \"magic\"\n", &[], &[]).is_err());
        assert!(load(
            "[http]\nlisten = \"0.0.0.0:8443\"\n[captcha]\nfixed_answer = \"abcde\"\n",
            &[],
            &[]
        )
        .is_err());
        // A loopback listener behind a local proxy, or without TLS, is still reachable.
        for http in ["tls = false", "trusted_proxies = [\"127.0.0.1\"]"] {
            let e = load(
                &format!("[http]\n{http}\n[captcha]\nfixed_answer = \"abcde\"\n"),
                &[],
                &[],
            )
            .unwrap_err();
            assert!(e.to_string().contains("captcha.fixed_answer"), "{e}");
        }
        assert!(load("[captcha]\nfixed_answer = \"abcde\"\n", &[], &[]).is_ok());
        assert!(load("[security]\nipv6_prefix = 129\n", &[], &[]).is_err());
        assert!(load("[security]\nhash_queue = 0\n", &[], &[]).is_err());
        let e = load("[xmpp]\naccounts = \"ibr\"\nc2s_tls = \"off\"\n", &[], &[]).unwrap_err();
        assert!(
            e.to_string().contains("xmpp.c2s_tls") && e.to_string().contains("xmpp.accounts"),
            "{e}"
        );
        assert!(load(
            "[xmpp]\naccounts = \"ibr\"\nc2s_tls = \"off\"\nallow_plain_without_tls = true\n",
            &[],
            &[]
        )
        .is_ok());
        assert!(load("[security]\nlockout_account_threshold = 4\n", &[], &[]).is_err());
        assert!(load("[tcp]\nallow = [\"nonsense\"]\n", &[], &[]).is_err());
        assert!(load("[tcp]\nthreads = 1025\n", &[], &[]).is_err());
        for ok in ["0", "1", "16"] {
            let c = load(&format!("[tcp]\nthreads = {ok}\n"), &[], &[]).unwrap();
            assert_eq!(c.tcp.threads.to_string(), ok);
        }
        assert!(load("[database]\nurl = \"mysql://x\"\n", &[], &[]).is_err());
        let c = load(
            "[database]\nurl = \"postgres://u@127.0.0.1:5432/r\"\n",
            &[],
            &[],
        )
        .unwrap();
        assert!(c.database.is_postgres());
        assert!(!Config::default().database.is_postgres());
    }

    #[test]
    fn refuses_combinations_that_cannot_work() {
        for (toml, key) in [
            (
                "[http]\ntrusted_proxies = [\"10.0.0.1\", \"::/0\"]\n",
                "http.trusted_proxies",
            ),
            (
                "[database]\nmax_connections = 4\n",
                "database.max_connections",
            ),
            (
                "[http]\ntls = false\ncert_file = \"c\"\nkey_file = \"k\"\n",
                "http.cert_file",
            ),
            (
                "[tcp]\ncert_file = \"c\"\nkey_file = \"k\"\n",
                "tcp.cert_file",
            ),
            ("[http]\nmax_body_bytes = 0\n", "http.max_body_bytes"),
            ("[captcha]\nttl_secs = 0\n", "captcha.ttl_secs"),
            (
                "[binding]\nmax_phones_per_device = 0\n",
                "binding.max_phones_per_device",
            ),
            ("[audit]\nretention_days = 0\n", "audit.retention_days"),
        ] {
            let e = load(toml, &[], &[]).unwrap_err().to_string();
            assert!(e.contains(key) && !e.contains('\n'), "{toml}: {e}");
        }
        // The same keys where they work.
        for toml in [
            "[database]\nurl = \"postgres://u@h:5432/r\"\nmax_connections = 4\n",
            "[database]\ntoken_cache_entries = 0\n",
            "[database]\nurl = \"postgres://u@h:5432/r\"\ntoken_cache_entries = 0\n",
            "[http]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
            "[tcp]\ntls = true\ncert_file = \"c\"\nkey_file = \"k\"\n",
            "[audit]\nretention_days = 7\n",
        ] {
            assert!(load(toml, &[], &[]).is_ok(), "{toml}");
        }
    }

    #[test]
    fn binding_section() {
        let d = Config::default().binding;
        assert_eq!(
            (
                d.consent.as_str(),
                d.token_ttl_secs,
                d.max_outstanding_tokens
            ),
            ("token", 600, 3)
        );
        assert_eq!((d.max_phones_per_device, d.max_devices_per_phone), (8, 200));
        let c = load(
            "[binding]\nconsent = \"none\"\ntoken_ttl_secs = 60\n",
            &[("REGISTER_BINDING__MAX_PHONES_PER_DEVICE", "2")],
            &[],
        )
        .unwrap();
        assert_eq!(c.binding.consent, "none");
        assert_eq!(c.binding.token_ttl_secs, 60);
        assert_eq!(c.binding.max_phones_per_device, 2);
        assert!(load("[binding]\nconsent = \"maybe\"\n", &[], &[]).is_err());
        assert!(load("[binding]\ntoken_ttl_secs = 0\n", &[], &[]).is_err());
        // The example configuration parses and says the defaults.
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/register.toml"),
        )
        .unwrap();
        let ex = load(&text, &[], &[]).unwrap().binding;
        assert_eq!(
            (ex.consent, ex.token_ttl_secs, ex.max_failed_redemptions),
            (d.consent, d.token_ttl_secs, d.max_failed_redemptions)
        );
    }
}
