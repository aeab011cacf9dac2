//! The same scenarios on every server we can run here (Prosody 0.12, ejabberd 23.01) in every mode
//! (`matrix`), and Openfire's behaviours from XMPP-NOTES.md against a scripted peer that speaks
//! the component protocol byte for byte as Openfire does (`openfire`).

#[path = "../common/mod.rs"]
mod common;
mod matrix;
mod openfire;
mod openfire_c2s;

pub use common::{init_tracing, node, party, wait_up};
