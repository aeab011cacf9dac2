//! Test harness (feature `testkit`): a real Prosody ([`Prosody`]) or ejabberd ([`Ejabberd`]) on
//! free loopback ports, both behind [`TestServer`] so a scenario can be written once for every
//! server, and an independent verification client ([`TestClient`]) whose login and stanza code is
//! not this crate's c2s module (it uses tokio-xmpp's own SASL negotiation), so tests do not check
//! the code under test with itself; and a scripted Openfire ([`Openfire`], which cannot run on
//! these machines) with its component and c2s sides on one user store, also a [`TestServer`].
//! Used by this crate's tests and by the service's tests.

use std::net::SocketAddr;
use std::path::Path;

use crate::{AccountsMode, BindingMode, XmppConfig};

mod client;
mod ejabberd;
mod openfire;
mod process;
mod prosody;

pub use client::TestClient;
pub use ejabberd::{Ejabberd, EjabberdOptions};
pub use openfire::{form_field, Openfire, OpenfireOptions, OpenfireState};
pub use process::{stop_child, wait_link, Endpoints, Process};
pub use prosody::{Prosody, ProsodyOptions};

/// What every test server offers: where it listens, how to configure the crate for it, and
/// stop/restart (data and ports kept). Dropping a server kills it. A server gives its
/// [`Endpoints`] and [`Process`] (a scripted peer has none); the rest is written once here.
pub trait TestServer: Send + Sync {
    /// `prosody` or `ejabberd` (for messages and test names).
    fn name(&self) -> &'static str;
    /// Where it listens, the component's name and secret, the certificate to trust.
    fn endpoints(&self) -> &Endpoints;
    /// Its process (`None` for a scripted peer, which overrides `stop` and `is_running`).
    fn process(&mut self) -> Option<&mut Process>;
    /// Stops and starts again with the same config, data and ports.
    fn restart(&mut self);
    /// The server's log so far (for failing tests).
    fn log(&self) -> String;

    /// The users' domain.
    fn domain(&self) -> &str {
        &self.endpoints().domain
    }
    /// The component JID.
    fn component(&self) -> &str {
        &self.endpoints().component
    }
    /// The component secret.
    fn secret(&self) -> &str {
        &self.endpoints().secret
    }
    /// `127.0.0.1:port` of the component port.
    fn component_addr(&self) -> SocketAddr {
        self.endpoints().component_addr
    }
    /// `127.0.0.1:port` of the c2s port.
    fn c2s_addr(&self) -> SocketAddr {
        self.endpoints().c2s_addr
    }
    /// The certificate to trust (TLS variant), `None` for plaintext c2s.
    fn ca_file(&self) -> Option<&Path> {
        self.endpoints().ca_file.as_deref()
    }
    /// A crate configuration for this server with the given modes.
    fn config(&self, accounts: AccountsMode, binding: BindingMode) -> XmppConfig {
        self.endpoints().config(accounts, binding)
    }
    /// Stops the server gracefully (data kept).
    fn stop(&mut self) {
        if let Some(p) = self.process() {
            p.stop()
        }
    }
    /// Whether the server process runs.
    fn is_running(&mut self) -> bool {
        self.process().is_some_and(|p| p.is_running())
    }
}

/// Installs Debian packages with apt-get (one install at a time in this process); Debian may
/// start a system instance on install: `service` is stopped afterwards (ours use other ports).
pub(crate) fn apt_install(packages: &str, service: &str) {
    let status = std::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "(apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {packages}"
            ),
        ])
        .status()
        .expect("running apt-get");
    assert!(status.success(), "installing {packages} failed");
    let _ = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("timeout 15 service {service} stop >/dev/null 2>&1 || true"),
        ])
        .status();
}
