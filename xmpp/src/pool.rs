//! Reuse of logged-in c2s sessions per JID.
//!
//! Consecutive operations on the same JID (bind, then read its roster…) share one session instead
//! of paying a login each time. A session is leased exclusively ([`Pool::checkout`]) and given
//! back ([`Pool::checkin`]); one idle for `session_idle` is closed by [`Pool::reap`]. A reused
//! session can have died while idle: callers replace it once with [`Pool::fresh`] and retry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::ClientConfig;
use tokio::time::Instant;

use crate::c2s::Session;
use crate::{C2sTls, XmppConfig, XmppError};

struct Idle {
    session: Session,
    password: String,
    since: Instant,
}

/// A session leased from the pool.
pub(crate) struct Lease {
    pub session: Session,
    pub node: String,
    password: String,
    /// Taken from the pool (may have died while idle) rather than freshly logged in.
    pub reused: bool,
}

/// Idle sessions by node.
pub(crate) struct Pool {
    cfg: XmppConfig,
    tls: Mutex<Option<Arc<ClientConfig>>>,
    idle: Mutex<HashMap<String, Vec<Idle>>>,
}

impl Pool {
    pub(crate) fn new(cfg: XmppConfig) -> Pool {
        Pool {
            cfg,
            tls: Mutex::new(None),
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// The TLS client configuration, built once (None when TLS is off).
    pub(crate) fn tls(&self) -> Result<Option<Arc<ClientConfig>>, XmppError> {
        if self.cfg.c2s_tls == C2sTls::Off {
            return Ok(None);
        }
        let mut slot = self.tls.lock().expect("lock");
        if slot.is_none() {
            *slot = Some(crate::tls::client_config(&self.cfg)?);
        }
        Ok(slot.clone())
    }

    /// A new session, not logged in and not pooled (in-band registration).
    pub(crate) async fn open(&self) -> Result<Session, XmppError> {
        Session::open(&self.cfg, self.tls()?).await
    }

    /// A new session logged in as `node`, not taken from the pool.
    pub(crate) async fn login(&self, node: &str, password: &str) -> Result<Session, XmppError> {
        Session::login(&self.cfg, self.tls()?, node, password).await
    }

    /// Whether a password may go over a stream without TLS (`allow_plain_without_tls`).
    pub(crate) fn allows_plain(&self) -> bool {
        self.cfg.allow_plain_without_tls
    }

    /// A logged-in session for `node`: an idle one if its password matches, else a new login.
    pub(crate) async fn checkout(&self, node: &str, password: &str) -> Result<Lease, XmppError> {
        let reused = {
            let mut idle = self.idle.lock().expect("lock");
            let list = idle.entry(node.to_owned()).or_default();
            let pos = list
                .iter()
                .position(|i| i.password == password && i.session.is_alive());
            pos.map(|p| list.swap_remove(p))
        };
        if let Some(mut i) = reused {
            i.session.take_inbox();
            return Ok(Lease {
                session: i.session,
                node: node.to_owned(),
                password: i.password,
                reused: true,
            });
        }
        let session = self.login(node, password).await?;
        Ok(Lease {
            session,
            node: node.to_owned(),
            password: password.to_owned(),
            reused: false,
        })
    }

    /// Replaces a lease's (dead) session by a new login.
    pub(crate) async fn fresh(&self, lease: Lease) -> Result<Lease, XmppError> {
        tokio::spawn(lease.session.close());
        let session = self.login(&lease.node, &lease.password).await?;
        Ok(Lease {
            session,
            node: lease.node,
            password: lease.password,
            reused: false,
        })
    }

    /// Gives a session back for reuse (a dead one is closed instead).
    pub(crate) fn checkin(&self, lease: Lease) {
        if !lease.session.is_alive() {
            tokio::spawn(lease.session.close());
            return;
        }
        let idle = Idle {
            session: lease.session,
            password: lease.password,
            since: Instant::now(),
        };
        self.idle
            .lock()
            .expect("lock")
            .entry(lease.node)
            .or_default()
            .push(idle);
    }

    /// Closes every idle session of `node` (after its account was created or deleted).
    pub(crate) fn forget(&self, node: &str) {
        let gone = self
            .idle
            .lock()
            .expect("lock")
            .remove(node)
            .unwrap_or_default();
        for i in gone {
            tokio::spawn(i.session.close());
        }
    }

    /// Closes sessions idle for longer than `session_idle`.
    pub(crate) async fn reap(&self) {
        let now = Instant::now();
        let mut old = Vec::new();
        {
            let mut idle = self.idle.lock().expect("lock");
            for list in idle.values_mut() {
                let (keep, drop): (Vec<_>, Vec<_>) = list
                    .drain(..)
                    .partition(|i| now.duration_since(i.since) < self.cfg.session_idle);
                *list = keep;
                old.extend(drop);
            }
            idle.retain(|_, l| !l.is_empty());
        }
        for i in old {
            i.session.close().await;
        }
    }

    /// Closes every idle session (shutdown).
    pub(crate) async fn close_all(&self) {
        let all: Vec<Idle> = self
            .idle
            .lock()
            .expect("lock")
            .drain()
            .flat_map(|(_, l)| l)
            .collect();
        for i in all {
            i.session.close().await;
        }
    }

    /// Number of idle sessions (tests, metrics).
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().expect("lock").values().map(Vec::len).sum()
    }
}
