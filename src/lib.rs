//! `register`: a registration server for phones and devices that talk over XMPP.
//!
//! See ARCHITECTURE.md for the crate diagram and one request traced through it. This crate is the
//! service: accounts, tokens, captcha, signatures, bindings and the store; the transports (`http_api`,
//! `tcp_api`) and the XMPP side (`xmpp`) are separate crates that know nothing of accounts.

pub mod admin;
pub mod app;
pub mod captcha;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod crypto;
pub mod error;
pub mod http_handler;
pub mod logwriter;
pub mod metrics;
pub mod passwords;
pub mod ratelimit;
pub mod reconcile;
pub mod secrets;
pub mod server;
pub mod store;
pub mod tcp_handler;
pub mod token_cache;
pub mod types;
