//! The listener: accept loop, connection limit, TLS handshake, HTTP/1.1 serving, and the drain
//! on shutdown.
//!
//! Shaped like mini-redis's `server.rs`: one task per connection, a semaphore bounding them, one
//! cancellation token to stop. Over the limit, a connection is accepted and closed at once (see
//! [`HttpConfig::max_connections`]). On shutdown the listener is dropped (new connections are
//! refused by the kernel), every connection is told to finish its current request and close, and
//! whatever is still running when `drain` has passed is dropped.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, Instrument};

use crate::dispatch::{self, Shared};
use crate::{Handler, HttpConfig};

/// Serves `handler` on `listener` until `shutdown` is cancelled; then stops accepting and lets
/// in-flight requests finish within `drain` before returning (connections still open then are
/// dropped). Accept errors (e.g. out of file descriptors) are logged and retried, so this returns
/// only after shutdown.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    cfg: HttpConfig,
    handler: Arc<H>,
    shutdown: CancellationToken,
    drain: Duration,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let conns = Conns {
        shared: Arc::new(Shared::new(handler, &cfg)),
        builder: http1_builder(&cfg),
        tls: cfg.tls.clone().map(TlsAcceptor::from),
        handshake_timeout: (!cfg.header_read_timeout.is_zero()).then_some(cfg.header_read_timeout),
        shutdown: shutdown.clone(),
        force: CancellationToken::new(),
    };
    let limit = Arc::new(Semaphore::new(
        cfg.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let tracker = TaskTracker::new();
    info!(%local, tls = cfg.tls.is_some(), "HTTP listener serving");

    while let Some((stream, peer)) = listen::accept(&listener, &shutdown).await {
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            debug!(%peer, "connection limit reached; closing");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conns = conns.clone();
        let span = tracing::debug_span!("http_conn", %peer);
        tracker.spawn(
            async move {
                conns.run(stream, peer).await;
                drop(permit);
            }
            .instrument(span),
        );
    }

    drop(listener);
    info!(%local, open = tracker.len(), "HTTP listener draining");
    listen::drain(&tracker, drain, &conns.force).await;
    info!(%local, "HTTP listener stopped");
    Ok(())
}

fn http1_builder(cfg: &HttpConfig) -> http1::Builder {
    let mut builder = http1::Builder::new();
    let header_timeout = if cfg.keepalive_idle.is_zero() {
        cfg.header_read_timeout
    } else {
        cfg.header_read_timeout.min(cfg.keepalive_idle)
    };
    builder
        .timer(TokioTimer::new())
        .header_read_timeout((!header_timeout.is_zero()).then_some(header_timeout))
        .keep_alive(!cfg.keepalive_idle.is_zero())
        // hyper panics below its minimum buffer of 8 KiB; the head limit is enforced separately.
        .max_buf_size(cfg.max_header_bytes.max(8192))
        .max_header_size(cfg.max_header_bytes);
    builder
}

/// What a connection task needs.
struct Conns<H> {
    shared: Arc<Shared<H>>,
    builder: http1::Builder,
    tls: Option<TlsAcceptor>,
    /// `None`: no limit (a zero `header_read_timeout`).
    handshake_timeout: Option<Duration>,
    shutdown: CancellationToken,
    /// Cancelled when the drain deadline has passed.
    force: CancellationToken,
}

impl<H> Clone for Conns<H> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            builder: self.builder.clone(),
            tls: self.tls.clone(),
            handshake_timeout: self.handshake_timeout,
            shutdown: self.shutdown.clone(),
            force: self.force.clone(),
        }
    }
}

impl<H: Handler> Conns<H> {
    async fn run(self, stream: TcpStream, peer: SocketAddr) {
        let Some(acceptor) = self.tls.clone() else {
            return self.http(stream, peer).await;
        };
        let limit = self.handshake_timeout.unwrap_or(Duration::MAX);
        let handshake = tokio::time::timeout(limit, acceptor.accept(stream));
        let tls_stream = tokio::select! {
            _ = self.shutdown.cancelled() => return,
            r = handshake => match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return debug!(error = %e, "TLS handshake failed"),
                Err(_) => return debug!("TLS handshake timed out"),
            },
        };
        self.http(tls_stream, peer).await;
    }

    async fn http<S>(self, io: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let shared = self.shared.clone();
        let service = service_fn(move |req| dispatch::respond(shared.clone(), peer, req));
        let conn = self
            .builder
            .serve_connection(TokioIo::new(crate::linger::Linger::new(io)), service);
        tokio::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            _ = self.shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    r = conn.as_mut() => r,
                    _ = self.force.cancelled() => return debug!("connection dropped at drain deadline"),
                }
            }
        };
        if let Err(e) = result {
            debug!(error = %e, "connection ended with an error");
        }
    }
}
