//! A lingering close: when hyper shuts a connection down, send our side's end (TLS
//! `close_notify`, then TCP FIN) and read and discard what the client is still sending, for a
//! bounded time and amount, before the socket is dropped.
//!
//! Without it, a connection closed while request bytes are still unread (an early 413, 400 or 408
//! on a body the client is still uploading) is reset by the kernel, and a client that sends its
//! whole body before reading — python-requests, many mobile HTTP stacks — gets a connection error
//! instead of the reply that was already on its way.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a silent client gets after our side has closed (an idle kept-alive client, or one
/// that stopped sending): the wait starts again with every read that brings data.
const LINGER: Duration = Duration::from_secs(2);
/// The most a client that keeps sending is drained for: a 64 MiB upload at a slow uplink's
/// several MB/s (the connection cap bounds how many linger at once).
const MAX_LINGER: Duration = Duration::from_secs(10);
/// Most bytes read and discarded while lingering (nothing is kept: each read reuses one buffer).
/// A client sending more still gets a connection error after this much.
const MAX_DISCARD: usize = 64 * 1024 * 1024;

enum State {
    Open,
    Draining {
        /// Silence allowed from here ([`LINGER`], pushed back by every read with data).
        deadline: Pin<Box<Sleep>>,
        /// When draining ends however much is still coming ([`MAX_LINGER`]).
        until: tokio::time::Instant,
        discarded: usize,
    },
    Closed,
}

/// Wraps a connection's IO; everything passes through until `poll_shutdown`.
pub(crate) struct Linger<S> {
    inner: S,
    state: State,
}

impl<S> Linger<S> {
    pub(crate) fn new(inner: S) -> Linger<S> {
        Linger {
            inner,
            state: State::Open,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Linger<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Linger<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Open => {
                    // Our reply is out; say so (close_notify + FIN) before draining.
                    let r = ready!(Pin::new(&mut this.inner).poll_shutdown(cx));
                    if r.is_err() {
                        this.state = State::Closed;
                        return Poll::Ready(r);
                    }
                    this.state = State::Draining {
                        deadline: Box::pin(tokio::time::sleep(LINGER)),
                        until: tokio::time::Instant::now() + MAX_LINGER,
                        discarded: 0,
                    };
                }
                State::Draining {
                    deadline,
                    until,
                    discarded,
                } => {
                    if deadline.as_mut().poll(cx).is_ready() || *discarded >= MAX_DISCARD {
                        this.state = State::Closed;
                        continue;
                    }
                    let mut scratch = [0u8; 8192];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                            *discarded += buf.filled().len();
                            // Still sending: more time, within the overall bound.
                            let next = (tokio::time::Instant::now() + LINGER).min(*until);
                            deadline.as_mut().reset(next);
                        }
                        Poll::Ready(_) => this.state = State::Closed, // EOF or error: the client is done
                        Poll::Pending => return Poll::Pending,
                    }
                }
                State::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}
