//! `/cancel`: after the login checks, remove every binding (both rosters), delete the JID, revoke
//! every token and delete the account.
//!
//! The account is marked `deleting` and its tokens revoked in one transaction before the first
//! remote step, so the account is unusable at once and gains no new pair (a bind's insert needs
//! both accounts `active`); `lifecycle::account::finish_delete` does the remote work and is also what the reconciler runs
//! for a cancel that a crash or a lost link interrupted. Of two concurrent cancels of one account
//! one wins; the other gets 102, as any request for an account that is no longer active.

use serde_json::{json, Value};

use crate::app::{App, Call};
use crate::auth::login;
use crate::error::ApiError;
use crate::lifecycle::account;

pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
    let (me, _) = login::authenticate(app, call, false).await?;
    if !account::begin_delete(app, &me).await? {
        return Err(ApiError::UserOrPassword);
    }
    account::finish_delete(app, &me).await?;
    tracing::info!(user = %me.user_name, "cancelled");
    Ok(json!({"result": 0}))
}
