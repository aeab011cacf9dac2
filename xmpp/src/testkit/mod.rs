//! Test harness (feature `testkit`): a real Prosody on free loopback ports ([`Prosody`]) and an
//! independent verification client ([`TestClient`]) whose login and stanza code is not this
//! crate's c2s module (it uses tokio-xmpp's own SASL negotiation), so tests do not check the code
//! under test with itself. Used by this crate's tests and by the service's tests.

mod client;
mod prosody;

pub use client::TestClient;
pub use prosody::{Prosody, ProsodyOptions};
