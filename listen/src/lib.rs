//! The two ends of an accept loop, shared by the HTTPS listener (`http_api`) and the TCP one
//! (`tcp_api`), which otherwise know nothing of each other: taking the next connection until
//! shutdown, and draining the open connections on the way out. What happens to a connection in
//! between (allow-list, connection limit, TLS, the protocol) stays with each listener.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

/// How long to wait before accepting again after an accept error.
const RETRY: Duration = Duration::from_millis(100);

/// The next connection on `listener`, or `None` once `shutdown` is cancelled. Accept errors (e.g.
/// out of file descriptors) are logged and retried, so `None` means shutdown.
pub async fn accept(
    listener: &TcpListener,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(a) => return Some(a),
                Err(e) => {
                    warn!(error = %e, "accept failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                }
            },
        }
    }
}

/// Closes `tracker` and waits for its connections to end; those still open after `within` are
/// told to stop through `force`, and waited for.
pub async fn drain(tracker: &TaskTracker, within: Duration, force: &CancellationToken) {
    tracker.close();
    if tokio::time::timeout(within, tracker.wait()).await.is_err() {
        warn!(
            open = tracker.len(),
            "drain deadline passed; dropping remaining connections"
        );
        force.cancel();
        tracker.wait().await;
    }
}
