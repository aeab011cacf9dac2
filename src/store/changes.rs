//! The feed of committed account changes: how a cache learns that what it holds is stale.
//!
//! A change is anything that makes a cached token or account wrong: a token deleted (logout,
//! cancel, password change, token cap, operator revoke, expiry prune), an account row updated in
//! any column but the login counters, an account deleted, or a pair row of the account inserted,
//! updated or deleted. The backends do not report changes
//! method by method: the database reports them, so a store method written later cannot forget to.
//!
//! - SQLite: triggers on the writer connection (temporary, so they cost no disk writes) record
//!   the account id of every such row in a temporary table, inside the write's own transaction
//!   (a rolled-back write leaves nothing). The writer thread drains the table after each commit
//!   and publishes the ids before any caller of that commit gets its answer, and whether or not
//!   the caller still waits.
//! - PostgreSQL: triggers (migration 0008) append each change to the `account_changes` table
//!   (`seq` bigserial) and `NOTIFY register_changes`; every instance listens on a connection of its
//!   own and reads the log by sequence number (see [`super::postgres`]). While that connection is
//!   down the feed is not [live](ChangeFeed::is_live): nothing may be answered from memory.
//!
//! Subscribers are called synchronously, on the thread that publishes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// One event of the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// This account, or one of its tokens, changed.
    Account(i64),
    /// Changes may have been missed (the log was pruned past what this instance had read):
    /// forget everything.
    Reset,
    /// The feed stopped (a subscriber must not answer from memory) or started again.
    Live(bool),
}

type Subscriber = Arc<dyn Fn(Change) + Send + Sync>;

/// Published by a backend, read by the caches in front of it.
pub struct ChangeFeed {
    live: AtomicBool,
    subscribers: RwLock<Vec<Subscriber>>,
}

impl ChangeFeed {
    /// A feed, live from the start or not (PostgreSQL: once its listener runs).
    pub fn new(live: bool) -> Arc<ChangeFeed> {
        Arc::new(ChangeFeed {
            live: AtomicBool::new(live),
            subscribers: RwLock::new(Vec::new()),
        })
    }

    /// Calls `f` with every event from now on.
    pub fn subscribe(&self, f: impl Fn(Change) + Send + Sync + 'static) {
        self.subscribers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(f));
    }

    /// Whether every change is being reported: false while a listener reconnects, when a cache
    /// must answer from the database.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    fn publish(&self, c: Change) {
        let subs = self
            .subscribers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for s in subs {
            s(c);
        }
    }

    /// Reports changes to these accounts.
    pub fn changed(&self, ids: impl IntoIterator<Item = i64>) {
        for id in ids {
            self.publish(Change::Account(id));
        }
    }

    /// Reports that changes may have been missed.
    pub fn reset(&self) {
        self.publish(Change::Reset);
    }

    /// Marks the feed stopped or running again. Stopping takes effect before the subscribers
    /// hear of it, starting after (a running feed is never observed before they know).
    pub fn set_live(&self, live: bool) {
        if !live {
            self.live.store(false, Ordering::SeqCst);
            self.publish(Change::Live(false));
        } else {
            self.publish(Change::Live(true));
            self.live.store(true, Ordering::SeqCst);
        }
    }
}
