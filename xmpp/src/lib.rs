//! Everything `register` does on the XMPP server.
//!
//! The service talks to this crate only through [`Xmpp`]: it creates and deletes accounts (JIDs),
//! binds two JIDs as mutual roster contacts, unbinds them and reads rosters. How that happens is
//! chosen by configuration ([`AccountsMode`], [`BindingMode`]) and hidden here, so the service knows
//! nothing of XML, sockets or server quirks.
//!
//! Shape (see ARCHITECTURE.md):
//! - `component` — the XEP-0114 link: handshake, keepalive, reconnect with backoff, IQ table.
//! - `adhoc` — XEP-0050/XEP-0133 add-user / delete-user through the component.
//! - `c2s` — client sessions (STARTTLS, SASL, bind) and a pool reusing them per JID.
//! - `ibr` — XEP-0077 in-band registration and removal over c2s.
//! - `roster` — the subscription handshake (c2s mode) and XEP-0356 roster get/set (privileged mode).
//! - `quirks` — every difference between Prosody, ejabberd and Openfire that matters here, with
//!   a table (how outcomes are reported, privilege namespaces, the ejabberd 23.01 roster-set bug).
//! - `testkit` (feature `testkit`) — starts a real Prosody or ejabberd on free loopback ports for
//!   tests, or a scripted Openfire.

use std::path::PathBuf;
use std::time::Duration;

/// How the server's TLS certificate is checked and whether TLS is used on c2s connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum C2sTls {
    /// STARTTLS must succeed; otherwise the session fails.
    Required,
    /// STARTTLS when offered, plaintext otherwise.
    Optional,
    /// Never STARTTLS.
    Off,
}

/// How accounts (JIDs) are created and deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountsMode {
    /// XEP-0133 add-user / delete-user sent by the component to the server domain.
    Component,
    /// XEP-0077 in-band registration over c2s; `<remove/>` as the user to delete.
    Ibr,
}

/// How two JIDs are made mutual contacts and how rosters are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingMode {
    /// Log in as each side and run the subscription handshake.
    C2s,
    /// XEP-0356 roster get/set on behalf of users through the component.
    Privileged,
}

/// Configuration of the XMPP side.
#[derive(Debug, Clone)]
pub struct XmppConfig {
    /// The users' JID domain, e.g. `example.com`.
    pub domain: String,
    /// The component's JID, e.g. `register.example.com`.
    pub component: String,
    /// `host:port` of the server's component port.
    pub component_addr: String,
    /// The component's shared secret.
    pub component_secret: String,
    /// `host:port` of the server's c2s port.
    pub c2s_addr: String,
    pub c2s_tls: C2sTls,
    /// PEM file of certificates to trust for the server (private CA or self-signed); `None`:
    /// system roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Allow SASL PLAIN on a connection without TLS (tests, loopback). Default false.
    pub allow_plain_without_tls: bool,
    pub accounts: AccountsMode,
    pub binding: BindingMode,
    /// Timeout of every single step (connect, IQ round trip, login step).
    pub timeout: Duration,
    /// A pooled c2s session unused for this long is closed.
    pub session_idle: Duration,
    /// Keepalive interval on the component link. Openfire counts only stanzas and closes a
    /// component after two idle periods of `xmpp.component.idle`/2 (default 6 min → 3 min): keep
    /// this under idle/2.
    pub keepalive: Duration,
    /// Send `allowMultiple` in the component stream header: Openfire then accepts several
    /// connections (instances) for one component name. Other servers ignore the attribute.
    pub allow_multiple: bool,
    /// Most XEP-0050 command sessions (add-user, delete-user) this instance keeps open at once;
    /// more wait in a queue. Keep `instances × command_sessions` under Openfire's
    /// `xmpp.command.limit` (100 per requester, and all instances are one requester).
    pub command_sessions: usize,
}

/// One side of a binding: who logs in, and how the *other* side will see it in its roster.
#[derive(Debug, Clone)]
pub struct Party {
    /// Node (local part) of the JID; the domain is [`XmppConfig::domain`].
    pub node: String,
    /// The JID's password (used in c2s mode; ignored in privileged mode).
    pub password: String,
    /// Roster nickname under which the peer sees this party (its `user_name`).
    pub nickname: String,
    /// Roster group under which the peer files this party (names its type, e.g. `Device`).
    pub group: String,
}

/// One roster item as the server holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEntry {
    /// Bare JID of the contact.
    pub jid: String,
    /// `none`, `to`, `from`, `both` (or `remove`).
    pub subscription: String,
    /// Roster name; empty when the item has none.
    pub nickname: String,
    pub groups: Vec<String>,
}

/// State of the component link, for readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Down,
    Up,
}

/// What can go wrong on the XMPP side. Each variant is a distinct situation the service maps to a
/// result code.
#[derive(Debug, thiserror::Error)]
pub enum XmppError {
    /// Rejected before anything was sent (node too long, forbidden characters, empty password).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The account already exists on the server.
    #[error("account already exists")]
    Conflict,
    /// The account does not exist on the server.
    #[error("account does not exist")]
    NotFound,
    /// The server refused the operation (IQ error, or a command completed with an error note).
    #[error("refused by the server: {0}")]
    Refused(String),
    /// No answer within the configured timeout.
    #[error("timed out")]
    Timeout,
    /// The component link is down (operation not attempted, or lost while waiting).
    #[error("component link down")]
    LinkDown,
    /// c2s login refused: wrong JID or password.
    #[error("authentication failed")]
    AuthFailed,
    /// A c2s session could not be established (connect, TLS, stream, bind).
    #[error("session failed: {0}")]
    SessionFailed(String),
    /// A subscription request was refused.
    #[error("subscription refused")]
    SubscriptionRefused,
    /// Bind: the two are already mutual contacts.
    #[error("already bound")]
    AlreadyBound,
    /// Unbind: the two are not contacts.
    #[error("not bound")]
    NotBound,
    /// The configured mode cannot work against this server (e.g. no roster privilege).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The server sent something we could not make sense of.
    #[error("protocol error: {0}")]
    Protocol(String),
}

mod adhoc;
mod api;
mod backoff;
mod c2s;
mod command;
mod component;
mod header_fix;
mod ibr;
mod pool;
mod quirks;
mod roster;
mod serve;
mod stanza;
mod tls;

pub use api::{check_login, validate_node, AccountCommands, Xmpp, OPENFIRE_IDLE_HALF};

#[cfg(feature = "testkit")]
pub mod testkit;
