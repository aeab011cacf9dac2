//! The service started for real (in-process on real sockets, or the `register` binary) against a
//! real Prosody, driven as a phone, a device and an IM backend would.

mod abuse;
mod accounts;
mod audit;
mod binary;
mod binary_security;
mod bind_tokens;
mod bindings;
mod consistency;
mod documented;
mod guessing;
mod harness;
mod interop;
mod metrics;
mod ops;
mod postgres;
mod readiness;
mod refused;
mod renew_jid_pwd;
mod revoke_handoff;
mod scale_out;
mod security;
mod signatures;
mod tcp;
mod tcp_auth;
mod token_life;
mod transport;
