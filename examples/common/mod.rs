//! What `device_client` and `phone_client` share: their server options ([`Server`]) and exit
//! status, the HTTPS client ([`Api`]: trusted certificate, app key, the server's signing key to
//! check replies with), `param_sign` and the replies' `sign` check (with the server's own
//! `register::auth::crypto`), and the result codes' meanings.
//! Included by each of them with `#[path = "common/mod.rs"] mod common;` (Cargo builds no
//! example from this subdirectory).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use register::auth::crypto;
use serde_json::Value;

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

/// An example's `main`: parses its arguments, runs `run` with them on a Tokio runtime, and exits
/// with the outcome; a failure is printed as `client: error`.
pub fn main<A, F>(client: &str, run: fn(A) -> F) -> std::process::ExitCode
where
    A: clap::Parser,
    F: std::future::Future<Output = Result<(), String>>,
{
    let args = A::parse();
    let outcome = tokio::runtime::Runtime::new()
        .map_err(|e| format!("runtime: {e}"))
        .and_then(|rt| rt.block_on(run(args)));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{client}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A request's parameters, as `(name, value)` in the order sent.
pub type Params<'a> = &'a [(&'a str, &'a str)];

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
    pub async fn call(&self, path: &str, params: Params<'_>, sign: bool) -> Result<Value, String> {
        let mut form: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // What the reply must name when the request is signed: its nonce and the SHA-256 of the
        // base string the signature covers.
        let mut names = None;
        if sign {
            // Version 2: sign_v, a timestamp and a fresh nonce, all covered with the method and path.
            let n = crypto::new_nonce();
            let mut extra = vec![("sign_v", "2".to_owned()), ("nonce", n.clone())];
            if !form.iter().any(|(k, _)| k == "timestamp") {
                extra.push(("timestamp", now().to_string()));
            }
            form.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
            let base = crypto::param_sign_v2_base("POST", path, &form);
            let s = crypto::param_sign_v2(self.app_key.as_bytes(), "POST", path, &form);
            form.push(("param_sign".into(), s));
            names = Some((n, crypto::request_digest(&base)));
        }
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = r.status();
        let request_id = header(&r, "x-request-id").unwrap_or_else(|| "-".into());
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
            // A signed request's reply names it (its nonce and the hash of its base string,
            // inside sign): it answers this request, no other. A refusal made before the
            // signature was checked names none, and is only ever an error.
            if let Some((nonce, digest)) = &names {
                let named = reply["nonce"].as_str() == Some(nonce.as_str())
                    && reply["request_sha256"].as_str() == Some(digest.as_str());
                if !named && (code(&reply) == 0 || reply.get("nonce").is_some()) {
                    return Err(format!("{path}: the reply is for another request: {reply}"));
                }
            }
        }
        Ok(reply)
    }

    /// [`call`](Self::call) whose reply must be a success: any other result code is returned as
    /// the step's [`failure`] (the step named by the path).
    pub async fn ok(&self, path: &str, params: Params<'_>, sign: bool) -> Result<Value, String> {
        let reply = self.call(path, params, sign).await?;
        match code(&reply) {
            0 => Ok(reply),
            c => Err(failure(path.trim_start_matches('/'), c)),
        }
    }
}

impl Api {
    /// `/register`: true when the account was made, false when the name was taken already (a
    /// second run logs in instead); any other result is the step's [`failure`].
    pub async fn register(&self, params: Params<'_>, sign: bool) -> Result<bool, String> {
        let reply = self.call("/register", params, sign).await?;
        match code(&reply) {
            0 => Ok(true),
            103 => Ok(false),
            c => Err(failure("register", c)),
        }
    }

    /// A signed `/login` that must succeed: the access token, and the whole reply.
    pub async fn login(&self, params: Params<'_>) -> Result<(String, Value), String> {
        let reply = self.ok("/login", params, true).await?;
        let token = reply["access_token"].as_str().unwrap_or_default();
        Ok((token.to_owned(), reply))
    }
}

/// A response header's value as text.
pub fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    let v = r.headers().get(name)?;
    v.to_str().ok().map(str::to_owned)
}

/// Whether a reply's `sign` is HMAC-SHA256 (server signing key) of the rest of the reply as
/// compact JSON with keys sorted at every level (docs/API.md "Signatures"; computed here with the
/// server's own functions, which `crypto::tests` hold to the documented test vectors).
fn reply_sign_ok(sign_key: &str, reply: &Value) -> bool {
    let Some(sent) = reply.get("sign") else {
        return false;
    };
    crypto::sign_reply(sign_key.as_bytes(), reply.clone()).get("sign") == Some(sent)
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
