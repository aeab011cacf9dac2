//! `/get_users` (HTTPS and TCP): `user_info` of each named user that exists, in request order.
//!
//! Over HTTPS a caller sees only itself and the accounts bound to it: any other name is left out
//! exactly as an unknown one, so a stranger's account cannot be told from a missing one. The TCP
//! API (IM backends admitted by `tcp.allow`) looks up any name, and never returns `jid_pwd`.

use serde_json::{json, Value};

use crate::app::{App, Call};
use crate::error::ApiError;
use crate::lifecycle::pair;
use crate::store::AccountState;
use crate::types::user_name_list;

/// Most names one request may ask for.
pub const MAX_NAMES: usize = 100;

pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
    let (me, _) = app.token_owner(call).await?;
    let names = user_name_list(call.required("user_name_ls")?, MAX_NAMES)?;
    let wanted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut found = app.store.accounts_by_names(&wanted).await?;
    // The pair rows are read whenever another name was asked for, found or not: the time taken
    // does not tell a stranger's account from a missing one either.
    if !call.via_tcp && wanted.iter().any(|n| *n != me.user_name) {
        let mine = pair::bound_ids(app, &me).await?;
        found.retain(|a| a.id == me.id || mine.contains(&a.id));
    }
    let mut out = Vec::with_capacity(found.len());
    for name in &wanted {
        if let Some(a) = found
            .iter()
            .find(|a| &a.user_name == name && a.state == AccountState::Active)
        {
            out.push(app.user_info(a, a.id == me.id && !call.via_tcp)?);
        }
    }
    Ok(json!({"result": 0, "user_info_ls": out}))
}
