//! The one table of endpoints both adapters read: path, metric label, rate-limit budget,
//! transports and the command that answers it.
//!
//! The HTTPS adapter serves the rows with [`Transports::https`], the TCP adapter those with
//! [`Transports::tcp`]; neither keeps a route list of its own. A command answers with a typed
//! outcome — `Ok(reply)` (result 0) or `Err(ApiError)` (its [`code`](ApiError::code)) — so no
//! adapter reads `result` back out of the JSON to label its metrics.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;

use crate::app::{App, Call};
use crate::auth::ratelimit::Budget;
use crate::cmd;
use crate::cmd::reply::Reply;
use crate::error::ApiError;

/// A command's future, boxed so that the table can hold every command.
pub type Answer<'a> = Pin<Box<dyn Future<Output = Result<Reply, ApiError>> + Send + 'a>>;

/// A command as the table holds it.
pub type Command = for<'a> fn(&'a App, &'a Call) -> Answer<'a>;

/// Which listeners offer an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transports {
    Https,
    Tcp,
    Both,
}

impl Transports {
    pub fn https(self) -> bool {
        matches!(self, Transports::Https | Transports::Both)
    }
    pub fn tcp(self) -> bool {
        matches!(self, Transports::Tcp | Transports::Both)
    }
}

/// How an endpoint answers.
#[derive(Clone, Copy)]
pub enum Kind {
    /// A JSON reply from a command.
    Json(Command),
    /// `/verify_code`: a PNG challenge (HTTPS only), see [`cmd::verify_code`].
    Captcha,
}

/// One endpoint.
#[derive(Clone, Copy)]
pub struct Endpoint {
    pub path: &'static str,
    /// The `endpoint` label of its metrics over HTTPS (the path).
    pub metric: &'static str,
    /// The `endpoint` label of its metrics over TCP (`tcp/…`), empty when not offered there.
    pub tcp_metric: &'static str,
    /// Its per-network rate-limit budget on the HTTPS listener (the TCP listener admits only
    /// the backends of `tcp.allow`, which are not rate-limited).
    pub budget: Budget,
    pub transports: Transports,
    pub kind: Kind,
    /// Its audit record: the action's name and what a success did (`service::audit`); `None`:
    /// not audited (reads, captchas, token checks).
    pub audit: Option<(&'static str, &'static str)>,
}

macro_rules! command {
    ($m:ident) => {
        Kind::Json(|app, call| Box::pin(cmd::$m::run(app, call)))
    };
}

const fn https(path: &'static str, budget: Budget, kind: Kind) -> Endpoint {
    Endpoint {
        path,
        metric: path,
        tcp_metric: "",
        budget,
        transports: Transports::Https,
        kind,
        audit: None,
    }
}

/// [`https`], audited as `action`; `done` says what a success did.
const fn audited(
    path: &'static str,
    budget: Budget,
    kind: Kind,
    action: &'static str,
    done: &'static str,
) -> Endpoint {
    Endpoint {
        audit: Some((action, done)),
        ..https(path, budget, kind)
    }
}

/// Every endpoint (SPEC §3 for HTTPS, docs/TCP.md for TCP). The endpoints that cost CPU or the
/// XMPP server's work (a c2s bind is two SCRAM logins), or invite guessing (passwords, bind
/// tokens), have the smaller budget.
pub static ENDPOINTS: &[Endpoint] = &[
    https("/verify_code", Budget::Costly, Kind::Captcha),
    audited(
        "/login",
        Budget::Costly,
        command!(login),
        "login",
        "token issued",
    ),
    audited(
        "/register",
        Budget::Costly,
        command!(register),
        "register",
        "account created",
    ),
    audited(
        "/cancel",
        Budget::Costly,
        command!(cancel),
        "cancel",
        "account deleted, tokens revoked",
    ),
    Endpoint {
        tcp_metric: "tcp/get_users",
        transports: Transports::Both,
        ..https("/get_users", Budget::Api, command!(get_users))
    },
    audited(
        "/set_user_banding",
        Budget::Costly,
        command!(bind),
        "bind",
        "",
    ),
    audited(
        "/set_user_unbanding",
        Budget::Costly,
        command!(unbind),
        "unbind",
        "",
    ),
    https("/get_user_banding", Budget::Api, command!(get_user_banding)),
    audited(
        "/get_bind_token",
        Budget::Api,
        command!(get_bind_token),
        "bind_token.issue",
        "bind token issued",
    ),
    audited(
        "/logout",
        Budget::Api,
        command!(logout),
        "logout",
        "token revoked",
    ),
    audited(
        "/change_password",
        Budget::Costly,
        command!(change_password),
        "change_password",
        "password changed, tokens revoked",
    ),
    audited(
        "/renew_jid_pwd",
        Budget::Costly,
        command!(renew_jid_pwd),
        "renew_jid_pwd",
        "XMPP password renewed",
    ),
    Endpoint {
        metric: "",
        tcp_metric: "tcp/verify_access_token",
        transports: Transports::Tcp,
        // Never an error: an invalid token is a reply (`validate: false`) with its code.
        ..https(
            "/verify_access_token",
            Budget::Api,
            Kind::Json(|app, call| {
                Box::pin(async move { Ok(cmd::verify_token::run(app, call).await) })
            }),
        )
    },
];

/// The HTTPS listener's paths, in table order.
pub static HTTPS_PATHS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    ENDPOINTS
        .iter()
        .filter(|e| e.transports.https())
        .map(|e| e.path)
        .collect()
});

/// The endpoint at `path` offered over HTTPS, with its index in [`ENDPOINTS`].
pub fn https_endpoint(path: &str) -> Option<(usize, &'static Endpoint)> {
    ENDPOINTS
        .iter()
        .enumerate()
        .find(|(_, e)| e.path == path && e.transports.https())
}

/// The endpoint at `path` offered over TCP.
pub fn tcp_endpoint(path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS
        .iter()
        .find(|e| e.path == path && e.transports.tcp())
}

/// The result code of a command's outcome: its reply's (0, or the code a partial or refusing
/// reply carries), the error's otherwise.
pub fn reply_code(outcome: &Result<Reply, ApiError>) -> i64 {
    match outcome {
        Ok(r) => r.code(),
        Err(e) => e.code(),
    }
}

/// The result code of a typed outcome: 0 for a reply, the error's code otherwise.
pub fn code_of<T>(outcome: &Result<T, ApiError>) -> i64 {
    match outcome {
        Ok(_) => 0,
        Err(e) => e.code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_offered_once_per_transport_with_labels() {
        for (i, e) in ENDPOINTS.iter().enumerate() {
            assert!(e.path.starts_with('/'), "{}", e.path);
            assert!(
                ENDPOINTS[i + 1..].iter().all(|o| o.path != e.path),
                "{} twice",
                e.path
            );
            assert_eq!(e.transports.https(), !e.metric.is_empty(), "{}", e.path);
            assert_eq!(e.transports.tcp(), !e.tcp_metric.is_empty(), "{}", e.path);
        }
        assert_eq!(HTTPS_PATHS.len(), 12);
        assert!(tcp_endpoint("/get_users").is_some());
        assert!(tcp_endpoint("/login").is_none());
        assert!(https_endpoint("/verify_access_token").is_none());
        assert_eq!(
            https_endpoint("/register").unwrap().1.budget,
            Budget::Costly
        );
        assert_eq!(https_endpoint("/get_users").unwrap().1.budget, Budget::Api);
    }

    #[test]
    fn codes_come_from_the_typed_outcome() {
        assert_eq!(code_of::<()>(&Ok(())), 0);
        assert_eq!(code_of::<()>(&Err(ApiError::AccessToken)), 4);
        assert_eq!(code_of::<()>(&Err(ApiError::Db("x".into()))), 3);
    }
}
