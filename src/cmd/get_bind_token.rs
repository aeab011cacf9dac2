//! `/get_bind_token`: a single-use token that lets the other side of a pair bind to the caller.
//!
//! The caller (`access_token` + `user_name`) shows the token to the account it wants to be bound
//! to (a QR code, SoftAP, BLE, or typed), which redeems it with `/set_user_banding`. Holding the
//! token is the proof of having the caller's screen or device in hand. With `device` (a device the
//! caller, a phone, is bound to) it is a sharing token: its redeemer is bound to that device.
//!
//! The token is random, stored only as its SHA-256 hash, lives `binding.token_ttl_secs`, and an
//! account keeps at most `binding.max_outstanding_tokens` (issuing one more voids the oldest).
//! The default form is 24 base64url characters (144 bits); `format=digits` gives 8 digits for
//! typing, which `/set_user_banding` protects by limiting failed redemptions per account and by
//! redeeming it only together with its issuer's name.

use serde::Serialize;

use super::reply::Reply;

use crate::app::{App, Call};
use crate::auth::bind_token::{new_digits, new_token};
use crate::auth::crypto;
use crate::error::ApiError;
use crate::lifecycle::pair;
use crate::store::{AccountState, StoreError};
use crate::types::{AccountType, UserName};

#[derive(Serialize)]
struct Issued {
    bind_token: String,
    expires_at: i64,
}

pub async fn run(app: &App, call: &Call) -> Result<Reply, ApiError> {
    let me = app.token_owner_named(call).await?;
    let digits = match call.get("format") {
        None | Some("") | Some("token") => false,
        Some("digits") => true,
        Some(_) => return Err(ApiError::Params("format must be token or digits".into())),
    };
    let device = match call.get("device").filter(|d| !d.is_empty()) {
        None => None,
        Some(name) => {
            let name = UserName::parse(name)?;
            if me.kind == AccountType::Device {
                return Err(ApiError::NotPermitted(
                    "a device shares itself with a plain bind token".into(),
                ));
            }
            // An unknown name answers as a device the caller is not bound to: the reply does
            // not tell a stranger's device from a missing one.
            let not_bound =
                || ApiError::NotPermitted("only a phone bound to a device may share it".into());
            let found = app.store.account_by_name(name.as_str()).await?;
            let d = found
                .filter(|d| d.state == AccountState::Active)
                .ok_or_else(not_bound)?;
            let bound = pair::is_bound(app, me.id, d.id).await?;
            if d.kind != AccountType::Device || !bound {
                return Err(not_bound());
            }
            Some(d.id)
        }
    };
    let now = app.now();
    let expires_at = now + app.cfg.binding.token_ttl_secs as i64;
    // A new draw when the hash is taken: only plausible for the 8-digit form.
    for _ in 0..8 {
        let token = if digits { new_digits() } else { new_token() };
        match app
            .store
            .insert_bind_token(
                crypto::token_hash(&token),
                me.id,
                device,
                expires_at,
                now,
                app.cfg.binding.max_outstanding_tokens,
            )
            .await
        {
            Ok(()) => {
                return Ok(Reply::ok(Issued {
                    bind_token: token,
                    expires_at,
                }))
            }
            Err(StoreError::Exists) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Unknown("no free bind token".into()))
}

#[cfg(test)]
mod tests {
    use super::run;
    use crate::auth::bind_token::plausible;
    use crate::cmd::testkit::{code, Kit};
    use crate::types::AccountType;

    #[tokio::test]
    async fn both_forms_are_issued_with_their_expiry() {
        let (k, _, tp) = Kit::with_account("p", AccountType::Phone).await;
        for (format, len) in [("", 24), ("token", 24), ("digits", 8)] {
            let c = k.call(&[
                ("access_token", &tp),
                ("user_name", "p"),
                ("format", format),
            ]);
            let v = run(&k.app, &c).await.unwrap().into_json();
            assert_eq!(v["result"], 0);
            let t = v["bind_token"].as_str().unwrap();
            assert!(t.len() == len && plausible(t), "{t}");
            let ttl = k.app.cfg.binding.token_ttl_secs as i64;
            assert_eq!(v["expires_at"], k.app.now() + ttl);
        }
        let c = k.call(&[("access_token", &tp), ("user_name", "p"), ("format", "qr")]);
        assert_eq!(code(&run(&k.app, &c).await), 2);
        let c = k.call(&[("access_token", "nope"), ("user_name", "p")]);
        assert_eq!(code(&run(&k.app, &c).await), 4);
        let c = k.call(&[("access_token", &tp), ("user_name", "q")]);
        assert_eq!(code(&run(&k.app, &c).await), 100);
    }

    #[tokio::test]
    async fn only_a_phone_bound_to_a_device_may_share_it() {
        let (k, (p, tp), (d, td)) = Kit::with_phone_and_device().await;
        k.account("d2", AccountType::Device).await;
        let share = |device: &'static str| {
            k.call(&[
                ("access_token", &tp),
                ("user_name", "p"),
                ("device", device),
            ])
        };
        assert_eq!(code(&run(&k.app, &share("d")).await), 100, "not bound yet");
        assert_eq!(code(&run(&k.app, &share("nobody")).await), 100);
        k.bind(&p, &d).await;
        assert_eq!(code(&run(&k.app, &share("d")).await), 0);
        assert_eq!(code(&run(&k.app, &share("d2")).await), 100);
        let c = k.signed(&[("access_token", &td), ("user_name", "d"), ("device", "d2")]);
        assert_eq!(code(&run(&k.app, &c).await), 100, "a device shares itself");
    }
}
