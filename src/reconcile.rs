//! The reconciler: finishes or undoes what a crash, a refused JID or a lost link left half-done.
//!
//! | record | meaning | repair |
//! |---|---|---|
//! | account `pending` | JID creation may or may not have happened; the client never got 0 | delete the JID (if any), delete the row |
//! | account `deleting` | a cancel was accepted | finish it (`cmd::cancel::finish`) |
//! | pair `binding` | a bind was interrupted; the client never got 0 | unbind both sides, delete the row |
//! | pair `unbinding` | an unbind was interrupted | unbind both sides, delete the row |
//!
//! It runs at start (every record), periodically (records older than `reconcile.grace_secs`, so
//! requests in flight are left alone) and by `register reconcile`.

use xmpp::XmppError;

use crate::app::App;
use crate::error::ApiError;
use crate::store::AccountState;

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub found: u64,
    pub repaired: u64,
    pub failed: u64,
}

/// Repair every record last touched before `before`; `progress` is told after each record.
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
        let r = async {
            let a = app.store.account_by_id(b.a).await?;
            let c = app.store.account_by_id(b.b).await?;
            if let (Some(a), Some(c)) = (a, c) {
                match app.xmpp.unbind(&app.party(&a)?, &app.party(&c)?).await {
                    Ok(()) | Err(XmppError::NotBound) => {}
                    Err(e) => return Err(ApiError::from_roster(e)),
                }
            }
            app.store.delete_binding(b.a, b.b).await?;
            Ok::<_, ApiError>(())
        }
        .await;
        tally(&mut rep, &what, r, progress);
    }
    for a in accounts {
        let what = format!("account {} ({})", a.user_name, a.state.as_str());
        let r = async {
            match a.state {
                AccountState::Deleting => crate::cmd::cancel::finish(app, &a).await,
                AccountState::Pending => {
                    match app
                        .xmpp
                        .delete_account(&a.jid_node, &app.jid_pwd(&a)?)
                        .await
                    {
                        Ok(()) | Err(XmppError::NotFound) => {}
                        // ibr mode deletes by logging in: a JID that was never created cannot log in.
                        Err(XmppError::AuthFailed) => {}
                        Err(e) => return Err(ApiError::from_provisioning(e)),
                    }
                    app.store.delete_account(a.id).await?;
                    Ok(())
                }
                AccountState::Active => Ok(()),
            }
        }
        .await;
        tally(&mut rep, &what, r, progress);
    }
    app.metrics.repaired(rep.repaired);
    Ok(rep)
}

fn tally(
    rep: &mut Report,
    what: &str,
    r: Result<(), ApiError>,
    progress: &mut (dyn FnMut(&Report, &str) + Send),
) {
    match r {
        Ok(()) => {
            rep.repaired += 1;
            tracing::info!(record = what, "reconciled");
        }
        Err(e) => {
            rep.failed += 1;
            tracing::warn!(record = what, error = %e, "could not reconcile yet");
        }
    }
    progress(rep, what);
}
