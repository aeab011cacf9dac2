//! `/get_users` (HTTPS and TCP): `user_info` of each named user that exists, in request order.

use serde_json::{json, Value};

use crate::app::{App, Call};
use crate::error::ApiError;
use crate::store::AccountState;
use crate::types::user_name_list;

/// Most names one request may ask for.
pub const MAX_NAMES: usize = 100;

pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
    let (me, _) = app.token_owner(call).await?;
    let names = user_name_list(call.required("user_name_ls")?, MAX_NAMES)?;
    let wanted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let found = app.store.accounts_by_names(&wanted).await?;
    let mut out = Vec::with_capacity(found.len());
    for name in &wanted {
        if let Some(a) = found
            .iter()
            .find(|a| &a.user_name == name && a.state == AccountState::Active)
        {
            out.push(app.user_info(a, a.id == me.id)?);
        }
    }
    Ok(json!({"result": 0, "user_info_ls": out}))
}
