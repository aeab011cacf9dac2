//! One file per command: its parameters, its checks, its effect.
//!
//! Each command returns a [`Reply`](reply::Reply) built from its typed reply struct (without
//! `sign`: the transport signs), or an [`ApiError`](crate::error::ApiError); [`reply::render`]
//! turns either into the JSON reply and its code. Partial outcomes (bind/unbind with `failed_ls`)
//! are replies, not errors. No command calls
//! another: the steps they share are the lifecycles' (`lifecycle::account`, `lifecycle::pair`)
//! and the login checks (`auth::login`).

pub mod bind;
pub mod cancel;
pub mod change_password;
pub mod endpoints;
pub mod get_bind_token;
pub mod get_user_banding;
pub mod get_users;
pub mod login;
pub mod logout;
pub mod register;
pub mod renew_jid_pwd;
pub mod reply;
pub mod unbind;
pub mod verify_code;
pub mod verify_token;

#[cfg(test)]
pub(crate) mod testkit;
