//! The listener: accept loop, allow-list, connection limit, and the drain on shutdown.
//!
//! A refused peer (outside the allow-list, or over the connection limit) is closed right after
//! `accept` without a byte read or written. With [`TcpConfig::threads`], admitted connections are
//! served on the listener's own threads (see `lanes`). On shutdown the listener is dropped,
//! connections finish their in-flight requests, and any still open after [`TcpConfig::drain`] are
//! dropped.

use std::io;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, Instrument};

use crate::lanes::{Homed, Lanes};
use crate::{conn, LineHandler, TcpConfig};

/// Serves `handler` on `listener` until `shutdown` is cancelled, then waits for open connections
/// to send their in-flight replies (at most [`TcpConfig::drain`]). Accept errors (e.g. out of file
/// descriptors) are logged and retried, so this returns only after shutdown.
pub async fn serve<H: LineHandler>(
    listener: TcpListener,
    cfg: TcpConfig,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    if cfg.threads == 0 {
        return accept(listener, cfg, handler, shutdown, None).await;
    }
    let lanes = Lanes::start(cfg.threads, "tcp-api")?;
    let homed = Arc::new(Homed {
        inner: handler,
        home: Handle::current(),
    });
    accept(listener, cfg, homed, shutdown, Some(&lanes)).await
}

/// The accept loop of [`serve`]: connections run on the caller's runtime, or on `lanes`.
async fn accept<H: LineHandler>(
    listener: TcpListener,
    cfg: TcpConfig,
    handler: Arc<H>,
    shutdown: CancellationToken,
    lanes: Option<&Lanes>,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let cfg = Arc::new(cfg);
    let limit = Arc::new(Semaphore::new(
        cfg.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let tracker = TaskTracker::new();
    let force = CancellationToken::new();
    info!(%local, threads = cfg.threads, "TCP listener serving");

    while let Some((stream, peer)) = listen::accept(&listener, &shutdown).await {
        if !cfg.allows(peer.ip()) {
            debug!(%peer, "peer not in the allow-list; closing");
            continue;
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            debug!(%peer, "connection limit reached; closing");
            continue;
        };
        // Held with the permit: tells the handler when the connection ends, however it ends.
        let permit = (permit, Open::new(handler.clone()));
        let _ = stream.set_nodelay(true);
        let span = tracing::debug_span!("tcp_conn", %peer);
        let (cfg, handler) = (cfg.clone(), handler.clone());
        let (shutdown, force) = (shutdown.clone(), force.clone());
        let connection = move |stream: TcpStream| async move {
            match cfg.tls.clone() {
                None => conn::run(stream, peer, cfg, handler, shutdown, force).await,
                // Boxed, so that a plain connection's task does not carry the size of the TLS
                // handshake's and stream's state (about 2.6 KiB a connection).
                Some(tls) => {
                    Box::pin(serve_tls(stream, tls, peer, cfg, handler, shutdown, force)).await
                }
            }
            drop(permit);
        };
        let Some(lanes) = lanes else {
            tracker.spawn(connection(stream).instrument(span));
            continue;
        };
        // The socket leaves this runtime's reactor and joins the lane's.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                debug!(%peer, error = %e, "handing the connection to a lane failed; closing");
                continue;
            }
        };
        let (lane, seat) = lanes.pick();
        tracker.spawn_on(
            async move {
                let _seat = seat;
                match TcpStream::from_std(stream) {
                    Ok(stream) => connection(stream).await,
                    Err(e) => debug!(error = %e, "taking the connection on a lane failed; closing"),
                }
            }
            .instrument(span),
            lane,
        );
    }

    drop(listener);
    info!(%local, open = tracker.len(), "TCP listener draining");
    listen::drain(&tracker, cfg.drain, &force).await;
    info!(%local, "TCP listener stopped");
    Ok(())
}

/// One TLS connection: the handshake (within the idle timeout, given up on shutdown), then
/// [`conn::run_tls`].
async fn serve_tls<H: LineHandler>(
    stream: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    peer: std::net::SocketAddr,
    cfg: Arc<TcpConfig>,
    handler: Arc<H>,
    shutdown: CancellationToken,
    force: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let handshake = tokio::time::timeout(cfg.idle_timeout, acceptor.accept(stream));
    let done = tokio::select! {
        _ = shutdown.cancelled() => return,
        done = handshake => done,
    };
    match done {
        Ok(Ok(stream)) => conn::run_tls(stream, peer, cfg, handler, shutdown, force).await,
        Ok(Err(e)) => debug!(error = %e, "TLS handshake failed; closing"),
        Err(_) => debug!("TLS handshake timed out; closing"),
    }
}

/// Calls [`LineHandler::connection`] with `true` when made and `false` when dropped.
struct Open<H: LineHandler>(Arc<H>);

impl<H: LineHandler> Open<H> {
    fn new(h: Arc<H>) -> Self {
        h.connection(true);
        Open(h)
    }
}

impl<H: LineHandler> Drop for Open<H> {
    fn drop(&mut self) {
        self.0.connection(false);
    }
}
