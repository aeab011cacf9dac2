//! What both test binaries (`prosody`, `servers`) use: tracing, waiting for the link, unique
//! node names and parties.

use std::time::Duration;

use xmpp::{Party, Xmpp};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "xmpp=info".into()))
        .with_test_writer()
        .try_init();
}

/// Whether the component link is up within `within`.
pub async fn wait_up(xmpp: &Xmpp, within: Duration) -> bool {
    xmpp::testkit::wait_link(xmpp, true, within).await
}

pub fn node(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

pub fn party(node: &str, password: &str, nickname: &str, group: &str) -> Party {
    Party {
        node: node.to_owned(),
        password: password.to_owned(),
        nickname: nickname.to_owned(),
        group: group.to_owned(),
    }
}
