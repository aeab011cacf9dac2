//! One connection: read lines, run up to `max_pipeline` requests concurrently, write the replies
//! in request order.
//!
//! A single task does everything, waiting in one `select!` on whichever comes first: the oldest
//! request's reply (a `FuturesOrdered`, so later requests progress meanwhile but replies stay in
//! order), the socket becoming readable, the idle timer, or shutdown. While no request of the
//! connection is in flight, a line the handler can answer at once (`LineHandler::answer_now`,
//! e.g. a token check from memory) is answered straight into the output buffer, without a future
//! or a parsed JSON value; everything else is queued. Replies that are ready together are written
//! in one batch under `write_timeout`; while writing, nothing is read, which is the backpressure
//! on a client that sends faster than it reads. Shutdown and the end of the drain are waited for
//! without being polled at each turn (see [`Stop`]), and a batch the socket takes at once is
//! written without arming the write timer: per request, the connection itself takes no lock it
//! shares with other connections. The in-flight queue and the output buffer are
//! dropped whenever nothing is in flight, so an idle connection holds no allocation besides the
//! task itself.

use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::stream::{FuturesOrdered, FuturesUnordered};
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

use crate::frame::{parse_body, split_line, Line, LineBuf, Next};
use crate::{LineHandler, TcpConfig};

/// Replies written in one batch at most (more wait for the next write).
const MAX_BATCH: usize = 64 * 1024;
/// Room made for the first reply of a batch (a token check's reply is about 250 bytes).
const OUT_START: usize = 512;

/// A request to answer: by the handler, or with a reply known already (malformed line).
enum Job {
    Handle { path: String, body: Value },
    Reply(Value),
}

async fn run_job<H: LineHandler>(handler: Arc<H>, job: Job, peer: SocketAddr) -> Value {
    match job {
        Job::Reply(v) => v,
        Job::Handle { path, body } => {
            match AssertUnwindSafe(handler.handle(&path, body, peer))
                .catch_unwind()
                .await
            {
                Ok(v) => v,
                Err(_) => {
                    error!(path = %truncate(&path, 100), "handler panicked");
                    handler.internal_error()
                }
            }
        }
    }
}

/// Where a connection's bytes come from: a plain socket or a TLS stream.
pub(crate) trait Source: Send {
    /// Waits for bytes and appends what is there to `lines`; `Ok(0)` at the end of input, a
    /// `WouldBlock` error when woken for nothing (wait again). Cancel-safe: dropped while
    /// waiting, nothing is lost.
    fn fill(
        &mut self,
        lines: &mut LineBuf,
    ) -> impl std::future::Future<Output = io::Result<usize>> + Send;
}

impl Source for OwnedReadHalf {
    async fn fill(&mut self, lines: &mut LineBuf) -> io::Result<usize> {
        self.readable().await?;
        read(self, lines)
    }
}

/// A TLS connection's reading half: read through rustls into the line buffer's spare room.
pub(crate) struct TlsSource(
    pub(crate) tokio::io::ReadHalf<tokio_rustls::server::TlsStream<TcpStream>>,
);

impl Source for TlsSource {
    async fn fill(&mut self, lines: &mut LineBuf) -> io::Result<usize> {
        use tokio::io::AsyncReadExt;
        // `read_buf` only appends (into the room `spare` made), and appends nothing when
        // cancelled before it is ready.
        self.0.read_buf(lines.spare()).await
    }
}

/// Serves one accepted connection until the peer leaves, a limit closes it, or `force` (the end of
/// the shutdown drain) is cancelled.
pub(crate) async fn run<H: LineHandler>(
    stream: TcpStream,
    peer: SocketAddr,
    cfg: Arc<TcpConfig>,
    handler: Arc<H>,
    shutdown: CancellationToken,
    force: CancellationToken,
) {
    let (rd, wr) = stream.into_split();
    serve(rd, wr, peer, cfg, handler, shutdown, force).await
}

/// [`run`] for a connection whose TLS handshake is done.
pub(crate) async fn run_tls<H: LineHandler>(
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
    cfg: Arc<TcpConfig>,
    handler: Arc<H>,
    shutdown: CancellationToken,
    force: CancellationToken,
) {
    let (rd, wr) = tokio::io::split(stream);
    serve(TlsSource(rd), wr, peer, cfg, handler, shutdown, force).await
}

/// The `/auth` exchange (only when [`TcpConfig::auth_token`] is set): reads the first request
/// into `lines` (what follows it stays there for the main loop), answers it, and says whether the
/// connection goes on. Waits at most `idle_timeout`.
async fn authenticate<H: LineHandler, R: Source, W: AsyncWrite + Unpin + Send>(
    rd: &mut R,
    wr: &mut W,
    lines: &mut LineBuf,
    cfg: &TcpConfig,
    handler: &H,
) -> bool {
    let first = async {
        loop {
            match lines.next_line() {
                Next::Incomplete => {}
                Next::TooLong => return false,
                Next::Line(line) => match split_line(line) {
                    Line::Empty => continue,
                    Line::Malformed(_) => return false,
                    Line::Request { path, json } => {
                        let token = parse_body(json).ok().and_then(|b| match b.get("token") {
                            Some(Value::String(t)) => Some(t.clone()),
                            _ => None,
                        });
                        return path == "/auth"
                            && token.is_some_and(|t| cfg.auth_matches(t.as_bytes()));
                    }
                },
            }
            match rd.fill(lines).await {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return false,
            }
        }
    };
    let ok = tokio::time::timeout(cfg.idle_timeout, first)
        .await
        .unwrap_or(false);
    let mut out = Vec::new();
    if ok {
        encode_into(&handler.auth_accepted(), &mut out);
    } else {
        debug!("TCP client did not authenticate; closing after the refusal");
        encode_into(&handler.auth_refused(), &mut out);
    }
    let written = write(wr, &out, cfg.write_timeout).await.is_ok();
    if !ok {
        let _ = wr.shutdown().await;
    }
    ok && written
}

async fn serve<H: LineHandler, R: Source, W: AsyncWrite + Unpin + Send>(
    mut rd: R,
    mut wr: W,
    peer: SocketAddr,
    cfg: Arc<TcpConfig>,
    handler: Arc<H>,
    shutdown: CancellationToken,
    force: CancellationToken,
) {
    let mut lines = LineBuf::new(cfg.max_line);
    if cfg.auth_token.is_some() {
        // Boxed: its state lives only until it is done, not in every connection's task.
        let auth = Box::pin(authenticate(&mut rd, &mut wr, &mut lines, &cfg, &*handler));
        if !until_shutdown(auth, &shutdown, &force).await {
            return;
        }
    }
    // Polled only when one of them has woken the task (a `FuturesUnordered` polls only the
    // futures that woke it): polling a `CancellationToken` takes two locks that every connection
    // of the listener shares, and a busy connection's loop turns once per request.
    let mut stops = FuturesUnordered::new();
    stops.push(stop_on(shutdown, Stop::Shutdown));
    stops.push(stop_on(force, Stop::Force));
    let mut pending = None;
    // Replies ready to write, in request order; all of them come before any still pending.
    let mut out: Vec<u8> = Vec::new();
    // Stop reading: end of input, an over-long line, or shutdown.
    let mut closing = false;
    let max_pipeline = cfg.max_pipeline.max(1);
    let idle = tokio::time::sleep(cfg.idle_timeout);
    tokio::pin!(idle);

    loop {
        let mut in_flight = pending.as_ref().map_or(0, FuturesOrdered::len);
        // Take the lines received. With nothing in flight, what can be answered at once goes
        // straight to `out`; the rest is queued, in order.
        while !closing && in_flight < max_pipeline && out.len() < MAX_BATCH {
            let at_once = in_flight == 0;
            match take_line(&mut lines, &cfg, &*handler, peer, at_once, &mut out) {
                Taken::Nothing => break,
                Taken::Answered => {}
                Taken::Job(Job::Reply(v), last) if in_flight == 0 => {
                    closing |= last;
                    encode_into(&v, &mut out);
                }
                Taken::Job(job, last) => {
                    closing |= last;
                    let job = run_job(handler.clone(), job, peer);
                    pending
                        .get_or_insert_with(FuturesOrdered::new)
                        .push_back(job);
                    in_flight += 1;
                }
            }
        }
        // Replies finished meanwhile join the batch.
        in_flight = take_ready(&mut pending, in_flight, &mut out);
        if !out.is_empty() {
            if let Err(why) = write_batch(&mut wr, &mut out, in_flight, cfg.write_timeout).await {
                return debug!(why, "dropping connection");
            }
            idle.as_mut().reset(deadline(cfg.idle_timeout));
            continue;
        }
        if in_flight == 0 && closing {
            return;
        }
        let reading = !closing && in_flight < max_pipeline;

        tokio::select! {
            biased;
            Some(stop) = stops.next() => match stop {
                Stop::Force => return,
                Stop::Shutdown => closing = true,
            },
            Some(reply) = next_reply(&mut pending), if in_flight > 0 => encode_into(&reply, &mut out),
            got = rd.fill(&mut lines), if reading => {
                match got {
                    Ok(0) => closing = true,
                    Ok(_) => idle.as_mut().reset(deadline(cfg.idle_timeout)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return debug!(error = %e, "read failed"),
                }
            }
            _ = &mut idle, if in_flight == 0 => return debug!("idle timeout"),
        }
    }
}

/// Why a connection stops: the listener's shutdown (stop reading, send the replies in flight, close)
/// or the end of the drain (close now).
#[derive(Clone, Copy)]
enum Stop {
    Shutdown,
    Force,
}

/// `why`, once `token` is cancelled.
async fn stop_on(token: CancellationToken, why: Stop) -> Stop {
    token.cancelled().await;
    why
}

/// What [`take_line`] did with the next received line.
enum Taken {
    /// No complete line yet.
    Nothing,
    /// Answered into the output buffer, or an empty line: take the next one.
    Answered,
    /// A request to run or a reply to send; `true` when the connection closes after it
    /// (a line over `max_line`).
    Job(Job, bool),
}

/// Takes the next line out of `lines`. With `at_once` (nothing in flight), a request the handler
/// can answer from memory is written straight into `out`.
#[inline]
fn take_line<H: LineHandler>(
    lines: &mut LineBuf,
    cfg: &TcpConfig,
    handler: &H,
    peer: SocketAddr,
    at_once: bool,
    out: &mut Vec<u8>,
) -> Taken {
    match lines.next_line() {
        Next::Incomplete => Taken::Nothing,
        Next::TooLong => {
            debug!(max = cfg.max_line, "line too long; closing after its reply");
            Taken::Job(Job::Reply(handler.malformed()), true)
        }
        Next::Line(line) => match split_line(line) {
            Line::Empty => Taken::Answered,
            Line::Malformed(why) => {
                debug!(why, "malformed line");
                Taken::Job(Job::Reply(handler.malformed()), false)
            }
            Line::Request { path, json } => {
                if at_once && answer_now(handler, path, json, peer, out) {
                    return Taken::Answered;
                }
                match parse_body(json) {
                    Ok(body) => Taken::Job(
                        Job::Handle {
                            path: path.to_owned(),
                            body,
                        },
                        false,
                    ),
                    Err(why) => {
                        debug!(why, "malformed line");
                        Taken::Job(Job::Reply(handler.malformed()), false)
                    }
                }
            }
        },
    }
}

/// [`LineHandler::answer_now`] into `out` with its newline; a panic becomes the handler's
/// internal-error reply. `false`: the request needs the handler's future.
#[inline]
fn answer_now<H: LineHandler>(
    handler: &H,
    path: &str,
    json: &str,
    peer: SocketAddr,
    out: &mut Vec<u8>,
) -> bool {
    if out.capacity() == 0 {
        out.reserve(OUT_START);
    }
    let before = out.len();
    match std::panic::catch_unwind(AssertUnwindSafe(|| {
        handler.answer_now(path, json, peer, out)
    })) {
        Ok(true) => {
            out.push(b'\n');
            true
        }
        Ok(false) => false,
        Err(_) => {
            error!(path = %truncate(path, 100), "handler panicked");
            out.truncate(before);
            encode_into(&handler.internal_error(), out);
            true
        }
    }
}

/// `ok`'s outcome, or `false` as soon as shutdown (graceful or forced) begins.
async fn until_shutdown(
    ok: impl std::future::Future<Output = bool>,
    shutdown: &CancellationToken,
    force: &CancellationToken,
) -> bool {
    tokio::select! {
        biased;
        _ = force.cancelled() => false,
        _ = shutdown.cancelled() => false,
        ok = ok => ok,
    }
}

/// Encodes the replies already finished, in order, while the batch has room; returns how many
/// are still in flight, and drops the queue when none is.
fn take_ready<F: std::future::Future<Output = Value>>(
    pending: &mut Option<FuturesOrdered<F>>,
    mut in_flight: usize,
    out: &mut Vec<u8>,
) -> usize {
    while in_flight > 0 && out.len() < MAX_BATCH {
        match next_reply(pending).now_or_never() {
            Some(Some(reply)) => {
                encode_into(&reply, out);
                in_flight -= 1;
            }
            _ => break,
        }
    }
    if in_flight == 0 {
        *pending = None;
    }
    in_flight
}

/// `now + after`, saturating far in the future (a huge timeout means none).
fn deadline(after: std::time::Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(86_400 * 365 * 30))
}

async fn next_reply<F: std::future::Future<Output = Value>>(
    pending: &mut Option<FuturesOrdered<F>>,
) -> Option<Value> {
    match pending {
        Some(p) => p.next().await,
        None => None,
    }
}

/// Bytes read from the socket at a time.
const READ_AT_ONCE: usize = 4096;

/// Reads what the socket has (up to [`READ_AT_ONCE`]) into `lines`. A read that leaves the socket
/// drained (fewer bytes than asked for) also clears tokio's readiness, as a `WouldBlock` would: the
/// next wait then goes straight to the poller instead of first making a `recv` that can only say
/// "nothing more" (one system call per request saved on a connection with one request in flight).
fn read(rd: &OwnedReadHalf, lines: &mut LineBuf) -> io::Result<usize> {
    let stream: &TcpStream = rd.as_ref();
    let mut chunk = [0u8; READ_AT_ONCE];
    let mut got = 0;
    let r = stream.try_io(tokio::io::Interest::READABLE, || {
        use std::io::Read;
        let n = (&*socket2::SockRef::from(stream)).read(&mut chunk)?;
        got = n;
        if n > 0 && n < chunk.len() {
            // Drained: clear readiness (tokio does not clear it if an event came meanwhile).
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    if got > 0 {
        lines.spare().extend_from_slice(&chunk[..got]);
        return Ok(got);
    }
    r
}

async fn write<W: AsyncWrite + Unpin>(
    wr: &mut W,
    bytes: &[u8],
    timeout: std::time::Duration,
) -> Result<(), &'static str> {
    // What the socket takes at once is written without a timer: arming one reads the clock and
    // touches the runtime's shared handle, for a write that almost always completes at once.
    let mut done = 0;
    while done < bytes.len() {
        match wr.write(&bytes[done..]).now_or_never() {
            Some(Ok(0)) | Some(Err(_)) => return Err("write failed"),
            Some(Ok(n)) => done += n,
            None => break,
        }
    }
    if done == bytes.len() {
        match wr.flush().now_or_never() {
            Some(Ok(())) => return Ok(()),
            Some(Err(_)) => return Err("write failed"),
            None => {}
        }
    }
    // The rest waits for the client, within `timeout`. The flush matters for TLS, whose records
    // may wait in rustls while the socket is full; on a plain socket it returns at once.
    let rest = &bytes[done..];
    let all = async {
        wr.write_all(rest).await?;
        wr.flush().await
    };
    match tokio::time::timeout(timeout, all).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("write failed"),
        Err(_) => Err("client not reading its replies (write timeout)"),
    }
}

/// Writes the batch in `out` and empties it; with nothing in flight the connection is about to
/// wait for the client, so the buffer itself is dropped too.
async fn write_batch<W: AsyncWrite + Unpin>(
    wr: &mut W,
    out: &mut Vec<u8>,
    in_flight: usize,
    timeout: std::time::Duration,
) -> Result<(), &'static str> {
    write(wr, out, timeout).await?;
    if in_flight == 0 {
        *out = Vec::new();
    } else {
        out.clear();
    }
    Ok(())
}

/// Appends `reply` and its newline to `out`.
fn encode_into(reply: &Value, out: &mut Vec<u8>) {
    let start = out.len();
    if serde_json::to_writer(&mut *out, reply).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"{}");
    }
    out.push(b'\n');
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;
    impl LineHandler for Nop {
        async fn handle(&self, _: &str, body: Value, _: SocketAddr) -> Value {
            // A handler with a large future must not make idle connections large.
            let big = [0u8; 16 * 1024];
            tokio::task::yield_now().await;
            serde_json::json!({ "body": body, "n": big.len() })
        }
    }

    #[tokio::test]
    async fn an_idle_connection_task_is_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        let token = CancellationToken::new();
        let fut = run(
            server,
            peer,
            Arc::new(TcpConfig::default()),
            Arc::new(Nop),
            token.clone(),
            token,
        );
        let size = std::mem::size_of_val(&fut);
        println!("connection future: {size} bytes");
        assert!(size < 1024, "connection future is {size} bytes");
        drop(client);
    }
}
