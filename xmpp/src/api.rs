//! The public face of the crate: [`Xmpp`], a cheap-to-clone handle the service calls for every
//! XMPP operation. It owns the component link and the c2s session pool and dispatches each
//! operation to the configured mode. Input the server would reject is refused here, before
//! anything is sent ([`validate_node`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::jid::BareJid;

use crate::component::Link;
use crate::pool::{Lease, Pool};
use crate::stanza::random_suffix;
use crate::{adhoc, c2s, ibr, roster, tls};
use crate::{AccountsMode, BindingMode, LinkState, Party, RosterEntry, XmppConfig, XmppError};

/// Half of Openfire's default `xmpp.component.idle` (6 minutes): its idle check runs at this
/// interval, and the keepalive must come more often.
pub const OPENFIRE_IDLE_HALF: Duration = Duration::from_secs(180);

/// What the add-user probe found after the last link-up ([`Xmpp::account_commands`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommands {
    /// Accounts are made by in-band registration: no probe.
    NotUsed,
    /// The link is down, or the probe has not answered yet.
    Pending,
    /// The server offered the add-user form (the session was cancelled; nothing was created).
    Allowed,
    /// The server refused add-user before any form (Openfire: `forbidden` for a read-only user
    /// store), with the error naming what to change.
    Refused(String),
    /// The probe got no usable answer (timeout, link lost, unexpected reply).
    NoAnswer(String),
}

/// Runs [`adhoc::probe_add_user`] after every link-up and publishes the verdict; a refusal is
/// also logged once per link-up by the link (`note_forbidden`).
fn spawn_account_probe(
    link: Arc<Link>,
    verdict: watch::Sender<AccountCommands>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut state = link.watch();
        loop {
            let up = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = state.wait_for(|s| *s == LinkState::Up) => r.is_ok(),
            };
            if !up {
                return;
            }
            let found = match adhoc::probe_add_user(&link).await {
                Ok(()) => AccountCommands::Allowed,
                Err(XmppError::Refused(why)) => AccountCommands::Refused(why),
                Err(e) => AccountCommands::NoAnswer(e.to_string()),
            };
            verdict.send_replace(found);
            let down = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = state.wait_for(|s| *s == LinkState::Down) => r.is_ok(),
            };
            if !down {
                return;
            }
            verdict.send_replace(AccountCommands::Pending);
        }
    });
}

struct Inner {
    cfg: XmppConfig,
    link: Arc<Link>,
    pool: Arc<Pool>,
    account_commands: watch::Sender<AccountCommands>,
    /// Cancelled once the link task and the session reaper have ended (sockets closed).
    stopped: CancellationToken,
}

/// Handle to the XMPP side: component link, account provisioning, bindings, rosters.
#[derive(Clone)]
pub struct Xmpp {
    inner: Arc<Inner>,
}

/// Validates a node (local part) before anything is sent: 1–64 bytes, no character RFC 7622
/// nodeprep forbids (space, `"&'/:<>@`, control characters) and no uppercase (nodes are
/// generated lowercase; the server would fold them).
pub fn validate_node(node: &str) -> Result<(), XmppError> {
    let bad = |why: &str| Err(XmppError::InvalidInput(format!("node {node:?}: {why}")));
    if node.is_empty() {
        return bad("empty");
    }
    if node.len() > 64 {
        return bad("longer than 64 bytes");
    }
    if let Some(c) = node.chars().find(|c| {
        c.is_whitespace() || c.is_control() || "\"&'/:<>@".contains(*c) || c.is_uppercase()
    }) {
        return bad(&format!("character {c:?} is not allowed"));
    }
    Ok(())
}

fn validate_password(password: &str) -> Result<(), XmppError> {
    if password.is_empty() {
        return Err(XmppError::InvalidInput("empty password".into()));
    }
    if password.chars().any(|c| c.is_control()) {
        return Err(XmppError::InvalidInput(
            "control character in password".into(),
        ));
    }
    Ok(())
}

/// One-shot c2s login as `node@domain`, then close.
pub async fn check_login(cfg: &XmppConfig, node: &str, password: &str) -> Result<(), XmppError> {
    tls::ensure_provider();
    validate_node(node)?;
    validate_password(password)?;
    let session = c2s::Session::login(cfg, None, node, password).await?;
    session.close().await;
    Ok(())
}

impl Xmpp {
    /// Installs the ring crypto provider if none, spawns the component link task (reconnecting
    /// with exponential backoff and jitter until `shutdown` is cancelled) and the session reaper,
    /// and returns at once. Must be called inside a tokio runtime.
    pub fn start(cfg: XmppConfig, shutdown: CancellationToken) -> Xmpp {
        tls::ensure_provider();
        if cfg.keepalive >= OPENFIRE_IDLE_HALF {
            tracing::warn!(
                keepalive_secs = cfg.keepalive.as_secs(),
                "the component keepalive is not under Openfire's default xmpp.component.idle / 2 \
                 (180 s): Openfire would close an idle link; fine on Prosody and ejabberd, or if \
                 Openfire's xmpp.component.idle was raised above twice the keepalive"
            );
        }
        let link = match Link::new(cfg.clone()) {
            Ok(link) => link,
            Err(e) => {
                tracing::error!(error = %e, "invalid component JID; the link will stay down");
                let mut bad = cfg.clone();
                bad.component = "invalid.invalid".into();
                Link::new(bad).expect("a valid placeholder JID")
            }
        };
        let pool = Arc::new(Pool::new(cfg.clone()));
        let account_commands = match cfg.accounts {
            AccountsMode::Component => {
                let (tx, _) = watch::channel(AccountCommands::Pending);
                spawn_account_probe(link.clone(), tx.clone(), shutdown.clone());
                tx
            }
            AccountsMode::Ibr => watch::channel(AccountCommands::NotUsed).0,
        };
        let stopped = CancellationToken::new();
        let (link_done, reaper_done) = (stopped.clone(), CancellationToken::new());
        let reaper_token = reaper_done.clone();
        let run = link.clone().run(shutdown.clone());
        tokio::spawn(async move {
            run.await;
            // Both halves must be gone before "stopped" is reported.
            reaper_token.cancelled().await;
            link_done.cancel();
        });
        let reaper = pool.clone();
        let every = (cfg.session_idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => reaper.reap().await,
                }
            }
            reaper.close_all().await;
            reaper_done.cancel();
        });
        Xmpp {
            inner: Arc::new(Inner {
                cfg,
                link,
                pool,
                account_commands,
                stopped,
            }),
        }
    }

    /// Resolves once, after `shutdown` was cancelled, the component connection and every pooled
    /// c2s session are closed — so a process can hand the component name to another at once.
    pub async fn stopped(&self) {
        self.inner.stopped.cancelled().await
    }

    /// Current state of the component link.
    pub fn link_state(&self) -> LinkState {
        *self.inner.link.watch().borrow()
    }

    /// A receiver that sees every change of the link state.
    pub fn link_watch(&self) -> watch::Receiver<LinkState> {
        self.inner.link.watch()
    }

    /// Successful (re)connections so far, and failed attempts.
    pub fn link_stats(&self) -> (u64, u64) {
        self.inner.link.stats()
    }

    /// Why the configured binding mode cannot work against this server, as decided at the last
    /// link-up (privileged binding without the roster permission `both`, or with roster writes
    /// known broken); `None` when nothing is known against it, or in c2s mode.
    pub fn binding_problem(&self) -> Option<String> {
        match self.inner.link.roster_writes_now() {
            crate::quirks::PrivilegedRoster::Broken(why) => Some(why),
            _ => None,
        }
    }

    /// Whether the link-up check of the binding mode has decided (always in c2s mode; in
    /// privileged mode, a moment after each link-up).
    pub fn binding_checked(&self) -> bool {
        self.inner.cfg.binding != BindingMode::Privileged
            || self.inner.link.roster_writes_now() != crate::quirks::PrivilegedRoster::Unknown
    }

    /// Why the link last went down or failed to come up (e.g. `handshake refused:
    /// not-authorized …`), if it ever did.
    pub fn last_link_error(&self) -> Option<String> {
        self.inner.link.last_error()
    }

    /// What the add-user probe found after the last link-up (component accounts only).
    pub fn account_commands(&self) -> AccountCommands {
        self.inner.account_commands.borrow().clone()
    }

    /// Waits up to `within` for the probe after link-up to give a verdict (anything but
    /// [`AccountCommands::Pending`]) and returns it.
    pub async fn account_commands_checked(&self, within: Duration) -> AccountCommands {
        let mut rx = self.inner.account_commands.subscribe();
        let _ = tokio::time::timeout(within, rx.wait_for(|v| *v != AccountCommands::Pending)).await;
        let verdict = rx.borrow().clone();
        verdict
    }

    /// The configuration this handle was started with.
    pub fn config(&self) -> &XmppConfig {
        &self.inner.cfg
    }

    /// Bare JID string for a node: `node@domain`.
    pub fn jid_of(&self, node: &str) -> String {
        format!("{node}@{}", self.inner.cfg.domain)
    }

    /// Number of idle pooled c2s sessions (for metrics and tests).
    pub fn idle_sessions(&self) -> usize {
        self.inner.pool.idle_count()
    }

    fn bare(&self, node: &str) -> Result<BareJid, XmppError> {
        validate_node(node)?;
        BareJid::new(&self.jid_of(node)).map_err(|e| XmppError::InvalidInput(format!("JID: {e}")))
    }

    /// Creates the account `node@domain` with `password`. [`XmppError::Conflict`] when it exists.
    pub async fn create_account(&self, node: &str, password: &str) -> Result<(), XmppError> {
        let jid = self.bare(node)?;
        validate_password(password)?;
        self.inner.pool.forget(node);
        match self.inner.cfg.accounts {
            AccountsMode::Component => {
                adhoc::add_user(&self.inner.link, jid.as_str(), password).await
            }
            AccountsMode::Ibr => ibr::register(&self.inner.pool, node, password).await,
        }
    }

    /// Deletes the account. [`XmppError::NotFound`] when it does not exist (component mode). In
    /// ibr mode this logs in as the user, so a missing account shows as [`XmppError::AuthFailed`].
    pub async fn delete_account(&self, node: &str, password: &str) -> Result<(), XmppError> {
        let jid = self.bare(node)?;
        self.inner.pool.forget(node);
        match self.inner.cfg.accounts {
            AccountsMode::Component => adhoc::delete_user(&self.inner.link, jid.as_str()).await,
            AccountsMode::Ibr => {
                validate_password(password)?;
                ibr::remove(&self.inner.pool, node, password).await
            }
        }
    }

    /// Sets a new password for the account `node@domain`. Component mode: XEP-0133
    /// change-user-password through the component (Prosody, ejabberd); when the server does not
    /// let the component run it (Openfire admits components only to add-user and delete-user),
    /// XEP-0077's password change as the user over c2s, logged in with `old`. Ibr mode: always
    /// the latter. Setting the password the account already has succeeds, so a change that was
    /// interrupted can be run again.
    pub async fn change_password(&self, node: &str, old: &str, new: &str) -> Result<(), XmppError> {
        let jid = self.bare(node)?;
        validate_password(new)?;
        let done = match self.inner.cfg.accounts {
            AccountsMode::Component => {
                match adhoc::change_user_password(&self.inner.link, jid.as_str(), new).await {
                    Err(XmppError::Refused(why)) | Err(XmppError::Protocol(why)) => {
                        tracing::debug!(node, why, "change-user-password refused; over c2s");
                        None
                    }
                    // An unknown command is item-not-found on some servers.
                    Err(XmppError::NotFound) => None,
                    other => Some(other),
                }
            }
            AccountsMode::Ibr => None,
        };
        let result = match done {
            Some(r) => r,
            None => {
                validate_password(old)?;
                ibr::change_password(&self.inner.pool, node, old, new).await
            }
        };
        // Pooled sessions logged in with the old password are not reused.
        self.inner.pool.forget(node);
        result
    }

    /// Ends every session of `node@domain` (XEP-0133 end-user-session through the component):
    /// what was logged in with an old password goes. Ibr mode has no admin command the service
    /// may run, so it answers [`XmppError::Unsupported`] without asking the server.
    pub async fn end_sessions(&self, node: &str) -> Result<(), XmppError> {
        let jid = self.bare(node)?;
        // The service's own pooled sessions of the account are among those ended.
        self.inner.pool.forget(node);
        match self.inner.cfg.accounts {
            AccountsMode::Component => {
                adhoc::end_user_session(&self.inner.link, jid.as_str()).await
            }
            AccountsMode::Ibr => Err(XmppError::Unsupported(
                "ibr mode: no XEP-0133 end-user-session without the component".into(),
            )),
        }
    }

    async fn lease_pair(&self, a: &Party, b: &Party) -> Result<(Lease, Lease), XmppError> {
        let la = self.inner.pool.checkout(&a.node, &a.password).await?;
        match self.inner.pool.checkout(&b.node, &b.password).await {
            Ok(lb) => Ok((la, lb)),
            Err(e) => {
                self.inner.pool.checkin(la);
                Err(e)
            }
        }
    }

    /// Replaces dead reused sessions of a pair; false when neither needed it.
    async fn refresh_pair(
        &self,
        la: &mut Option<Lease>,
        lb: &mut Option<Lease>,
    ) -> Result<bool, XmppError> {
        let mut any = false;
        for slot in [la, lb] {
            let dead = slot
                .as_ref()
                .is_some_and(|l| l.reused && !l.session.is_alive());
            if dead {
                let lease = slot.take().expect("checked");
                *slot = Some(self.inner.pool.fresh(lease).await?);
                any = true;
            }
        }
        Ok(any)
    }

    /// Makes `a` and `b` mutual contacts: `both` on both rosters; in a's roster b carries
    /// `b.nickname` and `b.group`, and vice versa. [`XmppError::AlreadyBound`] when both rosters
    /// already say `both`.
    pub async fn bind(&self, a: &Party, b: &Party) -> Result<(), XmppError> {
        let (ja, jb) = (self.bare(&a.node)?, self.bare(&b.node)?);
        match self.inner.cfg.binding {
            BindingMode::Privileged => {
                roster::bind_privileged(&self.inner.link, (&ja, a), (&jb, b)).await
            }
            BindingMode::C2s => {
                validate_password(&a.password)?;
                validate_password(&b.password)?;
                let t = self.inner.cfg.timeout;
                self.with_pair(a, b, |sa, sb| {
                    let (ja, jb, a, b) = (ja.clone(), jb.clone(), a.clone(), b.clone());
                    Box::pin(async move { roster::bind_c2s(sa, sb, (&ja, &a), (&jb, &b), t).await })
                })
                .await
            }
        }
    }

    /// Removes each from the other's roster. [`XmppError::NotBound`] when neither has the other.
    pub async fn unbind(&self, a: &Party, b: &Party) -> Result<(), XmppError> {
        let (ja, jb) = (self.bare(&a.node)?, self.bare(&b.node)?);
        match self.inner.cfg.binding {
            BindingMode::Privileged => roster::unbind_privileged(&self.inner.link, &ja, &jb).await,
            BindingMode::C2s => {
                validate_password(&a.password)?;
                validate_password(&b.password)?;
                self.with_pair(a, b, |sa, sb| {
                    let (ja, jb) = (ja.clone(), jb.clone());
                    Box::pin(async move { roster::unbind_c2s(sa, sb, &ja, &jb).await })
                })
                .await
            }
        }
    }

    /// Runs `op` on pooled sessions of `a` and `b`, again on fresh ones while a reused session
    /// turned out dead.
    async fn with_pair<'p, F>(&self, a: &Party, b: &Party, op: F) -> Result<(), XmppError>
    where
        F: for<'s> Fn(
                &'s mut c2s::Session,
                &'s mut c2s::Session,
            ) -> futures::future::BoxFuture<'s, Result<(), XmppError>>
            + 'p,
    {
        let (la, lb) = self.lease_pair(a, b).await?;
        let (mut la, mut lb) = (Some(la), Some(lb));
        let mut result = {
            let (x, y) = (la.as_mut().expect("set"), lb.as_mut().expect("set"));
            op(&mut x.session, &mut y.session).await
        };
        // A reused session is found dead only when used: after a server restart the first run
        // may fail on A's session and the second on B's, so retry while a refresh happened (at
        // most twice: a refreshed session is fresh, never refreshed again).
        while result.is_err() {
            match self.refresh_pair(&mut la, &mut lb).await {
                Ok(true) => {
                    let (x, y) = (la.as_mut().expect("set"), lb.as_mut().expect("set"));
                    result = op(&mut x.session, &mut y.session).await;
                }
                Ok(false) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        for lease in [la, lb].into_iter().flatten() {
            self.inner.pool.checkin(lease);
        }
        result
    }

    /// The roster of `who` as the server holds it.
    pub async fn roster(&self, who: &Party) -> Result<Vec<RosterEntry>, XmppError> {
        let jid = self.bare(&who.node)?;
        match self.inner.cfg.binding {
            BindingMode::Privileged => roster::get_privileged(&self.inner.link, &jid).await,
            BindingMode::C2s => {
                validate_password(&who.password)?;
                let mut lease = self.inner.pool.checkout(&who.node, &who.password).await?;
                let mut result = roster::get(&mut lease.session).await;
                if result.is_err() && lease.reused && !lease.session.is_alive() {
                    lease = self.inner.pool.fresh(lease).await?;
                    result = roster::get(&mut lease.session).await;
                }
                self.inner.pool.checkin(lease);
                result
            }
        }
    }

    /// Diagnostics for `register check`: waits up to the timeout for the link, runs the add-user
    /// probe that creates nothing (a read-only user store shows here), then creates and
    /// deletes a random probe account (and checks the roster privilege in privileged mode).
    pub async fn probe(&self) -> Result<(), XmppError> {
        let mut watch = self.link_watch();
        // A bool, not the watch's guard: the future must stay `Send` (the admin listener runs it).
        let up = matches!(
            tokio::time::timeout(
                self.inner.cfg.timeout,
                watch.wait_for(|s| *s == LinkState::Up),
            )
            .await,
            Ok(Ok(_))
        );
        if !up {
            let why = self
                .last_link_error()
                .unwrap_or_else(|| "no answer from the server".into());
            return Err(XmppError::Refused(format!(
                "component link is not up: {why}"
            )));
        }
        if self.inner.cfg.accounts == AccountsMode::Component {
            // First the probe that creates nothing: a read-only user store (Openfire) is told
            // apart from every other refusal before a test account is tried.
            adhoc::probe_add_user(&self.inner.link)
                .await
                .map_err(|e| match e {
                    XmppError::Refused(why) => XmppError::Refused(format!(
                        "add-user refused before any form was filled: {why}"
                    )),
                    other => other,
                })?;
        }
        let node = format!("register-probe-{}", random_suffix());
        let password = format!("probe-{}{}", random_suffix(), random_suffix());
        match self.create_account(&node, &password).await {
            Err(XmppError::Conflict) if self.inner.cfg.accounts == AccountsMode::Component => {
                // A fresh random account cannot exist: the server refused with a note read as
                // "exists" (an Openfire note in a language other than English, see `quirks`).
                return Err(XmppError::Refused(
                    "the server says a fresh random test account already exists: it refused \
                     add-user with an error note in a language not read here. On Openfire check \
                     that xmpp.domain is its XMPP domain (not a remote one) and that the user \
                     provider does not require an e-mail address"
                        .into(),
                ));
            }
            other => other?,
        }
        if self.inner.cfg.accounts == AccountsMode::Component {
            // The account must really work for users.
            if let Err(e) = check_login(&self.inner.cfg, &node, &password).await {
                let _ = self.delete_account(&node, &password).await;
                return Err(e);
            }
        }
        self.delete_account(&node, &password).await?;
        if self.inner.cfg.binding == BindingMode::Privileged {
            let granted = self.inner.link.privileges(Duration::from_secs(1)).await;
            let roster = granted
                .as_ref()
                .and_then(|p| p.perms.get("roster"))
                .cloned();
            if roster.as_deref() != Some("both") {
                return Err(XmppError::Unsupported(format!(
                    "privileged binding needs the XEP-0356 roster permission 'both' (granted: {})",
                    roster.unwrap_or_else(|| "none".into())
                )));
            }
            if let crate::quirks::PrivilegedRoster::Broken(why) =
                self.inner.link.roster_writes(self.inner.cfg.timeout).await
            {
                return Err(XmppError::Unsupported(why));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_validation() {
        assert!(validate_node("u-0123abcd").is_ok());
        assert!(validate_node(&"a".repeat(64)).is_ok());
        for bad in [
            "", "a b", "a@b", "a/b", "a:b", "a<b", "a>b", "a&b", "a'b", "a\"b", "A", "a\u{7}",
        ] {
            assert!(
                matches!(validate_node(bad), Err(XmppError::InvalidInput(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            validate_node(&"a".repeat(65)),
            Err(XmppError::InvalidInput(_))
        ));
        // 64 bytes, not 64 characters.
        assert!(validate_node(&"é".repeat(33)).is_err());
        assert!(validate_password("").is_err());
        assert!(validate_password("x\u{0}y").is_err());
        assert!(validate_password("secret").is_ok());
    }
}
