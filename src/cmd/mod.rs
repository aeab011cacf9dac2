//! One file per command: its parameters, its checks, its effect.
//!
//! Each command returns the reply object without `sign` (the transport signs), with `result` 0,
//! or an [`ApiError`](crate::error::ApiError) that the transport turns into `{"result": code}`.
//! Partial outcomes (bind/unbind with `failed_ls`) are replies, not errors. No command calls
//! another: the steps they share are the lifecycles' (`lifecycle::account`, `lifecycle::pair`)
//! and the login checks (`auth::login`).

pub mod bind;
pub mod cancel;
pub mod change_password;
pub mod get_bind_token;
pub mod get_user_banding;
pub mod get_users;
pub mod login;
pub mod logout;
pub mod register;
pub mod unbind;
pub mod verify_code;
pub mod verify_token;

#[cfg(test)]
pub(crate) mod testkit;
