//! What `device_client` and `phone_client` share: their server options ([`Server`]) and exit
//! status, the HTTPS client ([`Api`]: trusted certificate, app key, the server's signing key to
//! check replies with), `param_sign`, the replies' `sign` check, and the result codes' meanings.
//! Included by each of them with `#[path = "common/mod.rs"] mod common;` (Cargo builds no
//! example from this subdirectory).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The options both clients take to reach the API (flattened into each one's `Args`).
#[derive(clap::Args)]
pub struct Server {
    /// Base URL of the HTTPS API
    #[arg(long, env = "REGISTER_URL", default_value = "https://127.0.0.1:8443")]
    pub url: String,
    /// App key for param_sign (default: data/app_key)
    #[arg(long, env = "REGISTER_APP_KEY", hide_env_values = true)]
    pub app_key: Option<String>,
    /// PEM certificate to trust (default: data/cert.pem when it exists)
    #[arg(long, env = "REGISTER_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Accept any server certificate (testing only)
    #[arg(long, env = "REGISTER_INSECURE")]
    pub insecure: bool,
}

impl Server {
    /// The [`Api`] these options describe.
    pub fn api(&self) -> Result<Api, String> {
        Api::new(
            &self.url,
            self.ca_cert.clone(),
            self.insecure,
            self.app_key.clone(),
        )
    }
}

/// The process's exit status for `run`'s outcome; a failure is printed as `client: error`.
pub fn exit(client: &str, outcome: Result<(), String>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{client}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The HTTPS API: a client that trusts the given certificate, the app key, and optionally the
/// server's signing key to check replies with.
pub struct Api {
    pub http: reqwest::Client,
    /// The base URL, without a trailing `/`.
    pub url: String,
    app_key: String,
    sign_key: Option<String>,
}

impl Api {
    /// A client for the API at `url`. It trusts `ca_cert` (default: `data/cert.pem` when it
    /// exists), or any certificate when `insecure`; `app_key` defaults to the content of
    /// `data/app_key`. Replies' `sign` is checked when `REGISTER_SIGN_KEY` is set.
    pub fn new(
        url: &str,
        ca_cert: Option<PathBuf>,
        insecure: bool,
        app_key: Option<String>,
    ) -> Result<Api, String> {
        let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
        let default_cert = PathBuf::from("data/cert.pem");
        let ca = ca_cert.or_else(|| default_cert.exists().then_some(default_cert));
        if insecure {
            b = b.danger_accept_invalid_certs(true);
        } else if let Some(path) = ca {
            let pem = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            b = b.add_root_certificate(cert);
        }
        let app_key = match app_key {
            Some(k) => k,
            None => std::fs::read_to_string("data/app_key")
                .map(|s| s.trim().to_owned())
                .map_err(|e| format!("no --app-key / REGISTER_APP_KEY, and data/app_key: {e}"))?,
        };
        Ok(Api {
            http: b.build().map_err(|e| e.to_string())?,
            url: url.trim_end_matches('/').to_owned(),
            app_key,
            sign_key: std::env::var("REGISTER_SIGN_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
        })
    }

    /// POST `params` as a form (signed with `param_sign` when `sign`), return the reply object.
    /// The transport errors (4xx/5xx) come back as JSON too; they are returned as errors here,
    /// as is a reply whose `sign` does not verify (when `REGISTER_SIGN_KEY` is set).
    pub async fn call(
        &self,
        path: &str,
        params: &[(&str, &str)],
        sign: bool,
    ) -> Result<Value, String> {
        let mut form: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut nonce = None;
        if sign {
            // Version 2: sign_v, a timestamp and a fresh nonce, all covered with the method and path.
            let n = hex::encode(rand::random::<[u8; 16]>());
            let mut extra = vec![("sign_v", "2".to_owned()), ("nonce", n.clone())];
            if !form.iter().any(|(k, _)| k == "timestamp") {
                extra.push(("timestamp", now().to_string()));
            }
            form.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
            let s = param_sign(&self.app_key, "POST", path, &form);
            form.push(("param_sign".into(), s));
            nonce = Some(n);
        }
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = r.status();
        let request_id = r
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let reply: Value = r
            .json()
            .await
            .map_err(|e| format!("{path}: reply is not JSON: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "{path}: HTTP {status} {reply} (request id {request_id})"
            ));
        }
        if let Some(key) = &self.sign_key {
            if !reply_sign_ok(key, &reply) {
                return Err(format!("{path}: the reply's sign does not verify: {reply}"));
            }
            // The signed reply names the request's nonce: it answers this request, no other.
            if nonce.is_some() && reply["nonce"].as_str() != nonce.as_deref() {
                return Err(format!("{path}: the reply is for another request: {reply}"));
            }
        }
        Ok(reply)
    }
}

/// `param_sign`, version 2 (docs/API.md "Signatures"): HMAC-SHA256 with the app key over
/// `register-sign-v2`, the method, the path and the sorted `name=value` pairs (each name and
/// value percent-encoded, RFC 3986 unreserved characters kept) joined with `&`, the four parts
/// joined with newlines; lowercase hex.
fn param_sign(app_key: &str, method: &str, path: &str, params: &[(String, String)]) -> String {
    fn pct(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }
    let mut pairs: Vec<String> = params
        .iter()
        .filter(|(k, _)| k != "param_sign")
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect();
    pairs.sort();
    let base = format!("register-sign-v2\n{method}\n{path}\n{}", pairs.join("&"));
    hmac_hex(app_key, &base)
}

/// Whether a reply's `sign` is HMAC-SHA256 (server signing key) of the rest of the reply as
/// compact JSON with keys sorted at every level.
fn reply_sign_ok(sign_key: &str, reply: &Value) -> bool {
    let mut rest = reply.clone();
    let Some(sent) = rest.as_object_mut().and_then(|m| m.remove("sign")) else {
        return false;
    };
    sent.as_str() == Some(hmac_hex(sign_key, &canonical(&rest)).as_str())
}

fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&m[*k])))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

fn hmac_hex(key: &str, data: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(data.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A reply's `result` code (1 when there is none).
pub fn code(reply: &Value) -> i64 {
    reply["result"].as_i64().unwrap_or(1)
}

/// Seconds since the Unix epoch, for `timestamp`.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A step's failure with the meaning of its result code (docs/API.md).
pub fn failure(step: &str, code: i64) -> String {
    let meaning = match code {
        2 => "a parameter is missing or malformed",
        3 => "the server's database failed",
        4 => "the access token is missing, unknown, expired or revoked: log in again",
        5 => "the captcha answer is wrong or expired: fetch a new captcha",
        6 => "param_sign is wrong (app key?) or the timestamp is off (is the clock set? NTP)",
        9 => "the XMPP server did not answer in time: retry later",
        100 => "not permitted (or rate-limited): retry later",
        101 => "the XMPP server could not create the account: retry later",
        102 => "wrong user name, password or type, or the account is locked",
        103 => "the user name is taken",
        104 => "a named user does not exist",
        105..=108 => "the XMPP server refused a session or subscription",
        109 => "already bound",
        110 => "not bound",
        111 => "the bind token is unknown, expired, used or not for this pair: ask for a new one",
        _ => "unexpected error",
    };
    format!("{step}: result {code}: {meaning}")
}
