//! The public face of the crate: [`Xmpp`], a cheap-to-clone handle the service calls for every
//! XMPP operation. It owns the component link and the c2s session pool, and dispatches each
//! operation to the configured mode.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{LinkState, Party, RosterEntry, XmppConfig, XmppError};

struct Inner {
    cfg: XmppConfig,
    link: watch::Receiver<LinkState>,
    #[allow(dead_code)]
    shutdown: CancellationToken,
}

/// Handle to the XMPP side: component link, account provisioning, bindings, rosters.
#[derive(Clone)]
pub struct Xmpp {
    inner: Arc<Inner>,
}

impl Xmpp {
    /// Installs the ring crypto provider if none, spawns the component link task (reconnecting with
    /// exponential backoff and jitter until `shutdown` is cancelled) and returns at once.
    pub fn start(cfg: XmppConfig, shutdown: CancellationToken) -> Xmpp {
        let (_tx, rx) = watch::channel(LinkState::Down);
        Xmpp { inner: Arc::new(Inner { cfg, link: rx, shutdown }) }
    }

    /// Current state of the component link.
    pub fn link_state(&self) -> LinkState {
        *self.inner.link.borrow()
    }

    /// A receiver that sees every change of the link state.
    pub fn link_watch(&self) -> watch::Receiver<LinkState> {
        self.inner.link.clone()
    }

    /// Successful (re)connections so far, and failed attempts.
    pub fn link_stats(&self) -> (u64, u64) {
        (0, 0)
    }

    /// The last reason the link went down or failed to come up, if any.
    pub fn last_link_error(&self) -> Option<String> {
        None
    }

    /// The configuration this handle was started with.
    pub fn config(&self) -> &XmppConfig {
        &self.inner.cfg
    }

    /// Bare JID string for a node: `node@domain`.
    pub fn jid_of(&self, node: &str) -> String {
        format!("{node}@{}", self.inner.cfg.domain)
    }

    /// Creates the account `node@domain` with `password`. [`XmppError::Conflict`] when it exists.
    pub async fn create_account(&self, node: &str, password: &str) -> Result<(), XmppError> {
        let _ = (node, password);
        todo!()
    }

    /// Deletes the account. [`XmppError::NotFound`] when it does not exist.
    pub async fn delete_account(&self, node: &str, password: &str) -> Result<(), XmppError> {
        let _ = (node, password);
        todo!()
    }

    /// Makes `a` and `b` mutual contacts (`both` on both rosters).
    pub async fn bind(&self, a: &Party, b: &Party) -> Result<(), XmppError> {
        let _ = (a, b);
        todo!()
    }

    /// Removes each from the other's roster.
    pub async fn unbind(&self, a: &Party, b: &Party) -> Result<(), XmppError> {
        let _ = (a, b);
        todo!()
    }

    /// The roster of `who` as the server holds it.
    pub async fn roster(&self, who: &Party) -> Result<Vec<RosterEntry>, XmppError> {
        let _ = who;
        todo!()
    }

    /// Diagnostics: the handshake works, then a probe add-user + delete-user.
    pub async fn probe(&self) -> Result<(), XmppError> {
        todo!()
    }
}

/// Validates a node before anything is sent.
pub fn validate_node(node: &str) -> Result<(), XmppError> {
    let _ = node;
    todo!()
}

/// One-shot c2s login as `node@domain`, then close.
pub async fn check_login(cfg: &XmppConfig, node: &str, password: &str) -> Result<(), XmppError> {
    let _ = (cfg, node, password);
    todo!()
}
