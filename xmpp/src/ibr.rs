//! XEP-0077 in-band registration over a c2s stream before authentication, and account removal
//! (`<remove/>`) while logged in as the user. Used in the `ibr` accounts mode, for servers that
//! allow in-band registration. A password is never sent on a stream without TLS unless
//! `allow_plain_without_tls` says so (the same rule as SASL PLAIN).

use std::sync::Arc;

use rustls::ClientConfig;
use xmpp_parsers::ibr::{LegacyQuery, RemoveQuery};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::stanza_error::DefinedCondition;

use crate::c2s::Session;
use crate::stanza::{error_text, iq_error};
use crate::{XmppConfig, XmppError};

/// Registers `node` with `password`; [`XmppError::Conflict`] when the name is taken.
pub(crate) async fn register(
    cfg: &XmppConfig,
    tls: Option<Arc<ClientConfig>>,
    node: &str,
    password: &str,
) -> Result<(), XmppError> {
    let mut s = Session::open(cfg, tls).await?;
    if !s.is_tls() && !cfg.allow_plain_without_tls {
        s.close().await;
        return Err(XmppError::SessionFailed(
            "refusing in-band registration without TLS (allow_plain_without_tls is off)".into(),
        ));
    }
    if !s.offers_registration() {
        tracing::debug!("server does not advertise in-band registration; trying anyway");
    }
    let query = LegacyQuery {
        username: Some(node.to_owned()),
        password: Some(password.to_owned()),
        ..LegacyQuery::default()
    };
    let reply = s.iq(Iq::from_set("", query)).await;
    s.close().await;
    match reply? {
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
    cfg: &XmppConfig,
    tls: Option<Arc<ClientConfig>>,
    node: &str,
    old: &str,
    new: &str,
) -> Result<(), XmppError> {
    let mut s = Session::login(cfg, tls, node, old).await?;
    if !s.is_tls() && !cfg.allow_plain_without_tls {
        s.close().await;
        return Err(XmppError::SessionFailed(
            "refusing a password change without TLS (allow_plain_without_tls is off)".into(),
        ));
    }
    let query = LegacyQuery {
        username: Some(node.to_owned()),
        password: Some(new.to_owned()),
        ..LegacyQuery::default()
    };
    let reply = s.iq(Iq::from_set("", query)).await;
    s.close().await;
    match reply? {
        Iq::Error { error, .. } => Err(iq_error(&error)),
        _ => Ok(()),
    }
}

/// Logs in as `node` and removes the account.
pub(crate) async fn remove(
    cfg: &XmppConfig,
    tls: Option<Arc<ClientConfig>>,
    node: &str,
    password: &str,
) -> Result<(), XmppError> {
    let mut s = Session::login(cfg, tls, node, password).await?;
    let reply = s.iq(Iq::from_set("", RemoveQuery { remove: true })).await;
    s.close().await;
    match reply? {
        Iq::Error { error, .. } => Err(iq_error(&error)),
        _ => Ok(()),
    }
}
