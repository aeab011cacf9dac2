//! Integration tests against a real Prosody (started per test by `xmpp::testkit`), each result
//! checked from the outside with the independent `TestClient` or Prosody's data files; plus framing
//! tests against a scripted fake server for what Prosody cannot show.

mod accounts;
mod binding;
#[path = "../common/mod.rs"]
mod common;
mod fake;
mod link;

pub use common::{init_tracing, node, party, wait_up};

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use xmpp::testkit::{Prosody, ProsodyOptions};
use xmpp::{AccountsMode, BindingMode, Xmpp, XmppConfig};

/// A started server and a started `Xmpp` with its link up.
pub struct Env {
    pub server: Prosody,
    pub xmpp: Xmpp,
    pub shutdown: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn env(tls: bool, accounts: AccountsMode, binding: BindingMode) -> Env {
    env_with(
        ProsodyOptions {
            tls,
            ..ProsodyOptions::default()
        },
        accounts,
        binding,
        |_| {},
    )
    .await
}

pub async fn env_with(
    opts: ProsodyOptions,
    accounts: AccountsMode,
    binding: BindingMode,
    tweak: impl FnOnce(&mut XmppConfig),
) -> Env {
    init_tracing();
    let server = Prosody::start(opts);
    let mut cfg = server.config(accounts, binding);
    tweak(&mut cfg);
    let shutdown = CancellationToken::new();
    let xmpp = Xmpp::start(cfg, shutdown.clone());
    assert!(
        wait_up(&xmpp, Duration::from_secs(10)).await,
        "link did not come up: {:?}",
        xmpp.last_link_error()
    );
    Env {
        server,
        xmpp,
        shutdown,
    }
}
