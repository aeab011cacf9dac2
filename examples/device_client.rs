//! A device's session with register's HTTPS API: signed requests, no captcha.
//! register (type 2) → login → get_users (its own user_info) → print the JID.
//!
//! A device has no one to read a captcha, so every request it makes carries `param_sign`
//! (HMAC-SHA256 with the app key built into its firmware) and a `timestamp`, which the server
//! accepts only within `security.timestamp_window_secs` (300 s) of its clock: a captured request
//! cannot be replayed later.
//!
//! ```sh
//! # against the quick start (scripts/quickstart.sh), which keeps its app key in data/app_key:
//! cargo run --example device_client -- --ca-cert data/cert.pem cam-001
//! ```
//!
//! Arguments (each flag can also come from the environment variable named beside it):
//!
//! | argument | environment | default |
//! |---|---|---|
//! | `NAME` (positional) | `DEVICE_USER` | — the device's `user_name`, e.g. its serial number |
//! | `--url URL` | `REGISTER_URL` | `https://127.0.0.1:8443` |
//! | `--app-key KEY` | `REGISTER_APP_KEY` | the content of `data/app_key` |
//! | `--ca-cert FILE` | `REGISTER_CA_CERT` | `data/cert.pem` when it exists: the PEM certificate to trust |
//! | `--insecure` | `REGISTER_INSECURE=true` | off: accept any certificate (testing only) |
//! | `--password PW` | `DEVICE_PASSWORD` | `secret123` |
//! | `--device-type T` | `DEVICE_TYPE` | `camera` |
//! | — | `REGISTER_SIGN_KEY` | unset: replies' `sign` not checked; set: every reply's `sign` is verified with it |
//!
//! (No captcha is involved, so `REGISTER_CAPTCHA_ANSWER` is not used here.) Progress goes to
//! standard error; standard output gets `user_name=…`, `jid=…`, `jid_pwd=…` and `access_token=…`.
//! Exit status 0 on success, 1 when a step fails.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

#[derive(Parser)]
#[command(about = "A device's session with register: signed register, login, get_users")]
struct Args {
    /// The device's user_name (e.g. its serial number)
    #[arg(env = "DEVICE_USER")]
    name: String,
    /// Base URL of the HTTPS API
    #[arg(long, env = "REGISTER_URL", default_value = "https://127.0.0.1:8443")]
    url: String,
    /// App key for param_sign (default: data/app_key)
    #[arg(long, env = "REGISTER_APP_KEY", hide_env_values = true)]
    app_key: Option<String>,
    /// PEM certificate to trust (default: data/cert.pem when it exists)
    #[arg(long, env = "REGISTER_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Accept any server certificate (testing only)
    #[arg(long, env = "REGISTER_INSECURE")]
    insecure: bool,
    /// The device's password
    #[arg(long, env = "DEVICE_PASSWORD", default_value = "secret123")]
    password: String,
    /// The device_type recorded at registration
    #[arg(long, env = "DEVICE_TYPE", default_value = "camera")]
    device_type: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("device_client: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let api = Api::new(&args)?;
    let name = args.name.as_str();
    let password = args.password.as_str();

    // 1. Register: type 2 with a device_type; signed instead of a captcha.
    let reply = api
        .signed(
            "/register",
            &[
                ("user_name", name),
                ("password", password),
                ("type", "2"),
                ("device_type", &args.device_type),
                ("des", "device_client example"),
            ],
        )
        .await?;
    match code(&reply) {
        0 => eprintln!("registered device {name}"),
        103 => eprintln!("device {name} exists already; logging in"),
        c => return Err(failure("register", c)),
    }

    // 2. Log in (signed): user_info with the JID and its password, and an access token.
    let reply = api
        .signed(
            "/login",
            &[("user_name", name), ("password", password), ("type", "2")],
        )
        .await?;
    if code(&reply) != 0 {
        return Err(failure("login", code(&reply)));
    }
    let token = reply["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let info = &reply["user_info"];
    let jid = info["jid"].as_str().unwrap_or_default();
    eprintln!("logged in as {jid}; connect to the XMPP server with it and user_info.jid_pwd");

    // 3. A token request: a device's token is only accepted on signed requests.
    let names = json!([name]).to_string();
    let reply = api
        .signed(
            "/get_users",
            &[("access_token", &token), ("user_name_ls", &names)],
        )
        .await?;
    if code(&reply) != 0 {
        return Err(failure("get_users", code(&reply)));
    }
    let me = &reply["user_info_ls"][0];
    if me["jid"].as_str() != Some(jid) {
        return Err(format!("get_users: unexpected reply {reply}"));
    }
    println!("user_name={name}");
    println!("jid={jid}");
    println!("jid_pwd={}", info["jid_pwd"].as_str().unwrap_or_default());
    println!("access_token={token}");
    Ok(())
}

/// The HTTPS API: a client that trusts the given certificate, the app key, and optionally the
/// server's signing key to check replies with.
struct Api {
    http: reqwest::Client,
    url: String,
    app_key: String,
    sign_key: Option<String>,
}

impl Api {
    fn new(args: &Args) -> Result<Api, String> {
        let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
        let default_cert = PathBuf::from("data/cert.pem");
        let ca = args
            .ca_cert
            .clone()
            .or_else(|| default_cert.exists().then_some(default_cert));
        if args.insecure {
            b = b.danger_accept_invalid_certs(true);
        } else if let Some(path) = ca {
            let pem = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            b = b.add_root_certificate(cert);
        }
        let app_key = match &args.app_key {
            Some(k) => k.clone(),
            None => std::fs::read_to_string("data/app_key")
                .map(|s| s.trim().to_owned())
                .map_err(|e| format!("no --app-key / REGISTER_APP_KEY, and data/app_key: {e}"))?,
        };
        Ok(Api {
            http: b.build().map_err(|e| e.to_string())?,
            url: args.url.trim_end_matches('/').to_owned(),
            app_key,
            sign_key: std::env::var("REGISTER_SIGN_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
        })
    }

    /// POST `params` plus `timestamp` and `param_sign` as a form; return the reply object.
    async fn signed(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let mut form: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        form.push(("timestamp".into(), now().to_string()));
        let sig = param_sign(&self.app_key, &form);
        form.push(("param_sign".into(), sig));
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = r.status();
        let reply: Value = r
            .json()
            .await
            .map_err(|e| format!("{path}: reply is not JSON: {e}"))?;
        if !status.is_success() {
            return Err(format!("{path}: HTTP {status} {reply}"));
        }
        if let Some(key) = &self.sign_key {
            if !reply_sign_ok(key, &reply) {
                return Err(format!("{path}: the reply's sign does not verify: {reply}"));
            }
        }
        Ok(reply)
    }
}

/// `param_sign`: HMAC-SHA256 with the app key over `name=value` pairs sorted by name, joined
/// with `&`, values as sent (not URL-encoded), as lowercase hex.
fn param_sign(app_key: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> =
        params.iter().filter(|(k, _)| k != "param_sign").collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let base = sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
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

fn code(reply: &Value) -> i64 {
    reply["result"].as_i64().unwrap_or(1)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A step's failure with the meaning of its result code (docs/API.md).
fn failure(step: &str, code: i64) -> String {
    let meaning = match code {
        2 => "a parameter is missing or malformed",
        3 => "the server's database failed",
        4 => "the access token is missing, unknown, expired or revoked: log in again",
        6 => "param_sign is wrong (app key?) or the timestamp is off (is the clock set? NTP)",
        9 => "the XMPP server did not answer in time: retry later",
        100 => "not permitted (or rate-limited): retry later",
        101 => "the XMPP server could not create the account: retry later",
        102 => "wrong user name, password or type, or the account is locked",
        103 => "the user name is taken",
        _ => "unexpected error",
    };
    format!("{step}: result {code}: {meaning}")
}
