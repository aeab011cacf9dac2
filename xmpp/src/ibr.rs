//! XEP-0077 in-band registration over a c2s stream before authentication, and account removal
//! (`<remove/>`) while logged in as the user. Used in the `ibr` accounts mode, for servers that
//! allow in-band registration. A password is never sent on a stream without TLS unless
//! `allow_plain_without_tls` says so (the same rule as SASL PLAIN).

use xmpp_parsers::ibr::{LegacyQuery, RemoveQuery};
use xmpp_parsers::iq::{Iq, IqSetPayload};
use xmpp_parsers::stanza_error::DefinedCondition;

use crate::c2s::Session;
use crate::pool::Pool;
use crate::stanza::{error_text, iq_error};
use crate::XmppError;

/// Registers `node` with `password`; [`XmppError::Conflict`] when the name is taken.
pub(crate) async fn register(c2s: &Pool, node: &str, password: &str) -> Result<(), XmppError> {
    let s = c2s.open().await?;
    let s = require_tls(s, c2s, "in-band registration").await?;
    if !s.offers_registration() {
        tracing::debug!("server does not advertise in-band registration; trying anyway");
    }
    match set_once(s, credentials(node, password)).await? {
        Iq::Error { error, .. } => Err(match error.defined_condition {
            DefinedCondition::Conflict => XmppError::Conflict,
            _ => XmppError::Refused(error_text(&error)),
        }),
        _ => Ok(()),
    }
}

/// Logs in as `node` with `old` and changes its password to `new` (XEP-0077 §3.3). Refuses to
/// send the new password on a stream without TLS unless `allow_plain_without_tls` says so.
pub(crate) async fn change_password(
    c2s: &Pool,
    node: &str,
    old: &str,
    new: &str,
) -> Result<(), XmppError> {
    let s = c2s.login(node, old).await?;
    let s = require_tls(s, c2s, "a password change").await?;
    accepted(set_once(s, credentials(node, new)).await?)
}

/// Logs in as `node` and removes the account.
pub(crate) async fn remove(c2s: &Pool, node: &str, password: &str) -> Result<(), XmppError> {
    let s = c2s.login(node, password).await?;
    accepted(set_once(s, RemoveQuery { remove: true }).await?)
}

/// `s` back when a password may go over it: it has TLS, or `allow_plain_without_tls` is on.
/// Otherwise the session is closed and `what` refused.
async fn require_tls(s: Session, c2s: &Pool, what: &str) -> Result<Session, XmppError> {
    if s.is_tls() || c2s.allows_plain() {
        return Ok(s);
    }
    s.close().await;
    Err(XmppError::SessionFailed(format!(
        "refusing {what} without TLS (allow_plain_without_tls is off)"
    )))
}

/// The XEP-0077 query carrying `node` and its (new) password.
fn credentials(node: &str, password: &str) -> LegacyQuery {
    LegacyQuery {
        username: Some(node.to_owned()),
        password: Some(password.to_owned()),
        ..LegacyQuery::default()
    }
}

/// Sends one IQ set with `payload` on `s`, closes the session, and returns the answer.
async fn set_once(mut s: Session, payload: impl IqSetPayload) -> Result<Iq, XmppError> {
    let reply = s.iq(Iq::from_set("", payload)).await;
    s.close().await;
    reply
}

/// Ok for a result, the server's refusal for an error.
fn accepted(reply: Iq) -> Result<(), XmppError> {
    match reply {
        Iq::Error { error, .. } => Err(iq_error(&error)),
        _ => Ok(()),
    }
}
