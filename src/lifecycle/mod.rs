//! Lifecycles: how an account and a bound pair move through their states, the XMPP port those
//! steps use, and the reconciler that finishes what an interrupted request left behind.
//!
//! - `account` — reserve → create the JID → active; undo; deleting → gone.
//! - `pair` — bind, roll back, unbind, repair; `PairKey` orders a pair's two ids once.
//! - `port` — the `XmppPort` trait the core owns, its implementation by the `xmpp` crate's
//!   client and `Metered`, which times and counts every XMPP operation in one place.
//! - `fake_port` — an in-memory XMPP server behind the port, for tests without a server.
//! - `reconcile` — repairs `pending`/`deleting` accounts and `binding`/`unbinding` pairs.

pub mod account;
pub mod fake_port;
pub mod pair;
pub mod port;
pub mod reconcile;
