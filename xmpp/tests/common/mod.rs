//! What both test binaries (`prosody`, `servers`) use: tracing, waiting for the link, unique
//! node names and parties.

use std::time::Duration;

use xmpp::{AccountsMode, BindingMode, C2sTls, Party, Xmpp, XmppConfig};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "xmpp=info".into()))
        .with_test_writer()
        .try_init();
}

/// Whether the component link is up within `within`, and the add-user probe that follows each
/// link-up has its verdict (so that what a test counts on the server starts after it).
pub async fn wait_up(xmpp: &Xmpp, within: Duration) -> bool {
    let start = std::time::Instant::now();
    if !xmpp::testkit::wait_link(xmpp.link_watch(), true, within).await {
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

/// A component configuration for a scripted peer at `addr` (no c2s server: `127.0.0.1:1`).
pub fn scripted_peer_config(
    addr: &str,
    (domain, component, secret): (&str, &str, &str),
    timeout: Duration,
    keepalive: Duration,
) -> XmppConfig {
    XmppConfig {
        domain: domain.into(),
        component: component.into(),
        component_addr: addr.into(),
        component_secret: secret.into(),
        c2s_addr: "127.0.0.1:1".into(),
        c2s_tls: C2sTls::Off,
        tls_ca_file: None,
        allow_plain_without_tls: true,
        accounts: AccountsMode::Component,
        binding: BindingMode::C2s,
        timeout,
        session_idle: Duration::from_secs(30),
        keepalive,
        allow_multiple: false,
        command_sessions: 40,
    }
}

/// Tests of one shape: each `name => scenario(values);` entry is a test (on a two-thread runtime)
/// that runs the scenario with its values.
#[allow(unused_macros)]
macro_rules! variants {
    ($($(#[$attr:meta])* $name:ident => $run:expr;)+) => {
        $(
            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $run.await;
            }
        )+
    };
}
#[allow(unused_imports)]
pub(crate) use variants;
