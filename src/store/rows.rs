//! What a row of either backend holds, written once: the account columns and how an account, a
//! pair and a bind token are read from a row. Each backend reads its own column types through
//! [`Columns`] (SQLite's `INTEGER` is PostgreSQL's `BIGINT` or `INT`), and keeps its own SQL and
//! its own error type.

use super::{Account, AccountState, BindToken, Binding, BindingState, Memo};
use crate::types::AccountType;

/// The columns [`account`] reads, in its order.
pub(super) const ACCOUNT_COLS: &str =
    "id, user_name, type, device_type, des, password_hash, jid_node, jid_pwd, \
     state, failed_logins, locked_until, created_at, updated_at";

/// One row of a backend, read column by column (`i` counts from 0).
pub(super) trait Columns {
    type Error;
    /// A 64-bit integer: ids and times.
    fn int(&self, i: usize) -> Result<i64, Self::Error>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Self::Error>;
    /// A small integer: a code (the account type).
    fn code(&self, i: usize) -> Result<i64, Self::Error>;
    /// A small count, never negative (failed logins).
    fn count(&self, i: usize) -> Result<u32, Self::Error>;
    fn text(&self, i: usize) -> Result<String, Self::Error>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, Self::Error>;
    fn blob(&self, i: usize) -> Result<Vec<u8>, Self::Error>;
    /// Column `i` holds a value that is none of ours (`what`: "account state").
    fn bad(&self, i: usize, what: &str) -> Self::Error;
}

/// An account, from the columns [`ACCOUNT_COLS`] (and any after them).
pub(super) fn account<R: Columns>(r: &R) -> Result<Account, R::Error> {
    Ok(Account {
        id: r.int(0)?,
        user_name: r.text(1)?,
        kind: AccountType::from_code(r.code(2)?).ok_or_else(|| r.bad(2, "account type"))?,
        device_type: r.opt_text(3)?,
        des: r.text(4)?,
        password_hash: r.text(5)?,
        jid_node: r.text(6)?,
        jid_pwd: r.blob(7)?,
        state: AccountState::parse(&r.text(8)?).ok_or_else(|| r.bad(8, "account state"))?,
        failed_logins: r.count(9)?,
        locked_until: r.int(10)?,
        created_at: r.int(11)?,
        updated_at: r.int(12)?,
        memo: Memo::default(),
    })
}

/// A pair, from `a, b, state, updated_at`.
pub(super) fn binding<R: Columns>(r: &R) -> Result<Binding, R::Error> {
    Ok(Binding {
        a: r.int(0)?,
        b: r.int(1)?,
        state: BindingState::parse(&r.text(2)?).ok_or_else(|| r.bad(2, "binding state"))?,
        updated_at: r.int(3)?,
    })
}

/// A bind token, from `issuer, device, expires_at`.
pub(super) fn bind_token<R: Columns>(r: &R) -> Result<BindToken, R::Error> {
    Ok(BindToken {
        issuer: r.int(0)?,
        device: r.opt_int(1)?,
        expires_at: r.int(2)?,
    })
}
