//! A device's session with register's HTTPS API: signed requests, no captcha.
//! register (type 2) → login → get_users (its own user_info) → print the JID → pair: issue a bind
//! token for a phone to redeem (the code it would show on its screen), or with `--redeem=TOKEN`
//! redeem a phone's bind token (the QR code it would have scanned).
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
//! | `--redeem T` | `DEVICE_REDEEM` | unset: issue an 8-digit bind token (`bind_token=…`) for a phone; set: redeem this phone's bind token |
//! | — | `REGISTER_SIGN_KEY` | unset: replies' `sign` not checked; set: every reply's `sign` is verified with it |
//!
//! (No captcha is involved, so `REGISTER_CAPTCHA_ANSWER` is not used here.) Progress goes to
//! standard error; standard output gets `user_name=…`, `jid=…`, `jid_pwd=…`, `access_token=…`, and
//! `bind_token=…` (issued) or `paired=1` (redeemed).
//! Exit status 0 on success, 1 when a step fails.
//!
//! The HTTPS client, `param_sign`, the replies' `sign` check and the result codes' meanings are
//! shared with `phone_client` in `examples/common/mod.rs`.

use std::process::ExitCode;

use clap::Parser;
use serde_json::json;

#[path = "common/mod.rs"]
mod common;

use common::{code, failure};

#[derive(Parser)]
#[command(about = "A device's session with register: signed register, login, get_users")]
struct Args {
    /// The device's user_name (e.g. its serial number)
    #[arg(env = "DEVICE_USER")]
    name: String,
    /// Where the API is and how to reach it
    #[command(flatten)]
    server: common::Server,
    /// The device's password
    #[arg(long, env = "DEVICE_PASSWORD", default_value = "secret123")]
    password: String,
    /// A phone's bind token to redeem (else the device issues one for a phone)
    #[arg(long, env = "DEVICE_REDEEM")]
    redeem: Option<String>,
    /// The device_type recorded at registration
    #[arg(long, env = "DEVICE_TYPE", default_value = "camera")]
    device_type: String,
}

fn main() -> ExitCode {
    common::main("device_client", run)
}

async fn run(args: Args) -> Result<(), String> {
    let api = args.server.api()?;
    let name = args.name.as_str();
    let password = args.password.as_str();

    // 1. Register: type 2 with a device_type; signed instead of a captcha.
    if api
        .register(
            &[
                ("user_name", name),
                ("password", password),
                ("type", "2"),
                ("device_type", &args.device_type),
                ("des", "device_client example"),
            ],
            true,
        )
        .await?
    {
        eprintln!("registered device {name}");
    } else {
        eprintln!("device {name} exists already; logging in");
    }

    // 2. Log in (signed): user_info with the JID and its password, and an access token.
    let (token, reply) = api
        .login(&[("user_name", name), ("password", password), ("type", "2")])
        .await?;
    let info = &reply["user_info"];
    let jid = info["jid"].as_str().unwrap_or_default();
    eprintln!("logged in as {jid}; connect to the XMPP server with it and user_info.jid_pwd");

    // 3. A token request: a device's token is only accepted on signed requests.
    let names = json!([name]).to_string();
    let reply = api
        .ok(
            "/get_users",
            &[("access_token", &token), ("user_name_ls", &names)],
            true,
        )
        .await?;
    let me = &reply["user_info_ls"][0];
    if me["jid"].as_str() != Some(jid) {
        return Err(format!("get_users: unexpected reply {reply}"));
    }
    println!("user_name={name}");
    println!("jid={jid}");
    println!("jid_pwd={}", info["jid_pwd"].as_str().unwrap_or_default());
    println!("access_token={token}");

    // 4. Pair: redeem the phone's bind token (scanned from its QR code), or issue one to show.
    match &args.redeem {
        Some(bind_token) => {
            let reply = api
                .call(
                    "/set_user_banding",
                    &[
                        ("access_token", &token),
                        ("user_name", name),
                        ("bind_token", bind_token),
                    ],
                    true,
                )
                .await?;
            match code(&reply) {
                0 => eprintln!("paired with the phone that issued the token"),
                c => return Err(failure("set_user_banding", c)),
            }
            println!("paired=1");
        }
        None => {
            let reply = api
                .ok(
                    "/get_bind_token",
                    &[
                        ("access_token", &token),
                        ("user_name", name),
                        ("format", "digits"),
                    ],
                    true,
                )
                .await?;
            let bind_token = reply["bind_token"].as_str().unwrap_or_default();
            eprintln!(
                "bind token {bind_token} (show it on the screen; valid until {}): \
                 phone_client --bind-token {bind_token} {name}",
                reply["expires_at"]
            );
            println!("bind_token={bind_token}");
        }
    }
    Ok(())
}
