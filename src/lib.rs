//! `register`: a registration server for phones and devices that talk over XMPP.
//!
//! See ARCHITECTURE.md for the crate diagram and one request traced through it. This crate is the
//! service: accounts, tokens, captcha, signatures, bindings and the store; the transports (`http_api`,
//! `tcp_api`) and the XMPP side (`xmpp`) are separate crates that know nothing of accounts.

pub mod adapters;
pub mod app;
pub mod auth;
pub mod clock;
pub mod cmd;
pub mod error;
pub mod lifecycle;
pub mod service;
pub mod store;
pub mod types;
