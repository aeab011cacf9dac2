//! A bound pair's lifecycle, written once: `binding` → (both rosters) → `bound`; rolled back from
//! `binding`; `bound` → `unbinding` → gone.
//!
//! ```text
//!  bind ──► binding ──server bind──► bound ──unbind──► unbinding ──server unbind──► gone
//!              │ (failed, or claimed by a cancel / the reconciler)      ▲
//!              └──────────── roll back / repair ────────────────────────┘
//! ```
//!
//! A pair is stored once under its [`PairKey`] (the smaller id first). `/set_user_banding`,
//! `/set_user_unbanding`, `/cancel` (through the account's deletion) and the reconciler call these
//! steps. Each change of the row is a compare-and-set, and the server steps are idempotent (an
//! unbind of a pair that is not bound is success), so an interrupted step is run again safely.

use std::sync::Arc;

use xmpp::XmppError;

use crate::app::{App, Call};
use crate::error::ApiError;
use crate::store::{Account, AccountState, Binding, BindingState, PairCaps, StoreError};
use crate::types::{user_name_list, AccountType};

/// Most peers one request may name.
pub const MAX_PEERS: usize = 100;

/// The two ids of a pair in the order the store keeps them: the smaller first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PairKey {
    pub a: i64,
    pub b: i64,
}

impl PairKey {
    /// The pair of `x` and `y`, in either order.
    pub fn of(x: i64, y: i64) -> PairKey {
        PairKey {
            a: x.min(y),
            b: x.max(y),
        }
    }

    /// The key of a stored pair row.
    pub fn of_row(b: &Binding) -> PairKey {
        PairKey::of(b.a, b.b)
    }

    /// The other side of the pair, seen from `me`.
    pub fn other(&self, me: i64) -> i64 {
        if self.a == me {
            self.b
        } else {
            self.a
        }
    }
}

/// The pair's row, if any.
pub async fn row(app: &App, key: PairKey) -> Result<Option<Binding>, ApiError> {
    Ok(app.store.binding(key.a, key.b).await?)
}

/// Whether `x` and `y` are bound (state `bound`, not on their way in or out).
pub async fn is_bound(app: &App, x: i64, y: i64) -> Result<bool, ApiError> {
    Ok(row(app, PairKey::of(x, y))
        .await?
        .is_some_and(|b| b.state == BindingState::Bound))
}

/// Bind `me` and `peer`: the `binding` row (refused past a cap, for a pair that exists, or when
/// either side stopped being active), both rosters, then `bound` by compare-and-set. A pair that
/// fails, or that a cancel or the reconciler claimed meanwhile, is rolled back.
pub async fn bind(app: &App, me: &Account, peer: &Account) -> Result<(), ApiError> {
    let key = PairKey::of(me.id, peer.id);
    let (pa, pb) = (app.party(me)?, app.party(peer)?);
    // The record: the primary key lets one of two concurrent binds of a pair in (the other gets
    // 109), and the insert is refused when either account stopped being active (a cancel began).
    // The caps once more, atomically with the insert: of concurrent binds of one device, only
    // as many as its cap allows get in.
    let (device, phone) = if me.kind == AccountType::Device {
        (me, peer)
    } else {
        (peer, me)
    };
    let caps = PairCaps {
        device: device.id,
        max_phones: app.cfg.binding.max_phones_per_device,
        phone: phone.id,
        max_devices: app.cfg.binding.max_devices_per_phone,
    };
    match app
        .store
        .insert_binding_capped(key.a, key.b, app.now(), caps)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return Err(ApiError::NotPermitted(
                "a side reached its cap meanwhile".into(),
            ))
        }
        Err(StoreError::Exists) => return Err(ApiError::AlreadyInRoster),
        Err(StoreError::Changed) => return Err(interrupted(app, me, peer).await),
        Err(e) => return Err(e.into()),
    }
    let err = match app.xmpp.bind(&pa, &pb).await {
        // Already mutual contacts on the server (e.g. through the users' own clients): the
        // database now agrees with it.
        Ok(()) | Err(XmppError::AlreadyBound) => {
            match app
                .store
                .transition_binding(
                    key.a,
                    key.b,
                    BindingState::Binding,
                    BindingState::Bound,
                    app.now(),
                )
                .await
            {
                Ok(true) => return Ok(()),
                // A cancel of either side or the reconciler claimed the pair meanwhile: it is
                // being undone, so this bind did not happen.
                Ok(false) => interrupted(app, me, peer).await,
                // Bound on the server, not recorded: undo (the `binding` row stays for the
                // reconciler if this cannot finish).
                Err(e) => e.into(),
            }
        }
        // The reconciler or a cancel may have claimed the pair while the server was busy with it
        // (its unbind can cut the subscription handshake short): then that, not the error the
        // handshake met, is why this bind did not happen (107 or 104). The roll-back below runs
        // all the same: what this bind did after their unbind would otherwise stay.
        Err(e) => match row(app, key).await {
            Ok(Some(r)) if r.state == BindingState::Binding => ApiError::from_roster(e),
            Ok(_) => interrupted(app, me, peer).await,
            Err(_) => ApiError::from_roster(e),
        },
    };
    roll_back(app, key, &pa, &pb).await;
    Err(err)
}

/// Why a pair was taken from a bind: 104 for a side that is being cancelled, else 107 (the
/// reconciler claimed it; the client may retry).
async fn interrupted(app: &App, me: &Account, peer: &Account) -> ApiError {
    for a in [me, peer] {
        match app.store.account_by_id(a.id).await {
            Ok(Some(x)) if x.state == AccountState::Active => {}
            _ => return ApiError::UserNotExist(a.user_name.clone()),
        }
    }
    ApiError::JidNotLogin("bind interrupted by the reconciler".into())
}

/// Remove a pair that did not become `bound` from both rosters and delete its `binding` row. If
/// the server cannot be reached the row stays, and the reconciler finishes the job.
async fn roll_back(app: &App, key: PairKey, pa: &xmpp::Party, pb: &xmpp::Party) {
    match unbind_server(app, pa, pb).await {
        Ok(()) => {
            if let Err(e) = app
                .store
                .delete_binding_in(key.a, key.b, BindingState::Binding)
                .await
            {
                tracing::warn!(error = %e, "failed pair left for the reconciler");
            }
        }
        Err(e) => tracing::warn!(error = %e, "half-bound pair left for the reconciler"),
    }
}

/// Unbind a `bound` pair: `bound` → `unbinding` (compare-and-set: of two concurrent unbinds one
/// wins, the other gets 110), both rosters, then the row is deleted. An unbind the server could
/// not finish keeps its `unbinding` row and the reconciler completes it.
pub async fn unbind(app: &App, me: &Account, peer: &Account) -> Result<(), ApiError> {
    let key = PairKey::of(me.id, peer.id);
    if !app
        .store
        .transition_binding(
            key.a,
            key.b,
            BindingState::Bound,
            BindingState::Unbinding,
            app.now(),
        )
        .await?
    {
        return Err(ApiError::NotInRoster);
    }
    unbind_server(app, &app.party(me)?, &app.party(peer)?)
        .await
        .map_err(ApiError::from_roster)?;
    app.store
        .delete_binding_in(key.a, key.b, BindingState::Unbinding)
        .await?;
    Ok(())
}

/// Remove one pair of an account being deleted, from any state: claimed (`unbinding`, so a bind
/// in flight fails its compare-and-set to `bound` and rolls back), unbound on the server, deleted.
/// On a server failure the `unbinding` row stays for the reconciler.
pub async fn remove_for_delete(app: &App, account: &Account, b: &Binding) -> Result<(), ApiError> {
    let key = PairKey::of_row(b);
    if let Some(peer) = app.store.account_by_id(key.other(account.id)).await? {
        app.store
            .set_binding_state(key.a, key.b, BindingState::Unbinding, app.now())
            .await?;
        if let Err(e) = unbind_server(app, &app.party(account)?, &app.party(&peer)?).await {
            tracing::warn!(user = %account.user_name, peer = %peer.user_name, error = %e,
                "cancel: unbind failed; left for the reconciler");
            return Err(ApiError::from_roster(e));
        }
    }
    app.store.delete_binding(key.a, key.b).await?;
    Ok(())
}

/// The reconciler's repair of an interrupted pair: a `binding` pair is claimed (`unbinding`) and
/// rolled back, an `unbinding` one finished; both end unbound on both sides and their row gone.
/// `Ok(false)` when the bind finished (or was rolled back) before the claim.
pub async fn repair(app: &App, b: &Binding) -> Result<bool, ApiError> {
    let key = PairKey::of_row(b);
    if b.state == BindingState::Binding
        && !app
            .store
            .transition_binding(
                key.a,
                key.b,
                BindingState::Binding,
                BindingState::Unbinding,
                app.now(),
            )
            .await?
    {
        return Ok(false);
    }
    let x = app.store.account_by_id(key.a).await?;
    let y = app.store.account_by_id(key.b).await?;
    // (A deleted account takes its pair rows with it, so both are normally there.)
    if let (Some(x), Some(y)) = (x, y) {
        unbind_server(app, &app.party(&x)?, &app.party(&y)?)
            .await
            .map_err(ApiError::from_roster)?;
    }
    app.store
        .delete_binding_in(key.a, key.b, BindingState::Unbinding)
        .await?;
    Ok(true)
}

/// Both rosters cleared of each other; a pair that is not bound there is fine.
async fn unbind_server(app: &App, pa: &xmpp::Party, pb: &xmpp::Party) -> Result<(), XmppError> {
    match app.xmpp.unbind(pa, pb).await {
        Ok(()) | Err(XmppError::NotBound) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Every active account bound to `me` (pairs still being bound or unbound are left to their
/// operation; a peer being cancelled is left to its cancel, which removes the pair).
pub async fn bound_peers(app: &App, me: &Account) -> Result<Vec<Arc<Account>>, ApiError> {
    let mut out = Vec::new();
    for b in app.store.bindings_of(me.id).await? {
        if b.state != BindingState::Bound {
            continue;
        }
        match app
            .store
            .account_by_id(PairKey::of_row(&b).other(me.id))
            .await?
        {
            Some(a) if a.state == AccountState::Active => out.push(Arc::new(a)),
            _ => {}
        }
    }
    Ok(out)
}

/// The ids of the accounts bound to `me` (state `bound`), read once per copy of `me` (see
/// [`Memo`](crate::store::Memo)).
pub async fn bound_ids<'a>(app: &App, me: &'a Account) -> Result<&'a [i64], ApiError> {
    if let Some(ids) = me.memo.bound.get() {
        return Ok(ids);
    }
    let ids = app
        .store
        .bindings_of(me.id)
        .await?
        .iter()
        .filter(|b| b.state == BindingState::Bound)
        .map(|b| PairKey::of_row(b).other(me.id))
        .collect();
    Ok(me.memo.bound.get_or_init(|| ids))
}

/// The active accounts named in `user_name_ls` (104 for the first missing; 2 for the caller).
pub async fn named_peers(
    app: &App,
    call: &Call,
    me: &Account,
) -> Result<Vec<Arc<Account>>, ApiError> {
    let names = user_name_list(call.required("user_name_ls")?, MAX_PEERS)?;
    let wanted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    if wanted.contains(&me.user_name) {
        return Err(ApiError::Params("a user cannot bind to itself".into()));
    }
    let found = app.store.accounts_by_names(&wanted).await?;
    wanted
        .iter()
        .map(|n| {
            found
                .iter()
                .find(|a| &a.user_name == n && a.state == AccountState::Active)
                .cloned()
                .ok_or_else(|| ApiError::UserNotExist(n.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::PairKey;

    #[test]
    fn a_pair_key_orders_its_ids_once() {
        assert_eq!(PairKey::of(7, 3), PairKey::of(3, 7));
        let k = PairKey::of(7, 3);
        assert_eq!((k.a, k.b), (3, 7));
        assert_eq!((k.other(3), k.other(7)), (7, 3));
    }
}
