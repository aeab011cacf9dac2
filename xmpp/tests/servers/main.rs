//! The same scenarios on every server we can run here (Prosody 0.12, ejabberd 23.01) in every mode
//! (`matrix`), and Openfire's behaviours from XMPP-NOTES.md against a scripted peer that speaks
//! the component protocol byte for byte as Openfire does (`openfire`).

mod matrix;
mod openfire;
mod openfire_c2s;

use std::time::Duration;

use xmpp::{LinkState, Party, Xmpp};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "xmpp=info".into()))
        .with_test_writer()
        .try_init();
}

/// Waits for the link, then for the add-user probe that follows each link-up (so that what a
/// test counts on the server starts after it).
pub async fn wait_up(xmpp: &Xmpp, within: Duration) -> bool {
    let start = std::time::Instant::now();
    let mut w = xmpp.link_watch();
    let up = tokio::time::timeout(within, w.wait_for(|s| *s == LinkState::Up)).await;
    if !matches!(up, Ok(Ok(_))) {
        return false;
    }
    let left = within.saturating_sub(start.elapsed());
    xmpp.account_commands_checked(left).await != xmpp::AccountCommands::Pending
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
