//! An account's lifecycle, written once: `pending` (reserved) → JID created → `active`; undone
//! from `pending`; `deleting` → gone.
//!
//! ```text
//!  reserve ──► pending ──create JID──► activate ──► active ──begin_delete──► deleting ──finish──► gone
//!                 │  (failed, or the reconciler claimed it)                     ▲
//!                 └──────────────── undo / claim_pending ───────────────────────┘
//! ```
//!
//! `/register`, `/cancel`, the reconciler and the CLI's `user delete` call these steps; none of
//! them writes an account's state by hand. Every step is a compare-and-set on the row, so a
//! request and the reconciler meeting on one record end with exactly one winner, and every remote
//! step is idempotent (a JID already gone is success), so an interrupted step is simply run again.

use rand::Rng;
use xmpp::XmppError;

use crate::app::App;
use crate::auth::crypto;
use crate::error::ApiError;
use crate::lifecycle::pair;
use crate::store::jid_pwd::Begun;
use crate::store::{Account, AccountState, NewAccount, StoreError};
use crate::types::UserName;

/// A generated JID node: `u` and 19 random lower-case letters and digits (nodeprep-stable,
/// not derived from the user name, which may be a phone number).
pub fn new_jid_node() -> String {
    "u".chars().chain(random_chars(19)).collect()
}

/// A generated XMPP password: 24 random letters and digits.
pub fn new_jid_password() -> String {
    random_chars(24).collect()
}

fn random_chars(n: usize) -> impl Iterator<Item = char> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    (0..n).map(move |_| CHARS[rng.gen_range(0..CHARS.len())] as char)
}

/// The XMPP-mode check: in `component` mode a JID is made and deleted through the link, so while
/// it is down an account step fails fast with 101 (and writes nothing) instead of waiting.
pub fn link_up(app: &App) -> Result<(), ApiError> {
    if app.xmpp.accounts_mode() == xmpp::AccountsMode::Component
        && app.xmpp.link_state() != xmpp::LinkState::Up
    {
        return Err(ApiError::NewJidFail("component link down".into()));
    }
    Ok(())
}

/// Reserve the name: the account's row, `pending`. 103 when the name is taken (the `UNIQUE` user
/// name decides between two concurrent requests).
pub async fn reserve(app: &App, new: NewAccount) -> Result<i64, ApiError> {
    match app.store.insert_pending_account(new, app.now()).await {
        Ok(id) => Ok(id),
        Err(StoreError::Exists) => Err(ApiError::UserExists),
        Err(e) => Err(e.into()),
    }
}

/// A reserved account on its way to `active`: its row and the JID it is to get.
pub struct Reserved<'a> {
    pub id: i64,
    pub name: &'a UserName,
    pub node: &'a str,
    pub jid_pwd: &'a str,
}

/// Create the reserved account's JID, then make it `active`. On any failure the reservation is
/// undone (the JID deleted too when it may exist) or, when that cannot be done now, left
/// `pending` for the reconciler; `Ok` means the JID exists and the activation is committed.
pub async fn create_jid(app: &App, r: &Reserved<'_>) -> Result<(), ApiError> {
    match app.xmpp.create_account(r.node, r.jid_pwd).await {
        Ok(()) => activate(app, r).await,
        Err(e) => {
            tracing::warn!(user = %r.name, error = %e, "JID creation failed");
            // When the JID may exist (timeout, lost link, garbled reply) it is deleted too.
            let may_exist = matches!(
                e,
                XmppError::Timeout
                    | XmppError::LinkDown
                    | XmppError::Protocol(_)
                    | XmppError::SessionFailed(_)
            );
            undo(app, r, may_exist).await;
            Err(ApiError::from_provisioning(e))
        }
    }
}

/// The JID exists: `pending` → `active` (compare-and-set). If the reconciler claimed the row
/// meanwhile, or the write failed, the JID is deleted again (or left, with its record, for the
/// reconciler).
async fn activate(app: &App, r: &Reserved<'_>) -> Result<(), ApiError> {
    let err = match app
        .store
        .transition_account(r.id, AccountState::Pending, AccountState::Active, app.now())
        .await
    {
        Ok(true) => {
            tracing::info!(user = %r.name, jid = %app.xmpp.jid_of(r.node), "registered");
            return Ok(());
        }
        // The reconciler took the row (it runs while requests may be in flight, e.g. at start):
        // the account is being removed, so the JID made here must go too.
        Ok(false) => ApiError::NewJidFail("registration interrupted by the reconciler".into()),
        Err(e) => e.into(),
    };
    tracing::warn!(user = %r.name, error = %err, "could not activate; undoing the JID");
    undo(app, r, true).await;
    Err(err)
}

/// Remove a pending account that did not become active. When the JID may exist it is deleted
/// first; if that cannot be done now the pending row stays for the reconciler. Only a `pending`
/// row is deleted: one the reconciler has claimed (`deleting`) is its to finish.
async fn undo(app: &App, r: &Reserved<'_>, jid_may_exist: bool) {
    if jid_may_exist {
        if let Err(e) = delete_jid(app, r.node, r.jid_pwd).await {
            tracing::warn!(jid_node = r.node, error = %e, "left pending for the reconciler");
            return;
        }
    }
    match claim_pending(app, r.id).await {
        Ok(true) => {
            if let Err(e) = app.store.delete_account(r.id).await {
                tracing::error!(error = %e, "removing a failed pending account (left for the reconciler)");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "removing a failed pending account"),
    }
}

/// Claim a `pending` account for removal (`pending` → `deleting`); false when it is no longer
/// pending (its registration finished, or another remover claimed it).
pub async fn claim_pending(app: &App, id: i64) -> Result<bool, ApiError> {
    Ok(app
        .store
        .transition_account(id, AccountState::Pending, AccountState::Deleting, app.now())
        .await?)
}

/// → `deleting` (from any other state), and every token revoked, in one transaction: the account
/// is unusable at once and gains no new pair. False when it was `deleting` already (another
/// cancel won).
pub async fn begin_delete(app: &App, account: &Account) -> Result<bool, ApiError> {
    Ok(app.store.begin_cancel(account.id, app.now()).await?)
}

/// What [`finish_delete`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Pairs removed from both rosters.
    pub pairs: u64,
    /// Whether the JID still existed and was deleted.
    pub jid_deleted: bool,
}

/// `deleting` → gone: unbind every peer, delete the JID, delete the row. A pair that cannot be
/// unbound now keeps its `unbinding` row, the others are still done, and the JID and the row stay
/// (`deleting`) for the reconciler, which runs this again; every step is idempotent.
pub async fn finish_delete(app: &App, account: &Account) -> Result<Finished, ApiError> {
    let mut done = Finished::default();
    let mut first_err = None;
    for b in app.store.bindings_of(account.id).await? {
        match pair::remove_for_delete(app, account, &b).await {
            Ok(()) => done.pairs += 1,
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    // Deleting through the component needs no password: an account whose `jid_pwd` cannot be
    // opened (e.g. a lost encryption key) can still be removed in `component` mode.
    let jid_pwd = app.jid_pwd(account).unwrap_or_default();
    done.jid_deleted = delete_jid(app, &account.jid_node, &jid_pwd)
        .await
        .map_err(ApiError::from_provisioning)?;
    app.store.delete_account(account.id).await?;
    Ok(done)
}

/// Delete an account whatever state it is in (the operator's `user delete`): claimed for removal
/// unless a removal is under way already, then finished.
pub async fn delete(app: &App, account: &Account) -> Result<Finished, ApiError> {
    if account.state != AccountState::Deleting {
        begin_delete(app, account).await?;
    }
    finish_delete(app, account).await
}

/// Delete a JID; true when it existed. A JID that is already gone is success (`NotFound`; in
/// `ibr` mode, where deleting means logging in, `AuthFailed`).
pub async fn delete_jid(app: &App, node: &str, jid_pwd: &str) -> Result<bool, XmppError> {
    match app.xmpp.delete_account(node, jid_pwd).await {
        Ok(()) => Ok(true),
        Err(XmppError::NotFound) => Ok(false),
        Err(XmppError::AuthFailed) if app.xmpp.accounts_mode() == xmpp::AccountsMode::Ibr => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// How long a renewal holds its account, in seconds: while a pending password is younger than
/// this, another renewal of the account is refused as busy (112) and the reconciler leaves it
/// alone. Longer than a renewal's XMPP steps can take (change-user-password and
/// end-user-session, two round trips each, every one bounded by `xmpp.timeout_ms`), so that
/// the claim does not lapse while its holder is still talking to the server.
pub fn renewal_lease_secs(app: &App) -> i64 {
    (4 * app.cfg.xmpp.timeout_ms).div_ceil(1000) as i64 + 1
}

/// A new XMPP password for active account `me`: stored as pending first, set on the server,
/// then made its `jid_pwd`; the password that is now the account's. An interrupted renewal's
/// pending password is taken up instead of a fresh one once its claim has lapsed, so that the
/// service always knows every password the server may hold; while another renewal of the
/// account holds its claim, [`ApiError::InProgress`].
pub async fn renew_jid_pwd(app: &App, me: &Account) -> Result<String, ApiError> {
    let fresh = crypto::seal(
        &app.secrets.encryption_key,
        &me.jid_node,
        &new_jid_password(),
    );
    let now = app.now();
    match app
        .jid_pwds
        .begin_jid_pwd(me.id, Some(fresh), now, now - renewal_lease_secs(app))
        .await?
    {
        Begun::Pending(pending) => finish_renewal(app, me, pending).await,
        Begun::Busy => Err(ApiError::InProgress),
        // Cancelled meanwhile.
        Begun::Nothing => Err(ApiError::AccessToken),
    }
}

/// Set the pending password `pending` (sealed) of `me`, claimed by the caller, on the server,
/// commit it and end the account's XMPP sessions; the password the account now has. Run by
/// [`renew_jid_pwd`] and, for renewals a crash or an error interrupted, by the reconciler.
/// Setting a password the account already has succeeds, so this may run again.
///
/// A commit that finds another pending password, or none, lost a race: the claim lapsed while
/// the server was slow, another renewal took the same password up and committed it, and a
/// later one may have set a newer password that this call's late change has just overwritten
/// on the server. So the row is read again and its password set once more ([`settle`]).
pub async fn finish_renewal(app: &App, me: &Account, pending: Vec<u8>) -> Result<String, ApiError> {
    let key = &app.secrets.encryption_key;
    let current = crypto::open(key, &me.jid_node, &me.jid_pwd).ok_or(ApiError::NoJid)?;
    let new = crypto::open(key, &me.jid_node, &pending).ok_or(ApiError::NoJid)?;
    set_on_server(app, &me.jid_node, &current, &new).await?;
    let now_has = if app
        .jid_pwds
        .commit_jid_pwd(me.id, pending, app.now())
        .await?
    {
        new
    } else {
        tracing::warn!(user = %me.user_name, "renewal overtaken by another; setting the stored password again");
        settle(app, me, &new).await?
    };
    end_sessions(app, me).await;
    Ok(now_has)
}

/// Set `new` on the server for `node`. Over c2s the user logs in with `current`; when that no
/// longer works (an interrupted or concurrent renewal changed it already) with `new`, which the
/// server then has.
async fn set_on_server(app: &App, node: &str, current: &str, new: &str) -> Result<(), ApiError> {
    let changed = match app.xmpp.set_password(node, current, new).await {
        Err(XmppError::AuthFailed) => app.xmpp.set_password(node, new, new).await,
        other => other,
    };
    changed.map_err(ApiError::from_roster)
}

/// After a lost commit: the row's password (its pending one, or its `jid_pwd` made pending
/// again) set on the server once more and committed, until a commit holds; `known` is the
/// password the server has after this call's own late change. The password the account now
/// has. A failure leaves the pending password for the reconciler.
async fn settle(app: &App, me: &Account, known: &str) -> Result<String, ApiError> {
    let key = &app.secrets.encryption_key;
    let mut known = known.to_owned();
    for _ in 0..3 {
        let sealed = app
            .jid_pwds
            .rearm_jid_pwd(me.id, app.now())
            .await?
            .ok_or(ApiError::AccessToken)?;
        let want = crypto::open(key, &me.jid_node, &sealed).ok_or(ApiError::NoJid)?;
        set_on_server(app, &me.jid_node, &known, &want).await?;
        if app
            .jid_pwds
            .commit_jid_pwd(me.id, sealed, app.now())
            .await?
        {
            return Ok(want);
        }
        known = want;
    }
    // Renewals keep overtaking this one: the last of them settles the row.
    Err(ApiError::InProgress)
}

/// End every XMPP session of the account, so that one opened with the old password (a device
/// whose password leaked) does not outlive it. The password has changed already: a failure (a
/// server that refuses the command, `ibr` mode) is logged and counted
/// (`register_xmpp_operations_total{op="end_sessions",ok="false"}`), never the renewal's.
async fn end_sessions(app: &App, me: &Account) {
    if let Err(e) = app.xmpp.end_sessions(&me.jid_node).await {
        tracing::warn!(user = %me.user_name, error = %e, "could not end the XMPP sessions of the old password");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_nodes_are_valid() {
        let n = super::new_jid_node();
        assert_eq!(n.len(), 20);
        assert!(xmpp::validate_node(&n).is_ok());
        assert_ne!(n, super::new_jid_node());
        assert_eq!(super::new_jid_password().len(), 24);
    }
}
