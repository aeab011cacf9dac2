//! The login checks, shared by `/login`, `/cancel` and `/change_password`: captcha (humans) or
//! signature (devices), the account's type and lock, then the counted Argon2id verification.
//!
//! Unknown name, wrong password, wrong type and a locked account all answer 102, and all take one
//! Argon2id verification, so the reply time does not tell which.

use crate::app::{App, Call};
use crate::auth::passwords::{Hasher, Permit};
use crate::error::ApiError;
use crate::store::{Account, AccountState, LockPolicy};
use crate::types::{AccountType, Password, UserName};

/// The checks `/login` and `/cancel` share: parameters, captcha or signature, type, lock, password.
///
/// Every refusal takes one Argon2id verification and answers 102, so neither the reply nor its
/// time tells an unknown name, another type, a locked account and a wrong password apart. Only a
/// request that passed the checks of the account's own type (a captcha for a phone, a signature
/// for a device) reaches the failure counters, so nobody can lock a phone's owner out by asking
/// as a device. Failures are counted per client network (`security.lockout_threshold` locks that
/// network out of the account, so a stranger's guesses do not lock the owner out) and for the
/// account as a whole (`security.lockout_account_threshold` locks every other network out: the
/// last line against guesses spread over many networks). The attempt is counted in the store
/// before its verdict is used ([`LoginStore::claim_login_attempt`](crate::store::LoginStore::claim_login_attempt)),
/// so of a concurrent burst at most `security.lockout_threshold` requests have their password
/// looked at. A password of the wrong length is a wrong password like any other: it counts.
pub async fn authenticate(
    app: &App,
    call: &Call,
    sign_required: bool,
) -> Result<(Account, AccountType), ApiError> {
    let name = UserName::parse(call.required("user_name")?)?;
    let password = call.required("password")?.to_owned();
    let kind = AccountType::parse(call.required("type")?)?;
    let account = verify_password(app, call, name.as_str(), kind, password, sign_required).await?;
    Ok((account, kind))
}

/// The part of [`authenticate`] after the parameters, shared with `/change_password` (which
/// checks the old password): captcha or signature for `kind`, then the counted verification of
/// `password` for the account `name` of type `kind`, through the same lock-out.
pub async fn verify_password(
    app: &App,
    call: &Call,
    name: &str,
    kind: AccountType,
    password: String,
    sign_required: bool,
) -> Result<Account, ApiError> {
    // A place in the hashing queue first: when it is full (503) nothing is spent or counted.
    let permit = app.hasher.permit()?;
    app.check_human_or_device(call, kind == AccountType::Device, sign_required)
        .await?;
    let Some(account) = app
        .store
        .account_by_name(name)
        .await?
        .filter(|a| a.kind == kind)
    else {
        return refuse(app, permit, password).await;
    };
    // The claim and the verification run side by side, so a known name costs no more time than
    // an unknown one (the claim's write hides behind Argon2id); the verdict is used only when the
    // claim was granted.
    let sec = &app.cfg.security;
    let network = app.limiter.network(call.client_ip).to_string();
    let policy = LockPolicy {
        per_network: sec.lockout_threshold,
        per_account: sec.lockout_account_threshold,
        lock_secs: sec.lockout_secs as i64,
    };
    let (claimed, good) = tokio::join!(
        app.store
            .claim_login_attempt(account.id, network.clone(), app.now(), policy),
        app.hasher
            .verify_with(permit, password.clone(), account.password_hash.clone()),
    );
    if !claimed? {
        app.metrics.login_failed(true);
        let r = crate::service::audit::of_request(app, "lockout", call, 102, "");
        app.audit.record(r).await;
        return Err(ApiError::UserOrPassword);
    }
    let good = good? && Password::parse(&password).is_ok();
    if !(good && account.state == AccountState::Active) {
        app.metrics.login_failed(false);
        return Err(ApiError::UserOrPassword);
    }
    app.store.reset_login_failures(account.id, network).await?;
    Ok(account)
}

/// 102 for an unknown name or another type, after the Argon2id work a real verification costs.
async fn refuse<T>(app: &App, permit: Permit, password: String) -> Result<T, ApiError> {
    app.hasher
        .verify_with(permit, password, Hasher::dummy_hash().to_owned())
        .await?;
    app.metrics.login_failed(false);
    Err(ApiError::UserOrPassword)
}
