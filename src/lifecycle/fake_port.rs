//! An in-memory XMPP server behind the [`XmppPort`]: accounts, passwords and mutual roster pairs
//! in a map, so commands and lifecycles are tested without a real server.
//!
//! It behaves as the real servers do for the outcomes the core distinguishes (an account that
//! exists → `Conflict`, a missing one → `NotFound`, a pair already bound → `AlreadyBound`, …), and
//! a test can make any one operation fail with a chosen [`Fault`], once or until healed, or hang
//! until [`FakeXmpp::release`] (then it goes on as if the server had been slow). The link is up
//! until [`FakeXmpp::set_link`] says otherwise.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use tokio::sync::watch;
use xmpp::{AccountsMode, LinkState, Party, RosterEntry, XmppError};

use crate::lifecycle::port::XmppPort;

/// One operation of the port, to aim a fault at or count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Delete,
    SetPassword,
    EndSessions,
    Bind,
    Unbind,
    Roster,
}

/// How an operation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No answer in time (`XmppError::Timeout`); nothing happened.
    Timeout,
    /// The link is down (`XmppError::LinkDown`); nothing happened.
    LinkDown,
    /// "Already exists" (`Conflict`), or "already bound" for a bind.
    Exists,
    /// "Not found" (`NotFound`), or "not bound" for an unbind.
    Missing,
    /// The user's login was refused (`AuthFailed`).
    AuthFailed,
    /// The server refused it (`Refused`).
    Refused,
    /// Waits until [`FakeXmpp::release`], then does the operation normally.
    Hang,
}

impl Fault {
    fn error(self, op: Op) -> XmppError {
        match (self, op) {
            (Fault::Timeout, _) | (Fault::Hang, _) => XmppError::Timeout,
            (Fault::LinkDown, _) => XmppError::LinkDown,
            (Fault::Exists, Op::Bind) => XmppError::AlreadyBound,
            (Fault::Exists, _) => XmppError::Conflict,
            (Fault::Missing, Op::Unbind) => XmppError::NotBound,
            (Fault::Missing, _) => XmppError::NotFound,
            (Fault::AuthFailed, _) => XmppError::AuthFailed,
            (Fault::Refused, _) => XmppError::Refused("refused by the fake".into()),
        }
    }
}

#[derive(Default)]
struct State {
    /// node → password.
    accounts: HashMap<String, String>,
    /// (smaller node, larger node) → the two parties as bound.
    pairs: BTreeMap<(String, String), (Party, Party)>,
    /// op → (fault, calls it still applies to; `None`: until healed).
    faults: HashMap<Op, (Fault, Option<u32>)>,
    calls: HashMap<Op, u32>,
}

/// The fake server. Share it as `Arc<FakeXmpp>` and hand a clone to the `App` as its port.
pub struct FakeXmpp {
    domain: String,
    mode: AccountsMode,
    state: Mutex<State>,
    link: watch::Sender<LinkState>,
    released: watch::Sender<bool>,
    hung: watch::Sender<u32>,
}

impl FakeXmpp {
    /// A server for `domain` making accounts through the component, link up.
    pub fn new(domain: &str) -> FakeXmpp {
        FakeXmpp::with_mode(domain, AccountsMode::Component)
    }

    pub fn with_mode(domain: &str, mode: AccountsMode) -> FakeXmpp {
        FakeXmpp {
            domain: domain.to_owned(),
            mode,
            state: Mutex::default(),
            link: watch::Sender::new(LinkState::Up),
            released: watch::Sender::new(false),
            hung: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every later call of `op` fails with `fault`, until [`heal`](Self::heal).
    pub fn fail(&self, op: Op, fault: Fault) {
        self.lock().faults.insert(op, (fault, None));
        if fault == Fault::Hang {
            self.released.send_replace(false);
        }
    }

    /// The next call of `op` fails with `fault`; later ones work.
    pub fn fail_once(&self, op: Op, fault: Fault) {
        self.lock().faults.insert(op, (fault, Some(1)));
        if fault == Fault::Hang {
            self.released.send_replace(false);
        }
    }

    /// `op` works again.
    pub fn heal(&self, op: Op) {
        self.lock().faults.remove(&op);
    }

    /// Lets every hanging call go on.
    pub fn release(&self) {
        self.released.send_replace(true);
    }

    /// Resolves once `n` calls in all have started to hang.
    pub async fn hung(&self, n: u32) {
        let mut w = self.hung.subscribe();
        let _ = w.wait_for(|h| *h >= n).await;
    }

    pub fn set_link(&self, state: LinkState) {
        self.link.send_replace(state);
    }

    /// Calls of `op` so far, failed ones included.
    pub fn calls(&self, op: Op) -> u32 {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// Puts an account on the server (as if made earlier, or by someone else).
    pub fn add_account(&self, node: &str, password: &str) {
        self.lock()
            .accounts
            .insert(node.to_owned(), password.to_owned());
    }

    pub fn has_account(&self, node: &str) -> bool {
        self.lock().accounts.contains_key(node)
    }

    pub fn password_of(&self, node: &str) -> Option<String> {
        self.lock().accounts.get(node).cloned()
    }

    /// Whether the two nodes are mutual contacts.
    pub fn is_bound(&self, x: &str, y: &str) -> bool {
        self.lock().pairs.contains_key(&key(x, y))
    }

    /// Counts the call and applies the fault aimed at `op`, if any.
    async fn enter(&self, op: Op) -> Result<(), XmppError> {
        let fault = {
            let mut s = self.lock();
            *s.calls.entry(op).or_default() += 1;
            let fault = s.faults.get(&op).map(|f| f.0);
            if let Some((_, Some(left))) = s.faults.get_mut(&op) {
                *left -= 1;
                if *left == 0 {
                    s.faults.remove(&op);
                }
            }
            fault
        };
        match fault {
            None => Ok(()),
            Some(Fault::Hang) => {
                let mut w = self.released.subscribe();
                self.hung.send_modify(|h| *h += 1);
                let _ = w.wait_for(|r| *r).await;
                Ok(())
            }
            Some(f) => Err(f.error(op)),
        }
    }

    /// [`enter`](Self::enter) `op` as both sides of a pair, each logged in: the state, locked,
    /// and the pair's key.
    async fn enter_pair(
        &self,
        op: Op,
        a: &Party,
        b: &Party,
    ) -> Result<(std::sync::MutexGuard<'_, State>, (String, String)), XmppError> {
        self.enter(op).await?;
        let s = self.lock();
        FakeXmpp::login(&s, a)?;
        FakeXmpp::login(&s, b)?;
        Ok((s, key(&a.node, &b.node)))
    }

    /// A login as `p` (c2s): the account must exist with this password.
    fn login(s: &State, p: &Party) -> Result<(), XmppError> {
        match s.accounts.get(&p.node) {
            Some(pw) if *pw == p.password => Ok(()),
            _ => Err(XmppError::AuthFailed),
        }
    }
}

fn key(x: &str, y: &str) -> (String, String) {
    if x <= y {
        (x.to_owned(), y.to_owned())
    } else {
        (y.to_owned(), x.to_owned())
    }
}

#[async_trait::async_trait]
impl XmppPort for FakeXmpp {
    fn accounts_mode(&self) -> AccountsMode {
        self.mode
    }
    fn domain(&self) -> &str {
        &self.domain
    }
    fn link_state(&self) -> LinkState {
        *self.link.borrow()
    }
    fn link_watch(&self) -> watch::Receiver<LinkState> {
        self.link.subscribe()
    }
    fn link_stats(&self) -> (u64, u64) {
        (1, 0)
    }
    fn last_link_error(&self) -> Option<String> {
        (self.link_state() == LinkState::Down).then(|| "the fake's link is down".into())
    }
    async fn stopped(&self) {}
    async fn probe(&self) -> Result<(), XmppError> {
        match self.link_state() {
            LinkState::Up => Ok(()),
            LinkState::Down => Err(XmppError::Refused("component link is not up".into())),
        }
    }

    async fn create_account(&self, node: &str, password: &str) -> Result<(), XmppError> {
        self.enter(Op::Create).await?;
        xmpp::validate_node(node)?;
        let mut s = self.lock();
        if s.accounts.contains_key(node) {
            return Err(XmppError::Conflict);
        }
        s.accounts.insert(node.to_owned(), password.to_owned());
        Ok(())
    }

    async fn delete_account(&self, node: &str, password: &str) -> Result<(), XmppError> {
        self.enter(Op::Delete).await?;
        let mut s = self.lock();
        match (s.accounts.get(node), self.mode) {
            (None, AccountsMode::Component) => return Err(XmppError::NotFound),
            (None, AccountsMode::Ibr) => return Err(XmppError::AuthFailed),
            (Some(pw), AccountsMode::Ibr) if pw != password => return Err(XmppError::AuthFailed),
            _ => {}
        }
        s.accounts.remove(node);
        s.pairs.retain(|(x, y), _| x != node && y != node);
        Ok(())
    }

    async fn set_password(&self, node: &str, old: &str, new: &str) -> Result<(), XmppError> {
        self.enter(Op::SetPassword).await?;
        let mut s = self.lock();
        match s.accounts.get_mut(node) {
            None => Err(XmppError::NotFound),
            Some(pw) if self.mode == AccountsMode::Ibr && pw != old => Err(XmppError::AuthFailed),
            Some(pw) => {
                *pw = new.to_owned();
                Ok(())
            }
        }
    }

    /// As Prosody and ejabberd: the account must exist; in `ibr` mode there is no such command.
    async fn end_sessions(&self, node: &str) -> Result<(), XmppError> {
        self.enter(Op::EndSessions).await?;
        if self.mode == AccountsMode::Ibr {
            return Err(XmppError::Unsupported("ibr mode".into()));
        }
        match self.lock().accounts.contains_key(node) {
            true => Ok(()),
            false => Err(XmppError::NotFound),
        }
    }

    async fn bind(&self, a: &Party, b: &Party) -> Result<(), XmppError> {
        let (mut s, k) = self.enter_pair(Op::Bind, a, b).await?;
        if s.pairs.contains_key(&k) {
            return Err(XmppError::AlreadyBound);
        }
        s.pairs.insert(k, (a.clone(), b.clone()));
        Ok(())
    }

    async fn unbind(&self, a: &Party, b: &Party) -> Result<(), XmppError> {
        let (mut s, k) = self.enter_pair(Op::Unbind, a, b).await?;
        match s.pairs.remove(&k) {
            Some(_) => Ok(()),
            None => Err(XmppError::NotBound),
        }
    }

    async fn roster(&self, who: &Party) -> Result<Vec<RosterEntry>, XmppError> {
        self.enter(Op::Roster).await?;
        let s = self.lock();
        FakeXmpp::login(&s, who)?;
        Ok(s.pairs
            .values()
            .filter_map(|(x, y)| {
                let peer = if x.node == who.node {
                    y
                } else if y.node == who.node {
                    x
                } else {
                    return None;
                };
                Some(RosterEntry {
                    jid: self.jid_of(&peer.node),
                    subscription: "both".into(),
                    nickname: peer.nickname.clone(),
                    groups: vec![peer.group.clone()],
                })
            })
            .collect())
    }
}
