//! The reconciler: finishes or undoes what a crash, a refused JID or a lost link left half-done.
//!
//! | record | meaning | repair |
//! |---|---|---|
//! | account `pending` | JID creation may or may not have happened; the client never got 0 | claim it (`pending` → `deleting`), delete the JID (if any), delete the row |
//! | account `deleting` | a cancel was accepted | finish it (`account::finish_delete`) |
//! | pair `binding` | a bind was interrupted; the client never got 0 | claim it (`binding` → `unbinding`), unbind both sides, delete the row |
//! | pair `unbinding` | an unbind was interrupted | unbind both sides, delete the row |
//! | account `active` with a pending `jid_pwd` | a `/renew_jid_pwd` was interrupted; the server may have either password | once its claim has lapsed (`account::renewal_lease_secs`, even at start: it may be another instance's request in flight), claim it, read the pending one again, set it on the server, make it the `jid_pwd` |
//!
//! Only one instance at a time reconciles: [`run_exclusive`] takes the store's reconciler lease
//! (an advisory lock on PostgreSQL, always granted on SQLite) and skips the run when another
//! instance holds it.
//!
//! It runs at start (every record), periodically (records older than `reconcile.grace_secs`, so
//! requests in flight are left alone) and by `register reconcile`.
//!
//! The claims are compare-and-set, as are the requests' own final steps (`pending` → `active`,
//! `binding` → `bound`), so when the reconciler meets a record whose request is still running (the
//! run at start, or `register reconcile`, take every record) exactly one side wins: either the
//! request finished first and the record is skipped, or the reconciler claimed it and the request
//! undoes its own remote step and does not answer 0.

use crate::app::App;
use crate::error::ApiError;
use crate::lifecycle::{account, pair};
use crate::store::jid_pwd::Begun;
use crate::store::{AccountState, Binding, BindingState};

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Unfinished records found.
    pub found: u64,
    /// Records finished or undone by this run.
    pub repaired: u64,
    /// Records that could not be repaired now (they stay for the next run).
    pub failed: u64,
    /// Records another operation finished first (nothing left to do).
    pub skipped: u64,
    /// Interrupted registrations removed (`pending` accounts).
    pub pending_removed: u64,
    /// JIDs of interrupted registrations that existed on the server and were deleted.
    pub orphan_jids_deleted: u64,
    /// Interrupted cancels finished (`deleting` accounts).
    pub cancels_finished: u64,
    /// Interrupted binds rolled back (`binding` pairs unbound on both sides).
    pub binds_rolled_back: u64,
    /// Interrupted unbinds finished (`unbinding` pairs).
    pub unbinds_finished: u64,
    /// Interrupted `/renew_jid_pwd` finished (pending XMPP passwords set and committed).
    pub renewals_finished: u64,
}

impl Report {
    /// Records handled so far, whatever the outcome.
    pub fn done(&self) -> u64 {
        self.repaired + self.failed + self.skipped
    }
}

/// How one record ended.
enum Outcome {
    Repaired(String),
    Skipped,
}

/// [`run`] under the reconciler lease; `None` (nothing done) when another instance holds it.
pub async fn run_exclusive(
    app: &App,
    before: i64,
    progress: &mut (dyn FnMut(&Report, &str) + Send),
) -> Result<Option<Report>, ApiError> {
    if !app.store.try_lock_reconciler().await? {
        return Ok(None);
    }
    let r = run(app, before, progress).await;
    if let Err(e) = app.store.unlock_reconciler().await {
        tracing::warn!(error = %e, "releasing the reconciler lease");
    }
    r.map(Some)
}

/// Repair every record last touched before `before`; `progress` is told after each record, with
/// the record and what happened to it.
pub async fn run(
    app: &App,
    before: i64,
    progress: &mut (dyn FnMut(&Report, &str) + Send),
) -> Result<Report, ApiError> {
    let (accounts, bindings) = app.store.unfinished(before).await?;
    let mut rep = Report {
        found: (accounts.len() + bindings.len()) as u64,
        ..Report::default()
    };
    for b in bindings {
        let what = format!("pair {}-{} ({})", b.a, b.b, b.state.as_str());
        let r = repair_pair(app, &b, &mut rep).await;
        tally(&mut rep, &what, r, progress);
    }
    for a in accounts {
        let what = format!("account {} ({})", a.user_name, a.state.as_str());
        let r = async {
            // Fail fast instead of waiting on every record.
            account::link_up(app)?;
            match a.state {
                AccountState::Deleting => {
                    let f = account::finish_delete(app, &a).await?;
                    rep.cancels_finished += 1;
                    Ok(Outcome::Repaired(format!(
                        "cancel finished ({} pairs unbound, JID {})",
                        f.pairs,
                        if f.jid_deleted {
                            "deleted"
                        } else {
                            "already gone"
                        }
                    )))
                }
                AccountState::Pending => {
                    if !account::claim_pending(app, a.id).await? {
                        return Ok(Outcome::Skipped);
                    }
                    let f = account::finish_delete(app, &a).await?;
                    rep.pending_removed += 1;
                    if f.jid_deleted {
                        rep.orphan_jids_deleted += 1;
                    }
                    Ok(Outcome::Repaired(if f.jid_deleted {
                        "registration undone (orphan JID deleted)".into()
                    } else {
                        "registration undone (no JID had been made)".into()
                    }))
                }
                AccountState::Active => Ok(Outcome::Skipped),
            }
        }
        .await;
        tally(&mut rep, &what, r, progress);
    }
    let renewals = app.jid_pwds.pending_jid_pwds(before).await?;
    rep.found += renewals.len() as u64;
    for (id, _) in renewals {
        let what = format!("account {id} (renewing its XMPP password)");
        let r = async {
            account::link_up(app)?;
            let Some(a) = app.store.account_by_id(id).await? else {
                return Ok(Outcome::Skipped);
            };
            // Claimed, and the pending password read again, right before it is set: a request
            // that took it up or committed it meanwhile, or still holds it, wins.
            let now = app.now();
            let stale_before = before.min(now - account::renewal_lease_secs(app));
            match app
                .jid_pwds
                .begin_jid_pwd(id, None, now, stale_before)
                .await?
            {
                Begun::Pending(pending) => {
                    account::finish_renewal(app, &a, pending).await?;
                    rep.renewals_finished += 1;
                    Ok(Outcome::Repaired("XMPP password renewal finished".into()))
                }
                Begun::Busy | Begun::Nothing => Ok(Outcome::Skipped),
            }
        }
        .await;
        tally(&mut rep, &what, r, progress);
    }
    app.metrics.repaired(rep.repaired);
    Ok(rep)
}

/// Undo an interrupted bind, or finish an interrupted unbind: both end unbound on both sides.
async fn repair_pair(app: &App, b: &Binding, rep: &mut Report) -> Result<Outcome, ApiError> {
    if !pair::repair(app, b).await? {
        // The bind finished (or was rolled back) meanwhile.
        return Ok(Outcome::Skipped);
    }
    Ok(Outcome::Repaired(if b.state == BindingState::Binding {
        rep.binds_rolled_back += 1;
        "bind rolled back (unbound on both sides)".into()
    } else {
        rep.unbinds_finished += 1;
        "unbind finished".into()
    }))
}

fn tally(
    rep: &mut Report,
    what: &str,
    r: Result<Outcome, ApiError>,
    progress: &mut (dyn FnMut(&Report, &str) + Send),
) {
    let line = match r {
        Ok(Outcome::Repaired(how)) => {
            rep.repaired += 1;
            tracing::info!(record = what, how = %how, "reconciled");
            format!("{what}: {how}")
        }
        Ok(Outcome::Skipped) => {
            rep.skipped += 1;
            format!("{what}: already finished by another operation")
        }
        Err(e) => {
            rep.failed += 1;
            tracing::warn!(record = what, error = %e, "could not reconcile yet");
            format!("{what}: LEFT for the next run: {e}")
        }
    };
    progress(rep, &line);
}

#[cfg(test)]
mod tests {
    use xmpp::LinkState;

    use super::{run, Report};
    use crate::cmd::testkit::Kit;
    use crate::lifecycle::fake_port::{Fault, Op};
    use crate::lifecycle::pair::{self, PairKey};
    use crate::store::{AccountState, BindingState};
    use crate::types::AccountType;

    async fn reconcile(k: &Kit) -> Report {
        run(&k.app, k.app.now() + 1, &mut |_, _| {}).await.unwrap()
    }

    /// A device "a" whose cancel stopped after its first step (the record says `deleting`).
    async fn interrupted_cancel(k: &Kit) {
        let (a, _) = k.account("a", AccountType::Device).await;
        let now = k.app.now();
        k.app.store.begin_cancel(a.id, now).await.unwrap();
    }

    #[tokio::test]
    async fn interrupted_registrations_and_cancels_are_finished() {
        let k = Kit::new().await;
        let (orphan, _) = k.account("orphan", AccountType::Device).await;
        let (gone, _) = k.account("gone", AccountType::Device).await;
        let (p, _) = k.account("p", AccountType::Phone).await;
        k.bind(&gone, &p).await;
        // A registration that made its JID but never got to `active`; a cancel that stopped
        // after its first step.
        let store = &k.app.store;
        let now = k.app.now();
        store
            .set_account_state(orphan.id, AccountState::Pending, now)
            .await
            .unwrap();
        assert!(store.begin_cancel(gone.id, now).await.unwrap());
        let rep = reconcile(&k).await;
        assert_eq!((rep.found, rep.repaired, rep.failed), (2, 2, 0));
        assert_eq!((rep.pending_removed, rep.orphan_jids_deleted), (1, 1));
        assert_eq!(rep.cancels_finished, 1);
        assert!(k.named("orphan").await.is_none() && k.named("gone").await.is_none());
        assert!(!k.xmpp.has_account(&orphan.jid_node) && !k.xmpp.has_account(&gone.jid_node));
        assert!(!k.xmpp.is_bound(&gone.jid_node, &p.jid_node));
        assert_eq!(reconcile(&k).await.found, 0);
    }

    #[tokio::test]
    async fn with_the_link_down_account_records_are_left_for_the_next_run() {
        let k = Kit::new().await;
        interrupted_cancel(&k).await;
        k.xmpp.set_link(LinkState::Down);
        let rep = reconcile(&k).await;
        assert_eq!((rep.found, rep.failed), (1, 1));
        assert_eq!(k.xmpp.calls(Op::Delete), 0, "failed fast");
        k.xmpp.set_link(LinkState::Up);
        assert_eq!(reconcile(&k).await.repaired, 1);
    }

    #[tokio::test]
    async fn interrupted_binds_are_rolled_back_on_both_sides() {
        let k = Kit::new().await;
        let ((p, _), (d, _)) = k.bound_pair().await;
        let key = PairKey::of(p.id, d.id);
        let now = k.app.now();
        k.app
            .store
            .set_binding_state(key.a, key.b, BindingState::Binding, now)
            .await
            .unwrap();
        k.xmpp.fail_once(Op::Unbind, Fault::Timeout);
        let rep = reconcile(&k).await;
        assert_eq!(rep.failed, 1, "the server did not answer");
        let row = pair::row(&k.app, key).await.unwrap().unwrap();
        assert_eq!(
            row.state,
            BindingState::Unbinding,
            "claimed, left for the next run"
        );
        let rep = reconcile(&k).await;
        assert_eq!(rep.unbinds_finished, 1);
        assert!(pair::row(&k.app, key).await.unwrap().is_none());
        assert!(!k.xmpp.is_bound(&p.jid_node, &d.jid_node));
    }

    #[tokio::test]
    async fn the_reconcilers_xmpp_steps_are_counted_like_the_requests() {
        let k = Kit::new().await;
        interrupted_cancel(&k).await;
        reconcile(&k).await;
        let m = k.app.metrics.render(crate::service::metrics::Scrape {
            link_up: true,
            link_connects: 1,
            link_failures: 0,
            hash_queue: 0,
        });
        for needle in [
            "register_xmpp_operations_total{op=\"create_account\",ok=\"true\"} 1",
            "register_xmpp_operations_total{op=\"delete_account\",ok=\"true\"} 1",
        ] {
            assert!(m.contains(needle), "missing {needle} in\n{m}");
        }
    }

    #[tokio::test]
    async fn an_interrupted_renewal_is_finished_and_login_hands_out_the_server_password() {
        let k = Kit::new().await;
        let (a, _) = k.account("lamp", AccountType::Device).await;
        let new = "renewed-password-000001";
        let sealed = crate::auth::crypto::seal(&k.app.secrets.encryption_key, &a.jid_node, new);
        // A renewal that stored its password and died before the server heard of it.
        let now = k.app.now();
        k.app
            .jid_pwds
            .begin_jid_pwd(a.id, Some(sealed), now, now)
            .await
            .unwrap();
        // A young one is left alone (it may be a request in flight, of another instance too).
        let r = reconcile(&k).await;
        assert_eq!((r.found, r.skipped), (1, 1), "{r:?}");
        assert_eq!(k.xmpp.calls(Op::SetPassword), 0);
        k.clock
            .advance(crate::lifecycle::account::renewal_lease_secs(&k.app) + 1);
        k.xmpp.fail_once(Op::SetPassword, Fault::Timeout);
        let r = reconcile(&k).await;
        assert_eq!((r.found, r.failed, r.renewals_finished), (1, 1, 0), "{r:?}");
        // The failed attempt claimed it again: the change it sent may still land.
        assert_eq!(reconcile(&k).await.skipped, 1);
        k.clock
            .advance(crate::lifecycle::account::renewal_lease_secs(&k.app) + 1);
        let r = reconcile(&k).await;
        assert_eq!(
            (r.found, r.repaired, r.renewals_finished),
            (1, 1, 1),
            "{r:?}"
        );
        assert_eq!(k.xmpp.password_of(&a.jid_node).as_deref(), Some(new));
        let stored = k.named("lamp").await.unwrap();
        assert_eq!(k.app.jid_pwd(&stored).unwrap(), new);
        assert_eq!(reconcile(&k).await.found, 0, "nothing left pending");
    }
}
