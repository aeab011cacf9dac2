//! A phone app's session with register's HTTPS API:
//! captcha → register → captcha → login → pair with a device through a bind token → list the
//! bindings.
//!
//! Binding needs the device in hand (docs/APP-GUIDE.md, step 5), in one of two directions:
//! - the device shows a bind token (its screen): pass it with `--bind-token`, and the phone
//!   redeems it;
//! - or, without `--bind-token`, the phone issues a bind token (`bind_token=…` on standard output,
//!   a QR code in a real app) for the device to redeem (`device_client --redeem=TOKEN`, with `=`:
//!   a bind token may begin with `-`).
//!
//! ```sh
//! # 1. the quick start, with every captcha answered "abcde" (loopback only, for scripted tries):
//! REGISTER_CAPTCHA__FIXED_ANSWER=abcde scripts/quickstart.sh
//! # 2. a device, which prints the bind token it would show on its screen (bind_token=…):
//! cargo run --example device_client -- --ca-cert data/cert.pem cam-001
//! # 3. the phone, redeeming it:
//! REGISTER_CAPTCHA_ANSWER=abcde cargo run --example phone_client -- --ca-cert data/cert.pem \
//!     --bind-token 40718263 cam-001
//! ```
//!
//! Arguments (each flag can also come from the environment variable named beside it):
//!
//! | argument | environment | default |
//! |---|---|---|
//! | `DEVICE` (positional) | `PHONE_DEVICE` | — the `user_name` of an existing device to bind |
//! | `--url URL` | `REGISTER_URL` | `https://127.0.0.1:8443` |
//! | `--app-key KEY` | `REGISTER_APP_KEY` | the content of `data/app_key` |
//! | `--ca-cert FILE` | `REGISTER_CA_CERT` | `data/cert.pem` when it exists: the PEM certificate to trust |
//! | `--insecure` | `REGISTER_INSECURE=true` | off: accept any certificate (testing only) |
//! | `--user NAME` | `PHONE_USER` | `139` and 8 random digits |
//! | `--password PW` | `PHONE_PASSWORD` | `secret123` |
//! | `--bind-token T` | `PHONE_BIND_TOKEN` | unset: the phone issues a bind token for the device to redeem, instead of binding |
//! | — | `REGISTER_CAPTCHA_ANSWER` | unset: each captcha is saved to `captcha.png` and its answer read from standard input; set (e.g. `abcde` with `captcha.fixed_answer`): every captcha is answered with it |
//! | — | `REGISTER_SIGN_KEY` | unset: replies' `sign` not checked; set: every reply's `sign` is verified with it |
//!
//! Progress goes to standard error; standard output gets `user_name=…`, `jid=…`,
//! `access_token=…`, `bind_token=…` (when the phone issues one) and one `roster_item …` line per
//! contact, for scripts. Exit status 0 on
//! success, 1 when a step fails (the message names the step and the `result` code).
//!
//! The HTTPS client, `param_sign`, the replies' `sign` check and the result codes' meanings are
//! shared with `device_client` in `examples/common/mod.rs`; the captcha step is this file's.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use serde_json::{json, Value};

#[path = "common/mod.rs"]
mod common;

use common::{code, failure, now, Api};

#[derive(Parser)]
#[command(about = "A phone's session with register: captcha, register, login, bind, list")]
struct Args {
    /// user_name of an existing device to bind to this phone
    #[arg(env = "PHONE_DEVICE")]
    device: String,
    /// Where the API is and how to reach it
    #[command(flatten)]
    server: common::Server,
    /// The phone's user_name (default: 139 and 8 random digits)
    #[arg(long, env = "PHONE_USER")]
    user: Option<String>,
    /// The phone's password
    #[arg(long, env = "PHONE_PASSWORD", default_value = "secret123")]
    password: String,
    /// The bind token the device shows; without it the phone issues one for the device
    #[arg(long, env = "PHONE_BIND_TOKEN")]
    bind_token: Option<String>,
}

fn main() -> ExitCode {
    common::main("phone_client", run)
}

async fn run(args: Args) -> Result<(), String> {
    let user = args
        .user
        .clone()
        .unwrap_or_else(|| format!("139{:08}", rand::random::<u32>() % 100_000_000));
    let password = args.password.as_str();
    let api = args.server.api()?;

    // 1. Register the phone: a captcha, then /register with type 1.
    let (captcha_id, answer) = api.captcha().await?;
    if api
        .register(
            &[
                ("user_name", &user),
                ("password", password),
                ("type", "1"),
                ("des", "phone_client example"),
                ("verify_code", &answer),
                ("verify_code_id", &captcha_id),
            ],
            false,
        )
        .await?
    {
        eprintln!("registered phone {user}");
    } else {
        eprintln!("phone {user} exists already; logging in");
    }

    // 2. Log in: a fresh captcha (each answers one check) and a signed request.
    let (captcha_id, answer) = api.captcha().await?;
    let (token, reply) = api
        .login(&[
            ("user_name", &user),
            ("password", password),
            ("type", "1"),
            ("verify_code", &answer),
            ("verify_code_id", &captcha_id),
            ("timestamp", &now().to_string()),
        ])
        .await?;
    let info = &reply["user_info"];
    eprintln!(
        "logged in; the phone's XMPP account is {} (password in user_info.jid_pwd), token valid until {}",
        info["jid"], reply["expires_at"]
    );
    println!("user_name={user}");
    println!("jid={}", info["jid"].as_str().unwrap_or_default());
    println!("access_token={token}");
    // The phone's own token requests: its token and its name.
    let own = [
        ("access_token", token.as_str()),
        ("user_name", user.as_str()),
    ];
    let mine = |path: &'static str| api.ok(path, &own, false);

    // 3. Pair with the device: redeem the token it shows, or issue one for it to redeem.
    match &args.bind_token {
        Some(bind_token) => {
            let names = json!([args.device]).to_string();
            let reply = api
                .call(
                    "/set_user_banding",
                    &[
                        ("access_token", &token),
                        ("user_name", &user),
                        ("bind_token", bind_token),
                        ("user_name_ls", &names),
                    ],
                    false,
                )
                .await?;
            match code(&reply) {
                0 => eprintln!("bound {} to {user}", args.device),
                109 => eprintln!("{} was bound to {user} already", args.device),
                c => {
                    let why = reply
                        .get("reason")
                        .or_else(|| reply.get("failed_ls"))
                        .map(Value::to_string);
                    return Err(format!(
                        "{} ({})",
                        failure("set_user_banding", c),
                        why.unwrap_or_else(|| "nothing bound".into())
                    ));
                }
            }
        }
        None => {
            let reply = mine("/get_bind_token").await?;
            let bind_token = reply["bind_token"].as_str().unwrap_or_default();
            eprintln!(
                "bind token issued (show it to {} as a QR code; valid until {}): \
                 device_client --redeem={bind_token} {}",
                args.device, reply["expires_at"], args.device
            );
            println!("bind_token={bind_token}");
        }
    }

    // 4. The phone's roster as the XMPP server holds it.
    let reply = mine("/get_user_banding").await?;
    let items = reply["roster_item"].as_array().cloned().unwrap_or_default();
    eprintln!("{user}'s contacts: {}", items.len());
    for item in &items {
        println!(
            "roster_item jid={} user_name={} type={} subscription={} nickname={} groups={}",
            item["jid"].as_str().unwrap_or_default(),
            item["user_name"].as_str().unwrap_or("-"),
            item["type"],
            item["subscriptionType"].as_str().unwrap_or_default(),
            item["nickname"].as_str().unwrap_or_default(),
            item["groups"],
        );
    }
    Ok(())
}

impl Api {
    /// A new captcha: its id and its answer (from REGISTER_CAPTCHA_ANSWER, or asked for).
    async fn captcha(&self) -> Result<(String, String), String> {
        let r = self
            .http
            .get(format!("{}/verify_code", self.url))
            .send()
            .await
            .map_err(|e| format!("verify_code: {e}"))?;
        let status = r.status();
        let id = common::header(&r, "x-verify-code-id");
        let png = r.bytes().await.map_err(|e| format!("verify_code: {e}"))?;
        let Some(id) = id.filter(|_| status.is_success()) else {
            return Err(format!(
                "verify_code: HTTP {status}: {}",
                String::from_utf8_lossy(&png)
            ));
        };
        let answer = match std::env::var("REGISTER_CAPTCHA_ANSWER") {
            Ok(a) if !a.is_empty() => a,
            _ => {
                std::fs::write("captcha.png", &png).map_err(|e| format!("captcha.png: {e}"))?;
                eprint!("captcha saved to captcha.png; type what it shows: ");
                std::io::stderr().flush().ok();
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|e| e.to_string())?;
                line.trim().to_owned()
            }
        };
        Ok((id, answer))
    }
}
