//! The XMPP port: everything the core asks of the XMPP server, as a trait the core owns.
//!
//! The lifecycles and commands talk to `App::xmpp`, an `Arc<dyn XmppPort>`. In the service that
//! is the `xmpp` crate's client ([`xmpp::Xmpp`], implemented below) behind [`Metered`], which
//! times and counts every account and roster operation for `/metrics` — the one place that does,
//! so a step added later (or the reconciler's) is counted without anyone remembering to. Tests
//! put [`FakeXmpp`](crate::lifecycle::fake_port::FakeXmpp) in its place.
//!
//! The port speaks the `xmpp` crate's small data types ([`Party`], [`RosterEntry`],
//! [`XmppError`], [`LinkState`]): they carry no behaviour, and mapping them to result codes stays
//! in `error.rs`.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use xmpp::{AccountsMode, LinkState, Party, RosterEntry, XmppError};

use crate::service::metrics::Metrics;

/// What the core needs from an XMPP server.
#[async_trait::async_trait]
pub trait XmppPort: Send + Sync + 'static {
    /// How accounts are made: through the component (`component`) or in-band (`ibr`).
    fn accounts_mode(&self) -> AccountsMode;
    /// The users' JID domain.
    fn domain(&self) -> &str;
    /// The bare JID of a node: `node@domain`.
    fn jid_of(&self, node: &str) -> String {
        format!("{node}@{}", self.domain())
    }
    /// The component link's state now (readiness).
    fn link_state(&self) -> LinkState;
    /// Every change of the link state.
    fn link_watch(&self) -> watch::Receiver<LinkState>;
    /// Successful (re)connections of the link so far, and failed attempts.
    fn link_stats(&self) -> (u64, u64);
    /// Why the link last went down or failed to come up.
    fn last_link_error(&self) -> Option<String>;
    /// Why the configured binding mode cannot work on this server (found at link-up), if so.
    fn binding_problem(&self) -> Option<String> {
        None
    }
    /// Whether the link-up check of the binding mode has decided.
    fn binding_checked(&self) -> bool {
        true
    }
    /// Resolves once the link and every session are closed after shutdown.
    async fn stopped(&self);
    /// `register check`: the link is up and a probe account can be made and deleted.
    async fn probe(&self) -> Result<(), XmppError>;

    /// Create `node@domain`; [`XmppError::Conflict`] when it exists.
    async fn create_account(&self, node: &str, password: &str) -> Result<(), XmppError>;
    /// Delete it; [`XmppError::NotFound`] when it does not exist (in `ibr` mode, where this logs
    /// in as the user, [`XmppError::AuthFailed`]).
    async fn delete_account(&self, node: &str, password: &str) -> Result<(), XmppError>;
    /// Give the account a new password; [`XmppError::NotFound`] when it does not exist.
    async fn set_password(&self, node: &str, old: &str, new: &str) -> Result<(), XmppError>;
    /// End every session of the account (XEP-0133 end-user-session through the component), so
    /// that nothing stays logged in with a password it no longer has. [`XmppError::Unsupported`]
    /// in `ibr` mode; a server that refuses the command answers an error too.
    async fn end_sessions(&self, node: &str) -> Result<(), XmppError>;
    /// Make `a` and `b` mutual contacts; [`XmppError::AlreadyBound`] when they are.
    async fn bind(&self, a: &Party, b: &Party) -> Result<(), XmppError>;
    /// Remove each from the other's roster; [`XmppError::NotBound`] when neither has the other.
    async fn unbind(&self, a: &Party, b: &Party) -> Result<(), XmppError>;
    /// The roster of `who` as the server holds it.
    async fn roster(&self, who: &Party) -> Result<Vec<RosterEntry>, XmppError>;
}

#[async_trait::async_trait]
impl XmppPort for xmpp::Xmpp {
    fn accounts_mode(&self) -> AccountsMode {
        self.config().accounts
    }
    fn domain(&self) -> &str {
        &self.config().domain
    }
    fn link_state(&self) -> LinkState {
        xmpp::Xmpp::link_state(self)
    }
    fn link_watch(&self) -> watch::Receiver<LinkState> {
        xmpp::Xmpp::link_watch(self)
    }
    fn link_stats(&self) -> (u64, u64) {
        xmpp::Xmpp::link_stats(self)
    }
    fn last_link_error(&self) -> Option<String> {
        xmpp::Xmpp::last_link_error(self)
    }
    fn binding_problem(&self) -> Option<String> {
        xmpp::Xmpp::binding_problem(self)
    }
    fn binding_checked(&self) -> bool {
        xmpp::Xmpp::binding_checked(self)
    }
    async fn stopped(&self) {
        xmpp::Xmpp::stopped(self).await
    }
    async fn probe(&self) -> Result<(), XmppError> {
        xmpp::Xmpp::probe(self).await
    }
    async fn create_account(&self, node: &str, password: &str) -> Result<(), XmppError> {
        xmpp::Xmpp::create_account(self, node, password).await
    }
    async fn delete_account(&self, node: &str, password: &str) -> Result<(), XmppError> {
        xmpp::Xmpp::delete_account(self, node, password).await
    }
    /// XEP-0133 change-user-password where the server lets the component run it, else the
    /// user's own XEP-0077 change over c2s, logged in with `old`.
    async fn set_password(&self, node: &str, old: &str, new: &str) -> Result<(), XmppError> {
        xmpp::Xmpp::change_password(self, node, old, new).await
    }
    async fn end_sessions(&self, node: &str) -> Result<(), XmppError> {
        xmpp::Xmpp::end_sessions(self, node).await
    }
    async fn bind(&self, a: &Party, b: &Party) -> Result<(), XmppError> {
        xmpp::Xmpp::bind(self, a, b).await
    }
    async fn unbind(&self, a: &Party, b: &Party) -> Result<(), XmppError> {
        xmpp::Xmpp::unbind(self, a, b).await
    }
    async fn roster(&self, who: &Party) -> Result<Vec<RosterEntry>, XmppError> {
        xmpp::Xmpp::roster(self, who).await
    }
}

/// A port whose every account and roster operation is timed and counted
/// (`register_xmpp_operations_total{op, ok}`); the rest is passed through.
pub struct Metered {
    inner: Arc<dyn XmppPort>,
    metrics: Arc<Metrics>,
}

impl Metered {
    pub fn new(inner: Arc<dyn XmppPort>, metrics: Arc<Metrics>) -> Metered {
        Metered { inner, metrics }
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        f: impl Future<Output = Result<T, XmppError>>,
    ) -> Result<T, XmppError> {
        let started = Instant::now();
        let r = f.await;
        self.metrics.xmpp_op(op, started.elapsed(), r.is_ok());
        r
    }
}

#[async_trait::async_trait]
impl XmppPort for Metered {
    fn accounts_mode(&self) -> AccountsMode {
        self.inner.accounts_mode()
    }
    fn domain(&self) -> &str {
        self.inner.domain()
    }
    fn link_state(&self) -> LinkState {
        self.inner.link_state()
    }
    fn link_watch(&self) -> watch::Receiver<LinkState> {
        self.inner.link_watch()
    }
    fn link_stats(&self) -> (u64, u64) {
        self.inner.link_stats()
    }
    fn last_link_error(&self) -> Option<String> {
        self.inner.last_link_error()
    }
    fn binding_problem(&self) -> Option<String> {
        self.inner.binding_problem()
    }
    fn binding_checked(&self) -> bool {
        self.inner.binding_checked()
    }
    async fn stopped(&self) {
        self.inner.stopped().await
    }
    async fn probe(&self) -> Result<(), XmppError> {
        self.inner.probe().await
    }
    async fn create_account(&self, node: &str, password: &str) -> Result<(), XmppError> {
        self.timed("create_account", self.inner.create_account(node, password))
            .await
    }
    async fn delete_account(&self, node: &str, password: &str) -> Result<(), XmppError> {
        self.timed("delete_account", self.inner.delete_account(node, password))
            .await
    }
    async fn set_password(&self, node: &str, old: &str, new: &str) -> Result<(), XmppError> {
        self.timed("set_password", self.inner.set_password(node, old, new))
            .await
    }
    async fn end_sessions(&self, node: &str) -> Result<(), XmppError> {
        self.timed("end_sessions", self.inner.end_sessions(node))
            .await
    }
    async fn bind(&self, a: &Party, b: &Party) -> Result<(), XmppError> {
        self.timed("bind", self.inner.bind(a, b)).await
    }
    async fn unbind(&self, a: &Party, b: &Party) -> Result<(), XmppError> {
        self.timed("unbind", self.inner.unbind(a, b)).await
    }
    async fn roster(&self, who: &Party) -> Result<Vec<RosterEntry>, XmppError> {
        self.timed("roster", self.inner.roster(who)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use xmpp::XmppError;

    use super::{Metered, XmppPort};
    use crate::lifecycle::fake_port::{FakeXmpp, Fault, Op};
    use crate::service::metrics::Metrics;

    #[tokio::test]
    async fn the_xmpp_client_names_jids_in_its_domain() {
        let mut cfg = crate::service::config::Config::default();
        // Nothing listens there: the link stays down, and nothing is sent anyway.
        cfg.xmpp.component_addr = "127.0.0.1:1".into();
        cfg.xmpp.component_secret = "s".into();
        let xcfg = crate::service::server::xmpp_config(&cfg).unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let x = xmpp::Xmpp::start(xcfg, stop.clone());
        assert_eq!(XmppPort::jid_of(&x, "n"), format!("n@{}", cfg.xmpp.domain));
        stop.cancel();
    }

    #[tokio::test]
    async fn every_operation_is_counted_once_by_the_metered_port() {
        let fake = Arc::new(FakeXmpp::new("m.test"));
        let metrics = Arc::new(Metrics::default());
        let port = Metered::new(fake.clone(), metrics.clone());
        port.create_account("a1", "pw-a1-long").await.unwrap();
        fake.fail_once(Op::Create, Fault::Exists);
        assert!(matches!(
            port.create_account("a2", "pw-a2-long").await,
            Err(XmppError::Conflict)
        ));
        port.set_password("a1", "pw-a1-long", "pw-a1-new")
            .await
            .unwrap();
        assert_eq!(fake.password_of("a1").as_deref(), Some("pw-a1-new"));
        port.end_sessions("a1").await.unwrap();
        port.delete_account("a1", "").await.unwrap();
        let m = metrics.render(crate::service::metrics::Scrape {
            link_up: true,
            link_connects: 1,
            link_failures: 0,
            hash_queue: 0,
        });
        crate::cmd::testkit::assert_contains_all(
            &m,
            &[
                "op=\"create_account\",ok=\"true\"} 1",
                "op=\"create_account\",ok=\"false\"} 1",
                "op=\"set_password\",ok=\"true\"} 1",
                "op=\"end_sessions\",ok=\"true\"} 1",
                "op=\"delete_account\",ok=\"true\"} 1",
            ],
        );
    }
}
