//! The service's shared state and the request context every command receives.
//!
//! [`App`] holds the store, the XMPP port, the hasher, the secrets and the policy knobs; the
//! transports (`http_handler`, `tcp_handler`) turn their requests into a [`Call`] and hand it to one
//! command in `cmd/`. Nothing here knows about sockets or XML.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::Value;

use crate::auth::crypto;
use crate::auth::passwords::Hasher;
use crate::auth::ratelimit::RateLimiter;
use crate::clock::Clock;
use crate::error::ApiError;
use crate::lifecycle::port::XmppPort;
use crate::service::config::Config;
use crate::service::metrics::Metrics;
use crate::service::secrets::Secrets;
use crate::store::jid_pwd::JidPwdStore;
use crate::store::nonces::NonceStore;
use crate::store::{Account, Store};

/// Everything a command may use.
pub struct App {
    pub cfg: Config,
    pub store: Arc<dyn Store>,
    /// Nonces of version 2 signatures (the same database as `store`).
    pub nonces: Arc<dyn NonceStore>,
    /// Pending XMPP passwords of `/renew_jid_pwd` (the same database as `store`).
    pub jid_pwds: Arc<dyn JidPwdStore>,
    /// The XMPP server, through the core's port (timed and counted for metrics).
    pub xmpp: Arc<dyn XmppPort>,
    pub hasher: Hasher,
    pub secrets: Secrets,
    pub clock: Arc<dyn Clock>,
    pub limiter: RateLimiter,
    pub metrics: Arc<Metrics>,
    /// The audit trail (`service::audit`).
    pub audit: crate::service::audit::Audit,
}

/// An account as `/login` and `/get_users` show it, borrowed from the account.
///
/// The fields are declared in the order of their JSON names, so that serde_json writes it in the
/// canonical form a signature covers, as it is (`App::write_user_info`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserInfo<'a> {
    pub des: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_type: Option<&'a str>,
    pub jid: &'a str,
    /// Only to the account itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jid_pwd: Option<&'a str>,
    #[serde(rename = "type")]
    pub kind: i64,
    pub user_name: &'a str,
}

/// One request, whatever transport it came by.
#[derive(Debug, Clone)]
pub struct Call {
    /// Parameters in the order sent (duplicates already refused by the transport).
    pub params: Vec<(String, String)>,
    /// Captcha challenge id from the cookie or the `X-Verify-Code-Id` header.
    pub captcha_id: Option<String>,
    pub client_ip: IpAddr,
    /// Came over the TCP API: the caller is an IM backend admitted by `tcp.allow`, not the
    /// device itself, so a device's token needs no `param_sign` there (still checked if sent).
    pub via_tcp: bool,
    /// The method and path, which a version 2 `param_sign` covers.
    pub route: Route,
    /// Set by [`App::check_param_sign`] once a version 2 signature held and its nonce was spent:
    /// only then does the reply name the request (`cmd::reply::with_nonce`).
    pub signed: std::sync::OnceLock<SignedRequest>,
}

/// A request whose version 2 signature was verified and whose nonce was spent.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub nonce: String,
    /// [`crypto::request_digest`] of the request's base string.
    pub request_sha256: String,
}

/// How a request came: the method (`GET`, `POST`; `TCP` for the TCP API) and the path.
#[derive(Debug, Clone, Default)]
pub struct Route {
    pub method: &'static str,
    pub path: String,
}

impl Call {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter that must be present and non-empty.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::Params(format!("{name} is required"))),
        }
    }
}

impl App {
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Sign a reply object.
    pub fn sign(&self, reply: Value) -> Value {
        self.secrets.sign_key.sign(reply)
    }

    /// Verify `param_sign`: required when `required`, checked whenever sent. Version 2
    /// (`sign_v=2`) needs `timestamp` within the window and a `nonce` not seen before, which it
    /// spends; version 1 is refused unless `security.accept_v1_signatures`.
    pub async fn check_param_sign(&self, call: &Call, required: bool) -> Result<(), ApiError> {
        let Some(sent) = call.get("param_sign") else {
            return if required {
                Err(ApiError::Sign)
            } else {
                Ok(())
            };
        };
        let window = self.cfg.security.timestamp_window_secs as i64;
        let in_window = |ts: &str| -> Result<i64, ApiError> {
            let ts: i64 = ts.parse().map_err(|_| ApiError::Sign)?;
            // checked_sub: a timestamp near i64::MIN must not wrap into the window.
            if self.now().checked_sub(ts).is_none_or(|d| d.abs() > window) {
                return Err(ApiError::Sign);
            }
            Ok(ts)
        };
        match call.get(crypto::SIGN_VERSION.0) {
            Some(v) if v == crypto::SIGN_VERSION.1 => {
                let ts = in_window(call.get("timestamp").ok_or(ApiError::Sign)?)?;
                let nonce = call
                    .get("nonce")
                    .filter(|n| crypto::valid_nonce(n))
                    .ok_or(ApiError::Sign)?;
                let Some(request_sha256) = crypto::verified_v2_request(
                    &self.secrets.app_keys,
                    call.route.method,
                    &call.route.path,
                    &call.params,
                    sent,
                ) else {
                    return Err(ApiError::Sign);
                };
                // Spent only once the signature holds: nobody else can fill the table.
                if !self
                    .nonces
                    // Kept a window longer than the timestamp is accepted: an instance whose
                    // clock runs ahead (PostgreSQL, several instances) prunes it only after every
                    // instance within a window of skew has stopped accepting it.
                    .spend_nonce(nonce.to_owned(), ts + 2 * window, self.now())
                    .await?
                {
                    tracing::info!(nonce, "param_sign: nonce seen before (a replay)");
                    return Err(ApiError::Sign);
                }
                // The reply names this request: its nonce, now spent, and its base string.
                let _ = call.signed.set(SignedRequest {
                    nonce: nonce.to_owned(),
                    request_sha256,
                });
                Ok(())
            }
            Some(_) => Err(ApiError::Sign),
            None => {
                if !self.cfg.security.accept_v1_signatures {
                    return Err(ApiError::Sign);
                }
                if !crypto::verify_param_sign(&self.secrets.app_keys, &call.params, sent) {
                    return Err(ApiError::Sign);
                }
                if let Some(ts) = call.get("timestamp") {
                    in_window(ts)?;
                }
                Ok(())
            }
        }
    }

    /// Check and spend the captcha answer sent in `verify_code`.
    pub async fn check_captcha(&self, call: &Call) -> Result<(), ApiError> {
        let answer = call.get("verify_code").filter(|a| !a.is_empty());
        let id = call
            .get("verify_code_id")
            .map(str::to_owned)
            .or_else(|| call.captcha_id.clone());
        let (Some(answer), Some(id)) = (answer, id) else {
            self.metrics.captcha_failed();
            return Err(ApiError::VerifyCode);
        };
        if id.len() > 64 {
            return Err(ApiError::VerifyCode);
        }
        let stored = self.store.take_captcha(id).await?;
        let ok = match stored {
            Some((expected, expires_at)) if expires_at > self.now() => {
                let given = answer.trim().to_lowercase();
                given.len() == expected.len()
                    && subtle::ConstantTimeEq::ct_eq(given.as_bytes(), expected.as_bytes()).into()
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            self.metrics.captcha_failed();
            Err(ApiError::VerifyCode)
        }
    }

    /// Humans answer a captcha; devices sign. `param_sign` is checked whenever sent.
    pub async fn check_human_or_device(
        &self,
        call: &Call,
        device: bool,
        sign_required: bool,
    ) -> Result<(), ApiError> {
        self.check_param_sign(call, device || sign_required).await?;
        if !device {
            self.check_captcha(call).await?;
        }
        Ok(())
    }

    /// The account owning the `access_token` parameter. Devices must also sign their requests.
    pub async fn token_owner(&self, call: &Call) -> Result<(Arc<Account>, i64), ApiError> {
        let (account, expires) = self.token_holder(call).await?;
        let device = account.kind == crate::types::AccountType::Device;
        self.check_param_sign(call, device && !call.via_tcp).await?;
        Ok((account, expires))
    }

    /// [`token_owner`](Self::token_owner) without the signature check, for a command that checks
    /// the signature itself (`/change_password`, through the login checks).
    pub async fn token_holder(&self, call: &Call) -> Result<(Arc<Account>, i64), ApiError> {
        let token = call
            .get("access_token")
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::AccessToken)?;
        if token.len() > 128 {
            return Err(ApiError::AccessToken);
        }
        let found = self
            .store
            .token_account(crypto::token_hash(token), self.now())
            .await?;
        let (account, expires) = found.ok_or(ApiError::AccessToken)?;
        // Backends on the TCP allow-list are not limited per account: their token checks and
        // lookups serve every user.
        if !call.via_tcp && self.limiter.allow_account(account.id).is_err() {
            return Err(ApiError::RateLimited);
        }
        Ok((account, expires))
    }

    /// The token owner, who must be the account named by `user_name` (bind, unbind, list).
    pub async fn token_owner_named(&self, call: &Call) -> Result<Arc<Account>, ApiError> {
        let name = crate::types::UserName::parse(call.required("user_name")?)?;
        let (me, _) = self.token_owner(call).await?;
        if me.user_name != name.as_str() {
            return Err(ApiError::NotPermitted(
                "access_token belongs to another user".into(),
            ));
        }
        Ok(me)
    }

    /// The account's `jid_pwd`, decrypted.
    pub fn jid_pwd(&self, a: &Account) -> Result<String, ApiError> {
        self.opened_jid_pwd(a).map(str::to_owned)
    }

    /// The account's `jid_pwd`, decrypted once per copy of the account (see [`Memo`]).
    ///
    /// [`Memo`]: crate::store::Memo
    fn opened_jid_pwd<'a>(&self, a: &'a Account) -> Result<&'a str, ApiError> {
        if let Some(p) = a.memo.jid_pwd.get() {
            return Ok(p);
        }
        let opened = crypto::open(&self.secrets.encryption_key, &a.jid_node, &a.jid_pwd)
            .ok_or(ApiError::NoJid)?;
        Ok(a.memo.jid_pwd.get_or_init(|| opened))
    }

    /// The account's full JID, worked out once per copy of the account.
    pub fn jid<'a>(&self, a: &'a Account) -> &'a str {
        a.memo.jid.get_or_init(|| self.xmpp.jid_of(&a.jid_node))
    }

    /// The account as one side of a binding.
    pub fn party(&self, a: &Account) -> Result<xmpp::Party, ApiError> {
        Ok(xmpp::Party {
            node: a.jid_node.clone(),
            password: self.jid_pwd(a)?,
            nickname: a.user_name.clone(),
            group: a.kind.group_name().to_owned(),
        })
    }

    /// [`App::user_info`] as canonical JSON text, appended to `out`: written once per copy of
    /// the account (see `Memo::info`), `jid_pwd` put in its place when `own`.
    pub fn write_user_info(
        &self,
        a: &Account,
        own: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), ApiError> {
        let jid_pwd = if own {
            Some(self.opened_jid_pwd(a)?)
        } else {
            None
        };
        let (text, at) = match a.memo.info.get() {
            Some(info) => info,
            None => {
                let text = crypto::canonical_text(&self.user_info(a, false)?);
                // The members are in name order (see `UserInfo`): `jid_pwd` goes right before
                // `type`, the first `,"type":` of the text (a `"` inside a string is escaped,
                // so no string holds that sequence).
                let at = text.find(r#","type":"#).expect("user_info has a type");
                a.memo.info.get_or_init(|| (text.into(), at))
            }
        };
        let (text, at) = (text.as_bytes(), *at);
        let Some(jid_pwd) = jid_pwd else {
            out.extend_from_slice(text);
            return Ok(());
        };
        out.extend_from_slice(&text[..at]);
        out.extend_from_slice(br#","jid_pwd":"#);
        if jid_pwd.bytes().all(|b| b.is_ascii_alphanumeric()) {
            // What the service makes (`account::new_jid_password`: lowercase letters and digits)
            // is a JSON string as it is.
            out.push(b'"');
            out.extend_from_slice(jid_pwd.as_bytes());
            out.push(b'"');
        } else {
            serde_json::to_writer(&mut *out, jid_pwd).expect("writing to a Vec");
        }
        out.extend_from_slice(&text[at..]);
        Ok(())
    }

    /// `user_info` of an account; `jid_pwd` only when `own`.
    pub fn user_info<'a>(&self, a: &'a Account, own: bool) -> Result<UserInfo<'a>, ApiError> {
        Ok(UserInfo {
            des: &a.des,
            device_type: a.device_type.as_deref(),
            jid: self.jid(a),
            jid_pwd: if own {
                Some(self.opened_jid_pwd(a)?)
            } else {
                None
            },
            kind: a.kind.code(),
            user_name: &a.user_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::UserInfo;

    /// serde_json writes a `UserInfo` in the canonical form (names sorted), every field shown.
    #[test]
    fn a_user_info_is_written_in_the_canonical_form() {
        let info = UserInfo {
            des: "d\u{e9}\"",
            device_type: Some("cam"),
            jid: "n@x",
            jid_pwd: Some("p"),
            kind: 2,
            user_name: "u",
        };
        let text = serde_json::to_string(&info).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(text, crate::auth::crypto::canonical_json(&v));
        assert_eq!(v.as_object().unwrap().len(), 6);
    }
}
